"""Bit allocation: the knapsack never exceeds its byte budget and finds the best promoted set."""

from __future__ import annotations

import itertools

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_runtime.allocate import LayerCost, allocate, quantized_bytes
from optiq_runtime.errors import BadInputError


def layer(index: int, rows: int, cols: int, kl_low: float, kl_high: float) -> LayerCost:
    return LayerCost(f"l{index}", quantized_bytes(rows, cols, 4, 64), quantized_bytes(rows, cols, 8, 64), kl_low, kl_high)


layers_strategy = st.lists(
    st.tuples(st.sampled_from([2, 16, 64, 128, 384]), st.sampled_from([64, 128, 256, 1024]),
              st.floats(0, 1), st.floats(0, 0.01)),
    min_size=1, max_size=9,
).map(lambda specs: [layer(i, *spec) for i, spec in enumerate(specs)])


def brute_force(layers: list[LayerCost], limit: int) -> float:
    uniform = sum(it.bytes_low for it in layers)
    best = 0.0
    for size in range(len(layers) + 1):
        for chosen in itertools.combinations(layers, size):
            if uniform + sum(it.extra_bytes for it in chosen) <= limit:
                best = max(best, sum(it.gain for it in chosen))
    return best


@settings(max_examples=150, deadline=None)
@given(layers_strategy, st.floats(1.0, 2.0))
def test_never_exceeds_budget_and_is_optimal(layers, budget):
    result = allocate(layers, budget)
    assert result.bytes <= result.limit_bytes <= budget * result.uniform_bytes
    assert result.bytes == result.uniform_bytes + sum(it.extra_bytes for it in layers if it.path in result.high)
    assert result.optimal
    assert result.gain == pytest.approx(brute_force(layers, result.limit_bytes), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(layers_strategy, st.floats(1.0, 2.0))
def test_coarse_units_stay_within_budget_and_report_a_bound(layers, budget):
    result = allocate(layers, budget, max_cells=20)
    assert result.bytes <= result.limit_bytes
    assert result.gain <= result.gain_bound + 1e-12
    assert brute_force(layers, result.limit_bytes) <= result.gain_bound + 1e-12


def test_budget_one_keeps_everything_low():
    layers = [layer(0, 64, 64, 1.0, 0.0), layer(1, 128, 64, 2.0, 0.0)]
    result = allocate(layers, 1.0)
    assert result.high == frozenset()
    assert result.bytes == result.uniform_bytes


def test_budget_below_uniform_is_bad_input():
    with pytest.raises(BadInputError, match="below uniform"):
        allocate([layer(0, 64, 64, 1.0, 0.0)], 0.99)


def test_beats_greedy_by_kl_per_byte():
    big = layer(0, 1024, 1024, 1.0, 0.0)  # 512 KiB to promote
    small = [layer(i, 64, 1024, 0.3, 0.0) for i in range(1, 5)]  # 32 KiB each, better KL per byte
    # Greedy takes the four small ones (gain 1.2), then the big one no longer fits;
    # the big one with two small ones fills the budget exactly (gain 1.6).
    result = allocate([big, *small], 1.8)
    assert "l0" in result.high and len(result.high) == 3
    assert result.gain == pytest.approx(1.6)
    assert result.bytes == result.limit_bytes


def test_byte_formula_matches_mlx_tensors():
    weight = mx.random.normal((96, 256)).astype(mx.bfloat16)
    for bits in (4, 8):
        packed, scales, biases = mx.quantize(weight, group_size=64, bits=bits)
        assert quantized_bytes(96, 256, bits, 64) == packed.nbytes + scales.nbytes + biases.nbytes
