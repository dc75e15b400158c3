"""Bit allocation: the knapsack never exceeds its byte budget and finds the best widths."""

from __future__ import annotations

import itertools

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_runtime.allocate import LayerChoice, allocate, quantized_bytes
from optiq_runtime.errors import BadInputError


def layer(index: int, rows: int, cols: int, kl4: float, kl8: float, extra: dict | None = None) -> LayerChoice:
    sizes = {4: quantized_bytes(rows, cols, 4, 64), 8: quantized_bytes(rows, cols, 8, 64)}
    kl = {4: kl4, 8: kl8}
    for bits, value in (extra or {}).items():
        sizes[bits], kl[bits] = quantized_bytes(rows, cols, bits, 64), value
    return LayerChoice(f"l{index}", sizes, kl, 4)


shapes = st.tuples(st.sampled_from([2, 16, 64, 128, 384]), st.sampled_from([64, 128, 256, 1024]))
two_widths = st.lists(st.tuples(shapes, st.floats(0, 1), st.floats(0, 0.01)), min_size=1, max_size=8).map(
    lambda specs: [layer(i, *shape, kl4, kl8) for i, (shape, kl4, kl8) in enumerate(specs)])
many_widths = st.lists(st.tuples(shapes, st.floats(0, 1), st.floats(0, 0.01), st.floats(0, 4), st.floats(0, 0.3)),
                       min_size=1, max_size=5).map(
    lambda specs: [layer(i, *shape, kl4, kl8, {3: kl3, 5: kl5}) for i, (shape, kl4, kl8, kl3, kl5) in enumerate(specs)])


def brute_force(layers: list[LayerChoice], limit: int) -> float:
    best = float("inf")
    for widths in itertools.product(*(sorted(it.bytes) for it in layers)):
        if sum(it.bytes[w] for it, w in zip(layers, widths)) <= limit:
            best = min(best, sum(it.kl[w] for it, w in zip(layers, widths)))
    return best


def check(layers, result, budget):
    assert result.bytes <= result.limit_bytes <= budget * result.uniform_bytes
    assert result.bytes == sum(it.bytes[result.widths[it.path]] for it in layers)
    assert result.kl_sum == pytest.approx(sum(it.kl[result.widths[it.path]] for it in layers))


@settings(max_examples=150, deadline=None)
@given(two_widths, st.floats(1.0, 2.0))
def test_never_exceeds_budget_and_is_optimal(layers, budget):
    result = allocate(layers, budget)
    check(layers, result, budget)
    assert result.optimal
    assert result.kl_sum == pytest.approx(brute_force(layers, result.limit_bytes), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(many_widths, st.floats(1.0, 1.5))
def test_several_widths_optimal_within_budget(layers, budget):
    result = allocate(layers, budget)
    check(layers, result, budget)
    assert result.kl_sum == pytest.approx(brute_force(layers, result.limit_bytes), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(many_widths, st.floats(1.0, 1.5))
def test_coarse_units_stay_within_budget_and_bound_the_optimum(layers, budget):
    result = allocate(layers, budget, max_cells=20)
    check(layers, result, budget)
    best = brute_force(layers, result.limit_bytes)
    assert result.kl_bound <= best + 1e-12 and result.kl_sum >= best - 1e-12


def test_budget_one_keeps_everything_low():
    layers = [layer(0, 64, 64, 1.0, 0.0), layer(1, 128, 64, 2.0, 0.0)]
    result = allocate(layers, 1.0)
    assert set(result.widths.values()) == {4}
    assert result.bytes == result.uniform_bytes


def test_budget_below_uniform_is_bad_input():
    with pytest.raises(BadInputError, match="below uniform"):
        allocate([layer(0, 64, 64, 1.0, 0.0)], 0.99)


def test_beats_greedy_by_kl_per_byte():
    big = layer(0, 1024, 1024, 1.0, 0.0)  # 512 KiB to promote
    small = [layer(i, 64, 1024, 0.3, 0.0) for i in range(1, 5)]  # 32 KiB each, better KL per byte
    # Greedy takes the four small ones (KL 1.0 left), then the big one no longer fits;
    # the big one with two small ones fills the budget exactly (KL 0.6 left).
    result = allocate([big, *small], 1.8)
    assert result.widths["l0"] == 8 and sum(bits == 8 for bits in result.widths.values()) == 3
    assert result.kl_sum == pytest.approx(0.6)
    assert result.bytes == result.limit_bytes


def test_lower_widths_pay_for_higher_ones():
    sensitive = layer(0, 64, 1024, 1.0, 0.01, {5: 0.3})
    tolerant = [layer(i, 64, 1024, 0.01, 0.0, {3: 0.02}) for i in range(1, 4)]
    with_three = allocate([sensitive, *tolerant], 1.0)
    assert with_three.widths["l0"] > 4 and 3 in with_three.widths.values()
    assert with_three.bytes <= with_three.uniform_bytes


def test_byte_formula_matches_mlx_tensors():
    weight = mx.random.normal((96, 256)).astype(mx.bfloat16)
    for bits in (3, 4, 5, 8):
        packed, scales, biases = mx.quantize(weight, group_size=64, bits=bits)
        assert quantized_bytes(96, 256, bits, 64) == packed.nbytes + scales.nbytes + biases.nbytes
