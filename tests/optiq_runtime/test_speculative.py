"""Rollback of the hybrid cache: after keeping a prefix of a verified block, every state is as if only it was fed."""

from __future__ import annotations

import mlx.core as mx
import pytest
from checkpoints import write_random_checkpoint

from optiq_runtime.backbone import Backbone
from optiq_runtime.hybrid_cache import Rewind
from optiq_runtime.load import load_model


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    folder = write_random_checkpoint(tmp_path_factory.mktemp("spec"), seed=5, num_hidden_layers=8)
    return Backbone(load_model(folder).model)


def feed(backbone, cache, tokens, record=None):
    hidden = backbone.forward(mx.array(tokens)[None], cache, record)
    cache.tokens.extend(tokens)
    mx.eval(hidden)
    return hidden


def states(cache):
    return [mx.array(a) for arrays in cache.linear_state() for a in arrays]


@pytest.mark.parametrize("rollback", ["positions", "replay"])
@pytest.mark.parametrize("keep", [1, 2, 3, 4])
def test_rewind_equals_feeding_only_the_kept_tokens(backbone, keep, rollback):
    prompt, block = [1, 17, 33, 48, 60, 71], [90, 91, 92, 93]
    backbone.rollback = rollback
    cache = backbone.new_cache(with_mtp=False)
    feed(backbone, cache, prompt)
    rewind = Rewind(cache.linear_state())
    hidden, _ = backbone.step(mx.array(block), cache, rewind)
    cache.tokens.extend(block)
    mx.eval(hidden)
    cache.rewind(rewind, keep, backbone.replay)

    reference = backbone.new_cache(with_mtp=False)
    feed(backbone, reference, prompt)
    for token in block[:keep]:
        feed(backbone, reference, [token])
    assert cache.tokens == reference.tokens
    for got, want in zip(states(cache), states(reference)):
        assert mx.allclose(got, want, atol=1e-5).item()
    # The next step sees the same attention cache and recurrent state.
    after = feed(backbone, cache, [7])
    expected = feed(backbone, reference, [7])
    assert mx.allclose(after, expected, atol=1e-4).item()


def test_verification_outputs_match_one_token_steps(backbone):
    """The per-position graph computes what mlx-lm's layers compute token by token."""
    backbone.rollback = "positions"
    cache, reference = backbone.new_cache(with_mtp=False), backbone.new_cache(with_mtp=False)
    for c in (cache, reference):
        feed(backbone, c, [1, 2, 3, 4])
    hidden, logits = backbone.step(mx.array([5, 6, 7]), cache, Rewind(cache.linear_state()))
    singles = [backbone.step(mx.array([t]), reference)[1] for t in (5, 6, 7)]
    assert mx.allclose(logits, mx.concatenate(singles, axis=1), atol=1e-4).item()


def test_snapshot_restore_returns_to_the_prompt_end(backbone):
    cache = backbone.new_cache(with_mtp=True)
    feed(backbone, cache, [1, 2, 3, 4, 5])
    snap = cache.snapshot()
    reference = feed(backbone, cache, [9])
    feed(backbone, cache, [10, 11, 12])
    cache.restore(snap)
    assert cache.tokens == [1, 2, 3, 4, 5]
    assert mx.allclose(feed(backbone, cache, [9]), reference, atol=1e-5).item()
