"""Decoding steps over a hybrid Qwen3.5 model: plain, and MTP draft-verify-accept rounds.

A round drafts ``depth`` tokens with the MTP head, verifies them with one forward pass of
the main model over ``depth + 1`` tokens, keeps the longest accepted prefix plus the main
model's own next token, and rolls the caches back to the last kept token. Greedy drafts
are accepted on exact match; sampled ones by rejection sampling, so the output follows the
main model's distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from optiq_runtime.backbone import Backbone, Drafter
from optiq_runtime.fused import FusedDecoding, FusedRounds
from optiq_runtime.hybrid_cache import HybridCache, Rewind
from optiq_runtime.proposal import Proposal, accepted_prefix
from optiq_runtime.sampling import KeyStream, Sampling, draw, pick, probabilities

PREFILL_CHUNK = 512


def rejection_sample(
    drafts: mx.array, draft_probs: mx.array, target_probs: mx.array, keys: KeyStream
) -> tuple[mx.array, mx.array]:
    """Lazy acceptance flags ``[k]`` and replacement tokens ``[k + 1]`` for speculative sampling.

    Draft i is kept with probability min(1, p_i(d) / q_i(d)); the first rejected position
    takes a token from normalise(max(p_i - q_i, 0)); when all are kept, position k draws from p_k.
    """
    k = drafts.shape[0]
    rows = mx.arange(k)
    p_draft = target_probs[rows, drafts]
    q_draft = draft_probs[rows, drafts]
    accept = mx.random.uniform(shape=(k,), key=keys.next()) * q_draft < p_draft
    residual = mx.maximum(target_probs[:k] - draft_probs, 0.0)
    mass = residual.sum(axis=-1, keepdims=True)
    residual = mx.where(mass > 0, residual / mx.maximum(mass, 1e-30), target_probs[:k])
    candidates = draw(mx.concatenate([residual, target_probs[k:]]), keys.next())
    return accept, candidates


@dataclass
class _Ahead:
    """A plain step started before its token was asked for: ``token`` is fed, ``next`` follows it."""

    token: int
    next: mx.array
    logits: mx.array
    hidden: mx.array
    linear_before: tuple


class Decoder:
    """Token steps for one generation over a ``HybridCache`` (plain or MTP)."""

    def __init__(
        self,
        backbone: Backbone,
        drafter: Drafter | None,
        cache: HybridCache,
        sampling: Sampling,
        keys: KeyStream,
        fused: FusedRounds | None = None,
    ):
        self.backbone, self.drafter, self.cache = backbone, drafter, cache
        self.sampling, self.keys = sampling, keys
        # Greedy rounds run as one graph each when given; sampled ones always run step by step.
        self.fused = FusedDecoding(fused, cache, backbone, self._fresh_drafts) if fused and sampling.greedy else None
        self._ahead: _Ahead | None = None

    def _head(self) -> Drafter:
        if self.drafter is None:
            raise RuntimeError("an MTP round needs the MTP head; this decoder was made without one")
        return self.drafter

    def _pick(self, logits: mx.array, allowed: mx.array | None = None) -> tuple[mx.array, mx.array | None]:
        """The chosen token (lazy), among the ``allowed`` ones when a mask is given."""
        if allowed is not None:
            logits = mx.where(allowed, logits, -mx.inf)
        return pick(logits, self.sampling, None if self.sampling.greedy else self.keys.next())

    def prefill(self, tokens: list[int], allowed: mx.array | None = None) -> int:
        """Feed ``tokens`` (at least one) and return the first generated token (within ``allowed``)."""
        for start in range(0, len(tokens), PREFILL_CHUNK):
            chunk = tokens[start : start + PREFILL_CHUNK]
            hidden = self.backbone.forward(mx.array(chunk)[None], self.cache)
            self.cache.append_tail(hidden)
            self.cache.tokens.extend(chunk)
            mx.eval(hidden, [c.state for c in self.cache.main])
        return self.next_from_tail(allowed)

    def next_from_tail(self, allowed: mx.array | None = None) -> int:
        """The token that follows the sequence, from the last hidden state (within ``allowed``)."""
        token, _ = self._pick(self.backbone.logits(self.cache.last_hidden()), allowed)
        return token.item()

    # plain decoding -------------------------------------------------------------
    def plain_step(self, last: int, allowed: mx.array | None = None) -> int:
        """Feed ``last`` and return the next token; the following step is started ahead (cancel with ``cancel_ahead``).

        ``allowed`` (a boolean mask over the vocabulary) limits the token chosen after ``last``.
        A model whose short passes multiply on the host computes a pass before it returns, so
        nothing is started ahead there: it would overlap nothing, and the run's last one would
        be a whole step computed for nothing.
        """
        if self._ahead is not None and self._ahead.token == last:
            nxt, logits, hidden = self._ahead.next, self._ahead.logits, self._ahead.hidden
            self._ahead = None
        else:
            self.cancel_ahead()
            nxt, logits, hidden = self._plain_forward(mx.array([last]))
        if allowed is not None:
            nxt = self._pick(logits, allowed)[0]
        self.cache.append_tail(hidden)
        self.cache.tokens.append(last)
        if self.backbone.on_host:
            return nxt.item()
        before = self.cache.linear_state()
        after, after_logits, after_hidden = self._plain_forward(nxt)
        mx.async_eval(after)
        self._ahead = _Ahead(nxt.item(), after, after_logits, after_hidden, before)
        return self._ahead.token

    def _plain_forward(self, token: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """The next token (lazy) after ``token``, its logits and hidden state; feeds the caches but not the tail."""
        hidden, logits = self.backbone.step(token.reshape(1), self.cache)
        return self._pick(logits[:, -1])[0], logits[:, -1], hidden

    def cancel_ahead(self) -> None:
        """Undo the step or round started ahead, so the caches hold exactly ``cache.tokens``."""
        self._cancel_plain_ahead()
        if self.fused is not None:
            self.fused.cancel()

    def _cancel_plain_ahead(self) -> None:
        if self._ahead is not None:
            self.cache.unfeed(1, self._ahead.linear_before)
            self._ahead = None

    # MTP rounds -------------------------------------------------------------------
    def mtp_round(self, last: int, depth: int) -> Proposal:
        """Draft ``depth`` tokens after ``last``, verify them, and propose what to emit."""
        if self.fused is not None:  # it keeps the round it started ahead
            self._cancel_plain_ahead()
            return self.fused.round(last, depth)
        self.cancel_ahead()
        drafts, draft_probs, mtp_base = self._draft(last, depth)
        fed = mx.concatenate([mx.array([last]), *drafts])
        rewind = Rewind(self.cache.linear_state())
        hidden, logits = self.backbone.step(fed, self.cache, rewind)
        fed_ids, accepted, following = self._verdict(fed, logits[0], draft_probs)
        self.cache.tokens.extend(fed_ids)
        tokens = fed_ids[1 : accepted + 1] + [following]
        return Proposal(tokens, accepted, depth, lambda count: self._commit(count, rewind, hidden, mtp_base))

    def prime(self, last: int, depth: int) -> None:
        """Run the MTP head over the hidden states it has not seen (the prompt's), drafting for ``last``.

        Called after the prefill so the head's catch-up over the prompt is prefill work, not
        the first round's. Rounds that are not fused draft in the round, so here the head
        catches up over every position but the last (the one ``last`` follows).
        """
        if self.fused is not None:
            self.fused.prime(last, depth)
        else:
            self._catch_up()

    def _catch_up(self) -> None:
        """Feed the MTP head the tail's positions whose following token is known, keeping the last one in the tail."""
        cache = self.cache
        if sum(chunk.shape[1] for chunk in cache.tail) < 2:
            return
        tail = cache.take_tail()
        following = cache.tokens[len(cache.tokens) - tail.shape[1] + 1 :]
        self._head()(mx.array(following), tail[:, :-1], cache.head)
        mx.eval(cache.head.keys, cache.head.values)
        cache.append_tail(tail[:, -1:])

    def _fresh_drafts(self, last: int, depth: int) -> list[int]:
        """Drafts after ``last`` from the head's catch-up over the tail; chained entries are taken back."""
        drafts, _, mtp_base = self._draft(last, depth)
        ids = mx.concatenate(drafts).tolist()
        self.cache.head.trim(self.cache.head.offset - mtp_base)
        return ids

    def _verdict(self, fed: mx.array, logits: mx.array, draft_probs: list[mx.array]) -> tuple[list[int], int, int]:
        """The fed token ids, how many drafts are accepted, and the main model's token after them."""
        if self.sampling.greedy:
            targets = mx.argmax(logits, axis=-1)
            mx.eval(fed, targets)
            fed_ids, target_ids = fed.tolist(), targets.tolist()
            accepted = accepted_prefix(fed_ids[1:], target_ids)
            return fed_ids, accepted, target_ids[accepted]
        target_probs = probabilities(logits, self.sampling)
        accept, candidates = rejection_sample(fed[1:], mx.stack(draft_probs), target_probs, self.keys)
        mx.eval(fed, accept, candidates)
        accepted = (accept.tolist() + [False]).index(False)
        return fed.tolist(), accepted, candidates.tolist()[accepted]

    def _draft(self, last: int, depth: int) -> tuple[list[mx.array], list[mx.array], int]:
        """Catch the MTP head up on the hidden states it has not seen, then draft ``depth`` tokens (lazy)."""
        drafter, cache = self._head(), self.cache
        if cache.tail:
            tail = cache.take_tail()
        else:  # a fused round paired the last position with its guess of ``last``: pair it again
            cache.head.trim(min(1, cache.head.offset))
            tail = cache.last
        n = len(cache.tokens)
        following = cache.tokens[n - tail.shape[1] + 1 :] + [last]
        out, logits = drafter(mx.array(following), tail, cache.head)
        mtp_base = cache.head.offset
        drafts, probs = [], []
        for step in range(depth):
            token, prob = self._pick(logits[:, -1])
            drafts.append(token)
            probs.append(prob)
            if step + 1 < depth:
                out, logits = drafter(token, drafter.chain(out[:, -1:]), cache.head)
        return drafts, [p[0] for p in probs if p is not None], mtp_base

    def _commit(self, count: int, rewind: Rewind, hidden: mx.array, mtp_base: int) -> None:
        """Keep the caches for the first ``count`` emitted tokens (``count`` fed tokens)."""
        cache = self.cache
        cache.rewind(rewind, count, self.backbone.replay)
        cache.head.trim(cache.head.offset - mtp_base)
        cache.append_tail(hidden[:, :count])
