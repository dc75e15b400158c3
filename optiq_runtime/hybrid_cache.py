"""The state of one sequence in a hybrid Qwen3.5 model, and how to take it back.

Attention layers keep a ``KVCache`` that trims; Gated DeltaNet layers keep an
``ArraysCache`` (convolution window, recurrent state) that cannot. MLX arrays are
immutable and the DeltaNet layer replaces its cache entries on every call, so a snapshot
is just the references; restoring it puts them back. The MTP head's KV cache and the
backbone hidden states it has not yet consumed (``tail``) belong to the same state.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
from mlx_lm.models.cache import ArraysCache, KVCache

# Hidden states kept for the MTP head while it is off; beyond this it loses older context.
MAX_TAIL = 4096


@dataclass(frozen=True)
class Snapshot:
    """A point of the sequence that can be returned to: its tokens and every non-trimmable piece."""

    tokens: tuple[int, ...]
    linear: tuple[tuple[mx.array | None, ...], ...]
    mtp_offset: int
    tail: mx.array | None


class HybridCache:
    """Main-model caches, the MTP cache and the hidden-state tail for the tokens fed so far."""

    def __init__(self, layers, with_mtp: bool):
        self.layers = layers
        self.linear_ids = [i for i, layer in enumerate(layers) if layer.is_linear]
        self.kv_ids = [i for i, layer in enumerate(layers) if not layer.is_linear]
        self.main = [ArraysCache(size=2) if layer.is_linear else KVCache() for layer in layers]
        self.mtp = KVCache() if with_mtp else None
        self.tokens: list[int] = []
        self.tail: mx.array | None = None  # hidden states of the last positions, not yet paired for the MTP head

    def __len__(self) -> int:
        return len(self.tokens)

    def linear_state(self) -> tuple[tuple[mx.array | None, ...], ...]:
        return tuple(tuple(self.main[i].cache) for i in self.linear_ids)

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(self.tokens), self.linear_state(), self.mtp_offset, self.tail)

    @property
    def mtp_offset(self) -> int:
        return self.mtp.offset if self.mtp is not None else 0

    def restore(self, snap: Snapshot) -> None:
        """Go back to ``snap``, taken earlier on this same sequence (KV entries before it are unchanged)."""
        self._set_linear(snap.linear)
        self._trim_kv(len(self.tokens) - len(snap.tokens))
        if self.mtp is not None:
            self.mtp.trim(self.mtp.offset - snap.mtp_offset)
        self.tokens = list(snap.tokens)
        self.tail = snap.tail

    def append_tail(self, hidden: mx.array) -> None:
        tail = hidden if self.tail is None else mx.concatenate([self.tail, hidden], axis=1)
        self.tail = tail[:, -MAX_TAIL:] if tail.shape[1] > MAX_TAIL else tail

    def take_tail(self) -> mx.array | None:
        tail, self.tail = self.tail, None
        return tail

    def rollback(self, before, layer_inputs: dict[int, mx.array], fed: int, keep: int, replay) -> None:
        """Keep the first ``keep`` of the ``fed`` tokens of the last forward pass.

        ``before`` is ``linear_state()`` from before that pass and ``layer_inputs`` each DeltaNet
        layer's input during it: ``replay(index, inputs, cache)`` re-runs a layer's recurrence over
        the kept tokens only, from the state before the pass, while attention caches are trimmed.
        """
        if keep == fed:
            return
        self._trim_kv(fed - keep)
        self._set_linear(before)
        if keep:
            for i in self.linear_ids:
                replay(i, layer_inputs[i][:, :keep], self.main[i])
        del self.tokens[len(self.tokens) - (fed - keep):]

    def _trim_kv(self, count: int) -> None:
        for i in self.kv_ids:
            self.main[i].trim(count)

    def _set_linear(self, state) -> None:
        for i, arrays in zip(self.linear_ids, state):
            self.main[i].cache = list(arrays)

