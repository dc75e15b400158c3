"""Turning logits into tokens: the ``Sampling`` settings, greedy picks, and the distribution that sampling draws from."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx


@dataclass(frozen=True)
class Sampling:
    """How one generation chooses its tokens and how long it may run: the one value every caller passes.

    The defaults are greedy and seeded, so runs repeat exactly; temperature 0 means greedy (argmax of the
    raw logits) and ``seed`` None a fresh random seed. The engine reads the first five fields; the two
    after them are for its callers: ``guide_calls`` asks them to build a ``CallGuide`` from the tools they
    offer (only they know the tools), and ``stops`` are strings the server cuts the text at.
    """

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = 0
    guide_calls: bool = True
    stops: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def probabilities(logits: mx.array, sampling: Sampling) -> mx.array:
    """softmax(logits / T) restricted to the top-k tokens and the top-p nucleus, renormalised (float32)."""
    logits = logits.astype(mx.float32) / sampling.temperature
    vocab = logits.shape[-1]
    if 0 < sampling.top_k < vocab:
        kth = mx.partition(logits, kth=vocab - sampling.top_k, axis=-1)[..., vocab - sampling.top_k]
        logits = mx.where(logits < kth[..., None], -mx.inf, logits)
    probs = mx.softmax(logits, axis=-1)
    if sampling.top_p < 1.0:
        probs = _nucleus(probs, sampling.top_p)
    return probs


def _nucleus(probs: mx.array, top_p: float) -> mx.array:
    """Keep the most likely tokens until their mass reaches ``top_p`` (at least one token)."""
    order = mx.argsort(-probs, axis=-1)
    ranked = mx.take_along_axis(probs, order, axis=-1)
    mass_before = mx.cumsum(ranked, axis=-1) - ranked
    keep_ranked = mass_before < top_p
    keep = mx.put_along_axis(mx.zeros(probs.shape, dtype=mx.bool_), order, keep_ranked, axis=-1)
    kept = mx.where(keep, probs, 0.0)
    return kept / kept.sum(axis=-1, keepdims=True)


def pick(logits: mx.array, sampling: Sampling, key: mx.array | None) -> tuple[mx.array, mx.array | None]:
    """The chosen token ids (lazy) and, when sampling, the distribution they were drawn from."""
    if sampling.greedy:
        return mx.argmax(logits, axis=-1), None
    probs = probabilities(logits, sampling)
    return draw(probs, key), probs


def draw(probs: mx.array, key: mx.array | None) -> mx.array:
    """One token id per row of ``probs`` (zeros allowed)."""
    return mx.random.categorical(mx.log(probs), axis=-1, key=key)


class KeyStream:
    """Fresh PRNG keys from one seed, so a seeded generation repeats exactly."""

    def __init__(self, seed: int | None):
        if seed is None:
            import secrets

            seed = secrets.randbits(63)
        self._key = mx.random.key(seed)

    def next(self) -> mx.array:
        self._key, key = mx.random.split(self._key)
        return key
