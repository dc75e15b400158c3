"""The state of one sequence in a hybrid Qwen3.5 model, and how to take it back.

Attention layers keep a ``KVCache`` that trims; Gated DeltaNet layers keep an
``ArraysCache`` (convolution window, recurrent state) that cannot. MLX arrays are
immutable and the DeltaNet layer replaces its cache entries on every call, so a snapshot
is just the references; restoring it puts them back. The MTP head's KV cache and the
backbone hidden states it has not yet consumed (``tail``) belong to the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.core as mx
from mlx_lm.models.cache import ArraysCache, KVCache

# Hidden states kept for the MTP head while it is off; beyond this it loses older context.
MAX_TAIL = 4096
MAX_TAIL_CHUNKS = 256


@dataclass(frozen=True)
class Snapshot:
    """A point of the sequence that can be returned to: its tokens and every non-trimmable piece."""

    tokens: tuple[int, ...]
    linear: tuple[tuple[mx.array | None, ...], ...]
    mtp_offset: int
    tail: tuple[mx.array, ...]
    last: mx.array | None


@dataclass
class Rewind:
    """What a pass over several tokens records so that part of it can be taken back."""

    before: tuple  # ``linear_state()`` before the pass
    fed: int = 0
    positions: dict[int, list[tuple]] = field(default_factory=dict)  # DeltaNet layer -> its cache after each position
    inputs: dict[int, mx.array] = field(default_factory=dict)  # or DeltaNet layer -> its input, to replay


class HybridCache:
    """Main-model caches, the MTP cache and the hidden-state tail for the tokens fed so far."""

    def __init__(self, layers, with_mtp: bool):
        self.linear_ids = [i for i, layer in enumerate(layers) if layer.is_linear]
        self.kv_ids = [i for i, layer in enumerate(layers) if not layer.is_linear]
        self.main = [ArraysCache(size=2) if layer.is_linear else KVCache() for layer in layers]
        self.mtp = KVCache() if with_mtp else None
        self.tokens: list[int] = []
        # Hidden states ``[1, n, D]`` of the last positions, not yet paired for the MTP head, in
        # chunks as they were computed: joined only when the head takes them.
        self.tail: list[mx.array] = []
        # The hidden state ``[1, 1, D]`` of the last position fed, for when the tail is empty: a
        # fused round (``optiq_runtime.fused``) pairs every position it keeps for the head itself,
        # the last one with the token to be fed next.
        self.last: mx.array | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    def linear_state(self) -> tuple[tuple[mx.array | None, ...], ...]:
        return tuple(tuple(self.main[i].cache) for i in self.linear_ids)

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(self.tokens), self.linear_state(), self.mtp_offset, tuple(self.tail), self.last)

    @property
    def head(self) -> KVCache:
        """The MTP head's KV cache, for the decoders that draft (a cache made without one cannot draft)."""
        if self.mtp is None:
            raise RuntimeError("this cache was made without the MTP head's")
        return self.mtp

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
        self.tail = list(snap.tail)
        self.last = snap.last

    def append_tail(self, hidden: mx.array) -> None:
        self.tail.append(hidden)
        if len(self.tail) > MAX_TAIL_CHUNKS:
            self.tail = [self.take_tail()[:, -MAX_TAIL:]]

    def take_tail(self) -> mx.array:
        """The tail as one array (it leaves the cache)."""
        tail, self.tail = self.tail, []
        joined = tail[0] if len(tail) == 1 else mx.concatenate(tail, axis=1)
        self.last = joined[:, -1:]
        return joined

    def last_hidden(self) -> mx.array:
        """The hidden state ``[1, D]`` of the last position fed."""
        if self.tail:
            return self.tail[-1][:, -1]
        if self.last is None:
            raise RuntimeError("no position has been fed yet")
        return self.last[:, -1]

    def rewind(self, rewind: Rewind, keep: int, replay) -> None:
        """Keep the first ``keep`` of the ``rewind.fed`` tokens of the last pass; attention caches are trimmed.

        DeltaNet layers take their cache after position ``keep`` from ``rewind.positions``, or,
        when the pass recorded ``rewind.inputs`` instead, go back to ``rewind.before`` and
        ``replay(index, inputs, cache)`` their recurrence over the kept tokens.
        """
        if keep == rewind.fed:
            return
        self._trim_kv(rewind.fed - keep)
        del self.tokens[len(self.tokens) - (rewind.fed - keep) :]
        if rewind.positions:
            for i in self.linear_ids:
                self.main[i].cache = list(rewind.positions[i][keep - 1])
            return
        self._set_linear(rewind.before)
        for i in self.linear_ids:
            replay(i, rewind.inputs[i][:, :keep], self.main[i])

    def settle(self) -> None:
        """Evaluate every array the cache holds.

        MLX evaluates an array on the stream of the thread that made it: a lazy slice left here
        by one thread's generation cannot be evaluated by the next generation's thread.
        """
        kv = [(c.keys, c.values) for c in self.main if isinstance(c, KVCache)]
        if self.mtp is not None:
            kv.append((self.mtp.keys, self.mtp.values))
        mx.eval(self.linear_state(), kv, self.tail, self.last)

    def unfeed(self, count: int, linear) -> None:
        """Take back ``count`` positions fed beyond ``tokens`` (and not in the tail), given the DeltaNet state before them."""
        self._trim_kv(count)
        self._set_linear(linear)

    def _trim_kv(self, count: int) -> None:
        for i in self.kv_ids:
            self.main[i].trim(count)

    def _set_linear(self, state) -> None:
        for i, arrays in zip(self.linear_ids, state):
            self.main[i].cache = list(arrays)
