"""The chunked Gated DeltaNet prefill computes what mlx-lm's token-by-token recurrence does."""

import mlx.core as mx
import mlx.nn as nn
import pytest
from checkpoints import write_random_checkpoint
from mlx_lm.models.cache import ArraysCache
from mlx_lm.models.gated_delta import compute_g, gated_delta_ops, normalize_qk

from optiq_runtime.deltanet import chunked_gated_delta, depthwise_conv, log_decay, prefill_linear_layer
from optiq_runtime.load import load_model


def _inputs(length, k_heads, v_heads, dim, seed=0):
    mx.random.seed(seed)
    q, k = (mx.random.normal((1, length, k_heads, dim)) for _ in range(2))
    q, k = normalize_qk(q, k, inv_scale=dim**-0.5, eps=1e-6)
    v = mx.random.normal((1, length, v_heads, dim))
    a, b = mx.random.normal((1, length, v_heads)), mx.random.normal((1, length, v_heads))
    a_log, dt_bias = 0.5 * mx.random.normal((v_heads,)), mx.random.normal((v_heads,))
    state = 0.1 * mx.random.normal((1, v_heads, dim, dim))
    return q, k, v, a, b, a_log, dt_bias, state


@pytest.mark.parametrize("length,chunk,k_heads", [(1, 64, 4), (37, 8, 4), (70, 64, 2)])
def test_chunked_recurrence_matches_the_token_loop(length, chunk, k_heads):
    q, k, v, a, b, a_log, dt_bias, state = _inputs(length, k_heads, 4, 32)
    expected, expected_state = gated_delta_ops(q, k, v, compute_g(a_log, a, dt_bias), mx.sigmoid(b), state)
    y, final = chunked_gated_delta(q, k, v, log_decay(a_log, a, dt_bias), mx.sigmoid(b), state, chunk=chunk)
    assert y.shape == expected.shape and final.shape == expected_state.shape
    assert mx.allclose(y, expected, atol=1e-5, rtol=1e-4).item()
    assert mx.allclose(final, expected_state, atol=1e-5, rtol=1e-4).item()


@pytest.mark.parametrize("bias", [False, True])
def test_depthwise_conv_is_the_convolution(bias):
    conv = nn.Conv1d(24, 24, 4, groups=24, bias=bias)
    window = mx.random.normal((1, 11, 24))
    assert mx.allclose(depthwise_conv(conv, window), conv(window), atol=1e-6).item()


def test_prefill_layer_matches_mlx_lm_and_leaves_the_same_cache(tmp_path):
    model = load_model(write_random_checkpoint(tmp_path, seed=5, num_hidden_layers=4)).model
    layer = next(candidate for candidate in model.language_model.model.layers if candidate.is_linear)
    x = mx.random.normal((1, 19, model.language_model.args.hidden_size))
    ours, theirs = ArraysCache(size=2), ArraysCache(size=2)
    for part in (x[:, :12], x[:, 12:]):  # a second chunk starts from the first's caches
        out = prefill_linear_layer(layer, part, ours)
        expected = layer(part, mask=None, cache=theirs)
        assert mx.allclose(out, expected, atol=1e-4, rtol=1e-4).item()
    assert mx.array_equal(ours[0], theirs[0]).item()
    assert mx.allclose(ours[1], theirs[1], atol=1e-5, rtol=1e-4).item()
