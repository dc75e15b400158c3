"""Greedy MTP rounds as one compiled graph each: verify the drafts and draft the next round for every outcome.

A round feeds ``[last, e_1 .. e_k]`` (``k`` drafts) to the main model. With greedy decoding
the main model's token after each fed position, ``t_i = argmax``, is known inside the graph,
hence so are the MTP head's inputs ``(h_i, t_i)`` for every position the round may keep,
hence the head's next drafts after each of them. One graph therefore verifies this round's
drafts and runs the head over all ``k + 1`` pairs (and its chained drafts); the host reads
the targets, keeps the accepted prefix ``n`` and takes row ``n``'s drafts for the next round.

Separately, the head's catch-up, each draft and the verification are three or more graph
calls per round. On small models decoding time is per-op and per-call overhead, so folding
them into one call is what lets a round cost little more than a plain step.

Chained drafts (depth 2 and more) of row ``i`` attend to the head's cache up to pair ``i``
and to their own row's earlier chained entries; those entries are never written to the cache.

``FusedDecoding`` runs the rounds of one generation and starts each round before the caller
has committed the previous one (assuming it keeps all of it, as it does until the run ends),
so building the next graph and the caller's work overlap the computation, as plain steps do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import mlx.core as mx

from optiq_runtime.backbone import Backbone, Drafter, attend, project_attention, reserve
from optiq_runtime.hybrid_cache import HybridCache, Rewind, Snapshot
from optiq_runtime.proposal import Proposal, accepted_prefix


class FusedRounds:
    """Compiled verify-and-draft graphs over one backbone and its MTP head (one per depth and shape)."""

    def __init__(self, backbone: Backbone, drafter: Drafter):
        self.backbone, self.drafter = backbone, drafter
        self._graphs: dict[int, Callable[..., Any]] = {}

    def __call__(self, fed: mx.array, cache: HybridCache, rewind: Rewind) -> tuple[mx.array, mx.array, mx.array, int]:
        """Lazy hidden states ``[1, k + 1, D]``, targets ``[k + 1]`` and next drafts ``[k + 1, k]`` for ``fed``
        (``[k + 1]``), and the head's cache offset before the pass. Feeds the main caches (``rewind`` records the per-position
        DeltaNet states) and writes ``k + 1`` entries to the head's cache."""
        depth = fed.shape[0] - 1
        rewind.fed = depth + 1
        kv_caches = [cache.main[i] for i in cache.kv_ids]
        offset = kv_caches[0].offset if kv_caches else 0
        kv = [reserve(c, offset + depth + 1) for c in kv_caches]
        mtp_base = cache.head.offset
        mtp_keys, mtp_values = reserve(cache.head, mtp_base + depth + 1)
        if depth not in self._graphs:
            self._graphs[depth] = mx.compile(partial(self.graph, depth=depth))
        graph = self._graphs[depth]
        hidden, targets, drafts, linear, kv, mtp_keys, mtp_values = graph(
            fed[None], cache.linear_state(), kv, mx.array(offset), mtp_keys, mtp_values, mx.array(mtp_base)
        )
        for i, states in zip(cache.linear_ids, linear):
            cache.main[i].cache = list(states[-1])
        for c, (keys, values) in zip(kv_caches, kv):
            c.keys, c.values, c.offset = keys, values, offset + depth + 1
        rewind.positions.update(zip(cache.linear_ids, linear))
        cache.head.keys, cache.head.values, cache.head.offset = mtp_keys, mtp_values, mtp_base + depth + 1
        return hidden, targets, drafts, mtp_base

    def graph(self, fed, linear, kv, offset, mtp_keys, mtp_values, mtp_offset, *, depth: int):
        """The traced round: hidden states, targets, next drafts per row, and every cache the round wrote."""
        hidden, logits, linear, kv, _ = self.backbone.step_graph(fed, linear, kv, offset, positions=True)
        targets = mx.argmax(logits[0], axis=-1)
        out, draft_logits, mtp_keys, mtp_values = self.drafter.pass_graph(
            targets[None], hidden, mtp_keys, mtp_values, mtp_offset
        )
        drafts = [mx.argmax(draft_logits[0], axis=-1)]
        chained: list[tuple[mx.array, mx.array]] = []
        for level in range(1, depth):
            out, draft_logits = self._chained(
                drafts[-1], self.drafter.chain(out), mtp_keys, mtp_values, mtp_offset + level, chained
            )
            drafts.append(mx.argmax(draft_logits[0], axis=-1))
        return hidden, targets, mx.stack(drafts, axis=-1), linear, kv, mtp_keys, mtp_values

    def _chained(self, tokens, hidden, keys_buffer, values_buffer, position, chained):
        """One chained draft for every row: row ``i`` sits at ``position + i``, sees the cache up to
        pair ``i`` and its own earlier chained entries; appends this level's entries to ``chained``."""
        head = self.drafter.head
        layer, rows = head.layers[0], tokens.shape[0]
        x = head.project(self.backbone.embed(tokens[None]), hidden)
        queries, keys, values, gate = project_attention(layer.self_attn, layer.input_layernorm(x), position)
        chained.append((keys, values))
        pairs_seen = mx.arange(keys_buffer.shape[2])[None] <= (position - len(chained) + mx.arange(rows))[:, None]
        own = mx.eye(rows) > 0
        visible = mx.concatenate([pairs_seen] + [own] * len(chained), axis=1)
        all_keys = mx.concatenate([keys_buffer] + [k for k, _ in chained], axis=2)
        all_values = mx.concatenate([values_buffer] + [v for _, v in chained], axis=2)
        h = x + attend(layer.self_attn, queries, all_keys, all_values, visible, gate)
        out = h + layer.mlp(layer.post_attention_layernorm(h))
        return out, self.drafter.output(head.norm(out))


