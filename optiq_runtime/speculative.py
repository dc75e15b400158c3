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
from mlx_lm.models.base import create_attention_mask, create_ssm_mask
from mlx_lm.models.cache import ArraysCache

from optiq_runtime.hybrid_cache import HybridCache
from optiq_runtime.mtp import MTPHead
from optiq_runtime.sampling import KeyStream, SamplingParams, draw, pick, probabilities

PREFILL_CHUNK = 512


# Decode passes feed at most this many tokens; they run compiled graphs (one per length).
MAX_FAST_TOKENS = 16


class Backbone:
    """An mlx-lm Qwen3.5 model run layer by layer, to expose hidden states before the final norm.

    Short passes (decoding, verification) run each layer through ``mx.compile``d pieces of
    mlx-lm's own modules: on small models the time goes to dispatching many tiny ops, and
    fused graphs cut it about in half. Prefill runs the modules as they are.
    """

    def __init__(self, model):
        text = getattr(model, "language_model", model)
        self.args = text.args
        self.body = text.model
        self.lm_head = None if self.args.tie_word_embeddings else text.lm_head
        self.layers = list(self.body.layers)
        kinds = [layer.is_linear for layer in self.layers]
        self._fa_idx = kinds.index(False) if False in kinds else None
        self._ssm_idx = kinds.index(True) if True in kinds else None
        self._fast = [_linear_step(l) if l.is_linear else AttentionStep(l) for l in self.layers]
        self._replay = {i: _linear_replay(l) for i, l in enumerate(self.layers) if l.is_linear}
        self.logits = mx.compile(lambda hidden: self.output(self.body.norm(hidden)))

    def new_cache(self, with_mtp: bool) -> HybridCache:
        return HybridCache(self.layers, with_mtp)

    def embed(self, tokens: mx.array) -> mx.array:
        return self.body.embed_tokens(tokens)

    def forward(self, tokens: mx.array, cache: HybridCache, record: dict | None = None) -> mx.array:
        """Hidden states ``[1, S, D]`` before the final norm; ``record`` gets each DeltaNet layer's input."""
        h = self.embed(tokens)
        if tokens.shape[-1] <= MAX_FAST_TOKENS and len(cache) > 0:
            return self._forward_fast(h, cache, record)
        fa_mask = create_attention_mask(h, cache.main[self._fa_idx]) if self._fa_idx is not None else None
        ssm_mask = create_ssm_mask(h, cache.main[self._ssm_idx]) if self._ssm_idx is not None else None
        for i, (layer, layer_cache) in enumerate(zip(self.layers, cache.main)):
            if record is not None and layer.is_linear:
                record[i] = h
            h = layer(h, mask=ssm_mask if layer.is_linear else fa_mask, cache=layer_cache)
        return h

    def _forward_fast(self, h: mx.array, cache: HybridCache, record: dict | None) -> mx.array:
        fa_mask = create_attention_mask(h, cache.main[self._fa_idx]) if self._fa_idx is not None else None
        for i, (layer, step, layer_cache) in enumerate(zip(self.layers, self._fast, cache.main)):
            if layer.is_linear:
                if record is not None:
                    record[i] = h
                h, layer_cache[0], layer_cache[1] = step(h, layer_cache[0], layer_cache[1])
            else:
                h = step(h, fa_mask, layer_cache)
        return h

    def replay(self, index: int, inputs: mx.array, layer_cache) -> None:
        """Advance DeltaNet layer ``index``'s cache over ``inputs`` (its layer inputs) without computing outputs."""
        layer_cache[0], layer_cache[1] = self._replay[index](inputs, layer_cache[0], layer_cache[1])

    def output(self, normed: mx.array) -> mx.array:
        if self.lm_head is None:
            return self.body.embed_tokens.as_linear(normed)
        return self.lm_head(normed)


def _linear_step(layer):
    """A Gated DeltaNet decoder layer as a compiled pure function ``(x, conv, state) -> (out, conv, state)``."""

    def step(x, conv, state):
        cache = ArraysCache(size=2)
        cache[0], cache[1] = conv, state
        return layer(x, mask=None, cache=cache), cache[0], cache[1]

    return mx.compile(step)


