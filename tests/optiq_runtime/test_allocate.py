"""Format allocation: the knapsack never exceeds its byte budget and finds the best formats."""

from __future__ import annotations

import itertools

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optiq_runtime.allocate import LayerChoice, Width, allocate, quantized_bytes
from optiq_runtime.errors import BadInputError

W3, W4, W5, W8 = (Width(bits, 64) for bits in (3, 4, 5, 8))
W4_FINE, W8_FINE = Width(4, 32), Width(8, 32)


def layer(index: int, rows: int, cols: int, kl4: float, kl8: float, extra: dict | None = None) -> LayerChoice:
    kl = {W4: kl4, W8: kl8, **(extra or {})}
    return LayerChoice(f"l{index}", {width: width.nbytes(rows, cols) for width in kl}, kl, W4)


shapes = st.tuples(st.sampled_from([2, 16, 64, 128, 384]), st.sampled_from([64, 128, 256, 1024]))
two_widths = st.lists(st.tuples(shapes, st.floats(0, 1), st.floats(0, 0.01)), min_size=1, max_size=8).map(
    lambda specs: [layer(i, *shape, kl4, kl8) for i, (shape, kl4, kl8) in enumerate(specs)]
)
many_widths = st.lists(
    st.tuples(shapes, st.floats(0, 1), st.floats(0, 0.01), st.floats(0, 4), st.floats(0, 0.3)), min_size=1, max_size=5
).map(
    lambda specs: [
        layer(i, *shape, kl4, kl8, {W3: kl3, W5: kl5}) for i, (shape, kl4, kl8, kl3, kl5) in enumerate(specs)
    ]
)
# The default OptiQ candidates: 4 and 8 bits, each at group size 64 and 32 (finer groups lower the KL).
fine_groups = st.lists(
    st.tuples(shapes, st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.01)), min_size=1, max_size=6
).map(
    lambda specs: [
        layer(i, *shape, kl4, kl8, {W4_FINE: kl4 * fine, W8_FINE: kl8 * fine})
        for i, (shape, kl4, fine, kl8) in enumerate(specs)
    ]
)


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


@settings(max_examples=300, deadline=None)
@given(st.one_of(two_widths, fine_groups), st.floats(1.0, 2.0))
def test_never_exceeds_budget_and_is_optimal(layers, budget):
    """4/8 bits at one group size, and the default OptiQ formats (4/8 bits at groups 64 and 32)."""
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


@settings(max_examples=160, deadline=None)
@given(st.one_of(many_widths, fine_groups), st.floats(1.0, 1.5))
def test_coarse_units_stay_within_budget_and_bound_the_optimum(layers, budget):
    result = allocate(layers, budget, max_cells=20)
    check(layers, result, budget)
    best = brute_force(layers, result.limit_bytes)
    assert result.kl_bound <= best + 1e-12 and result.kl_sum >= best - 1e-12


def test_finer_groups_win_when_a_bit_more_does_not_fit():
    # 10% more bytes cannot pay for the big sensitive layer at 8 bits (+89% of its bytes) but can for
    # group size 32 (+11%).
    big = layer(0, 1024, 128, 1.0, 0.1, {W4_FINE: 0.7, W8_FINE: 0.05})
    small = [layer(i, 128, 128, 0.01, 0.0, {W4_FINE: 0.008, W8_FINE: 0.0}) for i in range(1, 4)]
    result = allocate([big, *small], 1.10)
    assert result.widths["l0"] == W4_FINE
    assert result.promoted({it.path: W4 for it in [big, *small]}) >= {"l0"}
    assert result.bytes <= result.limit_bytes


def test_budget_one_keeps_everything_low():
    layers = [layer(0, 64, 64, 1.0, 0.0, {W4_FINE: 0.5}), layer(1, 128, 64, 2.0, 0.0)]
    result = allocate(layers, 1.0)
    assert set(result.widths.values()) == {W4}
    assert result.bytes == result.uniform_bytes
    assert result.promoted({"l0": W4, "l1": W4}) == frozenset()


def test_budget_below_uniform_is_bad_input():
    with pytest.raises(BadInputError, match="below uniform"):
        allocate([layer(0, 64, 64, 1.0, 0.0)], 0.99)


def test_beats_greedy_by_kl_per_byte():
    big = layer(0, 1024, 1024, 1.0, 0.0)  # 512 KiB to promote
    small = [layer(i, 64, 1024, 0.3, 0.0) for i in range(1, 5)]  # 32 KiB each, better KL per byte
    # Greedy takes the four small ones (KL 1.0 left), then the big one no longer fits;
    # the big one with two small ones fills the budget exactly (KL 0.6 left).
    result = allocate([big, *small], 1.8)
    assert result.widths["l0"] == W8 and sum(width == W8 for width in result.widths.values()) == 3
    assert result.kl_sum == pytest.approx(0.6)
    assert result.bytes == result.limit_bytes


def test_lower_widths_pay_for_higher_ones():
    sensitive = layer(0, 64, 1024, 1.0, 0.01, {W5: 0.3})
    tolerant = [layer(i, 64, 1024, 0.01, 0.0, {W3: 0.02}) for i in range(1, 4)]
    with_three = allocate([sensitive, *tolerant], 1.0)
    assert with_three.widths["l0"].bits > 4 and W3 in with_three.widths.values()
    assert with_three.bytes <= with_three.uniform_bytes


def test_byte_formula_matches_mlx_tensors():
    weight = mx.random.normal((96, 256)).astype(mx.bfloat16)
    for bits in (3, 4, 5, 8):
        for group_size in (32, 64, 128):
            packed, scales, biases = mx.quantize(weight, group_size=group_size, bits=bits)
            expected = packed.nbytes + scales.nbytes + biases.nbytes
            assert quantized_bytes(96, 256, bits, group_size) == Width(bits, group_size).nbytes(96, 256) == expected


def test_format_labels_round_trip_and_order():
    assert Width(4, 32).label == "4g32" and str(Width(8, 64)) == "8g64"
    assert Width.parse("4g32") == Width(4, 32)
    assert sorted([W8, W4, W4_FINE]) == [W4_FINE, W4, W8]