@dataclass
class _Round:
    """A launched round: what it fed, its lazy outputs, and how to take it back."""

    last: int
    drafts: list[int]
    hidden: mx.array
    targets: mx.array
    next_drafts: mx.array
    rewind: Rewind
    mtp_base: int
    before: Snapshot | None = None  # the caches before it, when it was started ahead of a commit


class FusedDecoding:
    """Greedy MTP rounds of one generation, one graph each, each started before the last is committed.

    ``fresh_drafts(last, depth)`` drafts the slow way (the head's catch-up over the tail, then
    one pass per draft): used after the prefill and after plain steps.
    """

    def __init__(
        self, rounds: FusedRounds, cache: HybridCache, backbone: Backbone, fresh_drafts: Callable[[int, int], list[int]]
    ):
        self.rounds, self.cache, self.backbone, self.fresh_drafts = rounds, cache, backbone, fresh_drafts
        self._drafts: tuple[int, list[int]] | None = None  # drafts ready for the round that feeds this token
        self._ahead: _Round | None = None

    def prime(self, last: int, depth: int) -> None:
        """Draft for the first round now (the head's catch-up over the prompt is prefill work)."""
        self._drafts = (last, self.fresh_drafts(last, depth))

    def round(self, last: int, depth: int) -> Proposal:
        """The round that feeds ``last``: its tokens, and the next round already started."""
        current, self._ahead = self._ahead, None
        if current is None or current.last != last or len(current.drafts) != depth:
            if current is not None:
                self._take_back(current)
            current = self._launch(last, self._drafts_for(last, depth))
        mx.eval(current.targets, current.next_drafts)
        targets, rows = current.targets.tolist(), current.next_drafts.tolist()
        accepted = accepted_prefix(current.drafts, targets)
        tokens = current.drafts[:accepted] + [targets[accepted]]
        self._keep(current, accepted + 1)
        before = self.cache.snapshot()
        self._ahead = self._launch(tokens[-1], rows[accepted], before)
        mx.async_eval(self._ahead.targets, self._ahead.next_drafts)
        return Proposal(tokens, accepted, depth, lambda count: self._commit(current, len(tokens), count))

    def cancel(self) -> None:
        """Take back the round started ahead and forget the drafts made for it."""
        if self._ahead is not None:
            self._take_back(self._ahead)
            self._ahead = None
        self._drafts = None

    def _drafts_for(self, last: int, depth: int) -> list[int]:
        ready, self._drafts = self._drafts, None
        if ready is not None and ready[0] == last and len(ready[1]) == depth:
            return ready[1]
        return self.fresh_drafts(last, depth)

    def _launch(self, last: int, drafts: list[int], before: Snapshot | None = None) -> _Round:
        rewind = Rewind(self.cache.linear_state())
        hidden, targets, next_drafts, mtp_base = self.rounds(mx.array([last, *drafts]), self.cache, rewind)
        self.cache.tokens.extend([last, *drafts])
        return _Round(last, drafts, hidden, targets, next_drafts, rewind, mtp_base, before)

    def _keep(self, launched: _Round, keep: int) -> None:
        """Keep the first ``keep`` fed tokens of a round whose fed tokens are all in the caches."""
        self.cache.rewind(launched.rewind, keep, self.backbone.replay)
        launched.rewind.fed = keep
        self.cache.last = launched.hidden[:, keep - 1 : keep]
        self.cache.head.trim(self.cache.head.offset - (launched.mtp_base + keep))

    def _commit(self, launched: _Round, kept: int, count: int) -> None:
        """The caller keeps ``count`` of the ``kept`` tokens already kept: fewer only when the run ends there."""
        if count == kept:
            return
        self.cancel()
        self._keep(launched, count)

    def _take_back(self, launched: _Round) -> None:
        if launched.before is not None:
            self.cache.restore(launched.before)