def _linear_replay(layer):
    """A Gated DeltaNet layer's cache update alone, compiled: ``(x, conv, state) -> (conv, state)``."""

    def replay(x, conv, state):
        cache = ArraysCache(size=2)
        cache[0], cache[1] = conv, state
        layer.linear_attn(layer.input_layernorm(x), None, cache)
        return cache[0], cache[1]

    return mx.compile(replay)


class AttentionStep:
    """A full-attention decoder layer (mlx-lm's) whose norm and MLP half run compiled; attention reads the cache."""

    def __init__(self, layer):
        self.layer = layer

        def finish(x, attended):
            h = x + attended
            return h + layer.mlp(layer.post_attention_layernorm(h))

        self._norm = mx.compile(layer.input_layernorm)
        self._finish = mx.compile(finish)

    def __call__(self, x: mx.array, mask, cache) -> mx.array:
        return self._finish(x, self.layer.self_attn(self._norm(x), mask, cache))


class Drafter:
    """The MTP head over a backbone, with short passes compiled like the backbone's."""

    def __init__(self, head: MTPHead, backbone: Backbone):
        self.head, self.backbone = head, backbone
        self._project = mx.compile(head.project)
        self._layer = AttentionStep(head.layers[0])
        self.logits = mx.compile(lambda out: backbone.output(head.norm(out)))

    def __call__(self, tokens: mx.array, hidden: mx.array, cache) -> mx.array:
        """The head's outputs (before its norm) for ``tokens`` following the positions of ``hidden``."""
        embeddings = self.backbone.embed(tokens[None])
        if tokens.shape[-1] > MAX_FAST_TOKENS:
            return self.head(embeddings, hidden, cache)
        x = self._project(embeddings, hidden)
        return self._layer(x, create_attention_mask(x, cache), cache)


def accepted_prefix(drafts: list[int], targets: list[int]) -> int:
    """How many leading drafts the main model agrees with (greedy)."""
    for i, (draft, target) in enumerate(zip(drafts, targets)):
        if draft != target:
            return i
    return len(drafts)


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
class Proposal:
    """The tokens one round produced; ``commit(n)`` keeps the caches for the first ``n`` of them."""

    tokens: list[int]
    accepted: int
    drafted: int
    _decoder: "Decoder"
    _fed: list[int]
    _before: tuple
    _record: dict
    _hidden: mx.array
    _mtp_base: int

    def commit(self, count: int) -> None:
        self._decoder._commit(self, count)


