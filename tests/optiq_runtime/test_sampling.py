"""Sampling distributions, and rejection sampling that keeps the main model's distribution."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_runtime.sampling import KeyStream, Sampling, pick, probabilities
from optiq_runtime.speculative import accepted_prefix, rejection_sample


def test_temperature_top_k_top_p():
    logits = mx.log(mx.array([0.5, 0.3, 0.15, 0.05]))
    plain = np.array(probabilities(logits, Sampling(temperature=1.0)))
    assert np.allclose(plain, [0.5, 0.3, 0.15, 0.05], atol=1e-6)
    top2 = np.array(probabilities(logits, Sampling(temperature=1.0, top_k=2)))
    assert np.allclose(top2, [0.625, 0.375, 0, 0], atol=1e-6)
    nucleus = np.array(probabilities(logits, Sampling(temperature=1.0, top_p=0.8)))
    assert np.allclose(nucleus, [0.625, 0.375, 0, 0], atol=1e-6)  # 0.5 + 0.3 reaches 0.8
    nucleus = np.array(probabilities(logits, Sampling(temperature=1.0, top_p=0.81)))
    assert np.allclose(nucleus, np.array([0.5, 0.3, 0.15, 0]) / 0.95, atol=1e-6)
    cold = np.array(probabilities(logits, Sampling(temperature=0.5)))
    assert np.allclose(cold, np.array([0.25, 0.09, 0.0225, 0.0025]) / 0.365, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=30), st.floats(0.05, 1.0), st.integers(0, 40))
def test_probabilities_are_a_distribution_over_the_best_tokens(values, top_p, top_k):
    logits = mx.array(values)
    probs = np.array(probabilities(logits, Sampling(temperature=0.7, top_p=top_p, top_k=top_k)))
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    kept = probs > 0
    assert kept.any()
    if 0 < top_k < len(values):
        assert kept.sum() <= top_k + sum(v == sorted(values)[-top_k] for v in values)  # ties at the k-th value
    # Whatever is kept is at least as likely as whatever is dropped (before filtering).
    if (~kept).any():
        unfiltered = np.array(probabilities(logits, Sampling(temperature=0.7)))
        assert unfiltered[kept].min() >= unfiltered[~kept].max()


def test_greedy_pick_is_argmax():
    token, probs = pick(mx.array([[0.1, 3.0, -1.0]]), Sampling(), None)
    assert token.tolist() == [1] and probs is None


def test_accepted_prefix():
    assert accepted_prefix([4, 5, 6], [4, 5, 7, 9]) == 2
    assert accepted_prefix([4, 5], [4, 5, 1]) == 2
    assert accepted_prefix([3], [4, 1]) == 0


@pytest.mark.slow
def test_rejection_sampling_keeps_the_target_distribution():
    """The first emitted token follows p whatever the draft distribution q (checked by counting)."""
    p = mx.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
    q = mx.array([[0.1, 0.1, 0.4, 0.4]])
    keys = KeyStream(11)
    trials = 6000
    drafts = mx.random.categorical(mx.log(q[0]), shape=(trials,), key=keys.next()).tolist()
    counts = np.zeros(4)
    for draft in drafts:
        accept, candidates = rejection_sample(mx.array([draft]), q, p, keys)
        counts[draft if accept.item() else candidates[0].item()] += 1
    assert np.allclose(counts / trials, [0.5, 0.3, 0.15, 0.05], atol=0.025)


def test_identical_draft_and_target_always_accept():
    p = mx.array([[0.2, 0.8], [0.5, 0.5]])
    accept, _ = rejection_sample(mx.array([0]), p[:1], p, KeyStream(0))
    assert accept.tolist() == [True]
