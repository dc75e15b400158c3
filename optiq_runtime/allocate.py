"""Choose which layers go to the high bit width: a 0/1 knapsack under a hard byte budget.

Each layer costs ``bytes_high - bytes_low`` to promote and gains ``kl_low - kl_high``; we
maximise the summed gain (so minimise the summed KL) with the promoted bytes at most
``budget * uniform_bytes - uniform_bytes``. Bytes count packed weights, scales and biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from optiq_runtime.errors import BadInputError

# Above this many DP cells (items x capacity units) we coarsen the byte unit, rounding costs up.
MAX_CELLS = 30_000_000


@dataclass(frozen=True)
class LayerCost:
    """One quantizable module: its bytes at each width and its probed KL at each width."""

    path: str
    bytes_low: int
    bytes_high: int
    kl_low: float
    kl_high: float

    @property
    def extra_bytes(self) -> int:
        return self.bytes_high - self.bytes_low

    @property
    def gain(self) -> float:
        return max(0.0, self.kl_low - self.kl_high)


@dataclass(frozen=True)
class Allocation:
    """The promoted set, its bytes against the limit, and how close to optimal it is proven to be."""

    high: frozenset[str]
    bytes: int
    uniform_bytes: int
    limit_bytes: int
    kl_sum: float
    gain: float
    gain_bound: float

    @property
    def optimal(self) -> bool:
        return self.gain >= self.gain_bound - 1e-12 * max(1.0, self.gain_bound)

    @property
    def ratio(self) -> float:
        return self.bytes / self.uniform_bytes


def quantized_bytes(out_dims: int, in_dims: int, bits: int, group_size: int, scale_bytes: int = 2) -> int:
    """Bytes of one affine-quantized matrix: packed weights plus one scale and one bias per group."""
    groups = out_dims * (in_dims // group_size)
    return out_dims * in_dims * bits // 8 + 2 * groups * scale_bytes


def _lp_bound(items: list[LayerCost], capacity: int) -> float:
    """The fractional-knapsack optimum: no 0/1 choice can gain more."""
    bound, room = 0.0, capacity
    for item in sorted(items, key=lambda it: it.gain / it.extra_bytes, reverse=True):
        if room <= 0:
            break
        take = min(1.0, room / item.extra_bytes)
        bound += take * item.gain
        room -= item.extra_bytes
    return bound


def _dp(gains: np.ndarray, weights: np.ndarray, capacity: int) -> list[int]:
    """Exact 0/1 knapsack over integer weights; indices of the chosen items."""
    best = np.zeros(capacity + 1)
    taken = np.zeros((len(gains), capacity + 1), dtype=bool)
    for i, (gain, weight) in enumerate(zip(gains, weights)):
        if weight > capacity:
            continue
        candidate = best[: capacity + 1 - weight] + gain
        better = candidate > best[weight:]
        best[weight:][better] = candidate[better]
        taken[i, weight:] = better
    chosen, room = [], capacity
    for i in range(len(gains) - 1, -1, -1):
        if taken[i, room]:
            chosen.append(i)
            room -= int(weights[i])
    return chosen


def _solve(items: list[LayerCost], capacity: int, max_cells: int) -> tuple[set[int], bool]:
    """The chosen indices, and whether the DP ran at the true byte granularity (then they are optimal)."""
    costs = [it.extra_bytes for it in items]
    unit = reduce(math.gcd, costs)
    exact = len(items) * (capacity // unit + 1) <= max_cells
    if not exact:
        unit = max(unit, math.ceil(capacity * len(items) / max_cells))
    weights = np.array([-(-c // unit) for c in costs])  # rounded up: a DP-feasible set fits in real bytes
    chosen = set(_dp(np.array([it.gain for it in items]), weights, capacity // unit))
    room = capacity - sum(costs[i] for i in chosen)
    for i in sorted(range(len(items)), key=lambda i: items[i].gain / costs[i], reverse=True):
        if i not in chosen and costs[i] <= room:  # rounding may leave room: fill it, still within bytes
            chosen.add(i)
            room -= costs[i]
    return chosen, exact


def allocate(layers: list[LayerCost], budget: float, max_cells: int = MAX_CELLS) -> Allocation:
    """The promoted set minimising summed KL with total bytes <= ``budget`` x uniform low-bit bytes.

    ``max_cells`` bounds the DP table; past it byte costs are rounded up to a coarser unit
    (still never over budget) and the LP bound says how far from optimal the answer can be.
    """
    if budget < 1.0:
        raise BadInputError(f"--budget {budget} is below uniform quantization (1.0): nothing could be built within it")
    uniform = sum(it.bytes_low for it in layers)
    limit = math.floor(budget * uniform)
    items = [it for it in layers if it.gain > 0 and it.extra_bytes > 0]
    capacity = limit - uniform
    chosen, exact = _solve(items, capacity, max_cells) if items and capacity > 0 else (set(), True)
    high = frozenset(items[i].path for i in chosen)
    used = uniform + sum(items[i].extra_bytes for i in chosen)
    gain = sum(items[i].gain for i in chosen)
    kl_sum = sum(it.kl_high if it.path in high else it.kl_low for it in layers)
    bound = gain if exact else max(gain, _lp_bound(items, capacity))
    return Allocation(high, used, uniform, limit, kl_sum, gain, bound)