class Decoder:
    """Token steps for one generation over a ``HybridCache`` (plain or MTP)."""

    def __init__(self, backbone: Backbone, drafter: Drafter | None, cache: HybridCache, params: SamplingParams, keys: KeyStream):
        self.backbone, self.drafter, self.cache = backbone, drafter, cache
        self.params, self.keys = params, keys
        self._ahead: tuple[int, mx.array, object] | None = None  # (token fed, its lazy next token, undo)

    def _pick(self, logits: mx.array) -> tuple[mx.array, mx.array | None]:
        return pick(logits, self.params, None if self.params.greedy else self.keys.next())

    def _feed(self, tokens: mx.array) -> mx.array:
        hidden = self.backbone.forward(tokens[None], self.cache)
        self.cache.append_tail(hidden)
        return hidden

    def prefill(self, tokens: list[int]) -> int:
        """Feed ``tokens`` (at least one) and return the first generated token."""
        for start in range(0, len(tokens), PREFILL_CHUNK):
            chunk = tokens[start:start + PREFILL_CHUNK]
            hidden = self._feed(mx.array(chunk))
            self.cache.tokens.extend(chunk)
            mx.eval(hidden, [c.state for c in self.cache.main])
        return self.next_from_tail()

    def next_from_tail(self) -> int:
        """The token that follows the sequence, from the last hidden state."""
        token, _ = self._pick(self.backbone.logits(self.cache.tail[:, -1]))
        return token.item()

    # plain decoding -------------------------------------------------------------
    def plain_step(self, last: int) -> int:
        """Feed ``last`` and return the next token; the following step is started ahead (cancel with ``cancel_ahead``)."""
        if self._ahead is not None and self._ahead[0] == last:
            nxt = self._ahead[1]
            self.cache.tokens.append(last)
        else:
            self.cancel_ahead()
            nxt = self._plain_forward(mx.array([last]))
            self.cache.tokens.append(last)
        undo = (self.cache.linear_state(), self.cache.tail)
        after = self._plain_forward(nxt)
        mx.async_eval(after)
        token = nxt.item()
        self._ahead = (token, after, undo)
        return token

    def _plain_forward(self, token: mx.array) -> mx.array:
        hidden = self._feed(token.reshape(1))
        return self._pick(self.backbone.logits(hidden[:, -1]))[0]

    def cancel_ahead(self) -> None:
        """Undo the step started ahead, so the caches hold exactly ``cache.tokens``."""
        if self._ahead is None:
            return
        _, _, (linear, tail) = self._ahead
        self._ahead = None
        self.cache._set_linear(linear)
        self.cache._trim_kv(1)
        self.cache.tail = tail

    # MTP rounds -------------------------------------------------------------------
    def mtp_round(self, last: int, depth: int) -> Proposal:
        """Draft ``depth`` tokens after ``last``, verify them, and propose what to emit."""
        self.cancel_ahead()
        drafts, draft_probs, mtp_base = self._draft(last, depth)
        fed = mx.concatenate([mx.array([last]), *drafts])
        before = self.cache.linear_state()
        record: dict[int, mx.array] = {}
        hidden = self.backbone.forward(fed[None], self.cache, record)
        logits = self.backbone.logits(hidden)[0]
        if self.params.greedy:
            targets = mx.argmax(logits, axis=-1)
            mx.eval(fed, targets)
            fed_ids, target_ids = fed.tolist(), targets.tolist()
            accepted = accepted_prefix(fed_ids[1:], target_ids)
            tokens = fed_ids[1:accepted + 1] + [target_ids[accepted]]
        else:
            accept, candidates = rejection_sample(
                fed[1:], mx.stack(draft_probs), probabilities(logits, self.params), self.keys
            )
            mx.eval(fed, accept, candidates)
            fed_ids = fed.tolist()
            flags = accept.tolist() + [False]
            accepted = flags.index(False)
            tokens = fed_ids[1:accepted + 1] + [candidates.tolist()[accepted]]
        self.cache.tokens.extend(fed_ids)
        return Proposal(tokens, accepted, depth, self, fed_ids, before, record, hidden, mtp_base)

    def _draft(self, last: int, depth: int) -> tuple[list[mx.array], list[mx.array], int]:
        """Catch the MTP head up on the hidden states it has not seen, then draft ``depth`` tokens (lazy)."""
        drafter, cache = self.drafter, self.cache
        tail = cache.take_tail()
        n = len(cache.tokens)
        following = cache.tokens[n - tail.shape[1] + 1:] + [last]
        out = drafter(mx.array(following), tail, cache.mtp)[:, -1:]
        mtp_base = cache.mtp.offset
        drafts, probs = [], []
        for step in range(depth):
            token, prob = self._pick(drafter.logits(out)[:, -1])
            drafts.append(token)
            probs.append(prob)
            if step + 1 < depth:
                out = drafter(token, out, cache.mtp)
        return drafts, [p[0] for p in probs if p is not None], mtp_base

    def _commit(self, proposal: Proposal, count: int) -> None:
        """Keep the caches for the first ``count`` emitted tokens (``count`` fed tokens)."""
        cache = self.cache
        cache.rollback(proposal._before, proposal._record, len(proposal._fed), count, self.backbone.replay)
        cache.mtp.trim(cache.mtp.offset - proposal._mtp_base)
        cache.append_tail(proposal._hidden[:, :count])
