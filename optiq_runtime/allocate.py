"""Choose each layer's quantization format: a (multiple-choice) knapsack under a hard byte budget.

A format (``Width``) is a bit width and a group size. Every quantizable module has a few
candidate formats (by default the low and the high bits, each at the default and at a finer
group size), each with its bytes and its measured (or estimated) KL. We pick one format per
module to minimise the summed KL with the total bytes at most ``budget * uniform_bytes``,
where uniform puts every module at its default format (low bits, default group size). Bytes
count packed weights, scales and biases.

The dynamic programme runs over byte units: exact when the unit is the greatest common divisor
of the cost differences; for very large models the unit is coarsened, costs rounded up (so the
answer still fits) and rounded down in a second pass whose optimum bounds how good any answer
could be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import numpy as np

from optiq_runtime.errors import BadInputError

# Above this many DP cells (modules x capacity units) the byte unit is coarsened.
MAX_CELLS = 30_000_000


@dataclass(frozen=True, order=True)
class Width:
    """A quantization format: ``bits`` per weight, one scale and bias per ``group_size`` weights."""

    bits: int
    group_size: int

    @property
    def label(self) -> str:
        """``4g64``: how metadata and sensitivity.json name the format."""
        return f"{self.bits}g{self.group_size}"

    @classmethod
    def parse(cls, label: str) -> Width:
        bits, _, group_size = label.partition("g")
        return cls(int(bits), int(group_size))

    def nbytes(self, out_dims: int, in_dims: int) -> int:
        return quantized_bytes(out_dims, in_dims, self.bits, self.group_size)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class LayerChoice:
    """One quantizable module: bytes and mean KL at each candidate format, and its uniform format."""

    path: str
    bytes: dict[Width, int]
    kl: dict[Width, float]
    default: Width


@dataclass(frozen=True)
class Allocation:
    """The chosen formats, their bytes against the limit, and how close to optimal they are proven."""

    widths: dict[str, Width]
    bytes: int
    uniform_bytes: int
    limit_bytes: int
    kl_sum: float
    uniform_kl_sum: float
    kl_bound: float  # no allocation within the limit has a lower summed KL

    @property
    def optimal(self) -> bool:
        return self.kl_sum <= self.kl_bound + 1e-12 * max(1.0, abs(self.kl_bound))

    @property
    def ratio(self) -> float:
        return self.bytes / self.uniform_bytes

    def promoted(self, defaults: dict[str, Width]) -> frozenset[str]:
        """The modules not at their default format."""
        return frozenset(p for p, width in self.widths.items() if width != defaults[p])


def quantized_bytes(out_dims: int, in_dims: int, bits: int, group_size: int, scale_bytes: int = 2) -> int:
    """Bytes of one affine-quantized matrix: packed weights plus one scale and one bias per group."""
    groups = out_dims * (in_dims // group_size)
    return out_dims * in_dims * bits // 8 + 2 * groups * scale_bytes


def _options(layer: LayerChoice) -> list[tuple[Width, int, float]]:
    """(format, bytes above the cheapest format, KL) for each candidate, cheapest first."""
    cheapest = min(layer.bytes.values())
    ordered = sorted(layer.bytes, key=lambda width: (layer.bytes[width], width))
    return [(width, layer.bytes[width] - cheapest, layer.kl[width]) for width in ordered]


def _dp(options: list[list[tuple[Width, int, float]]], unit: int, capacity: int, round_up: bool):
    """Min summed KL over one option per layer with summed units <= capacity; (value, choice indices)."""
    units = capacity // unit
    best = np.zeros(units + 1)
    picks = np.zeros((len(options), units + 1), dtype=np.int16)
    for i, layer in enumerate(options):
        new = np.full(units + 1, np.inf)
        for j, (_, extra, kl) in enumerate(layer):
            weight = -(-extra // unit) if round_up else extra // unit
            if weight > units:
                continue
            candidate = best[: units + 1 - weight] + kl
            better = candidate < new[weight:]
            new[weight:][better] = candidate[better]
            picks[i, weight:][better] = j
        best = new
    chosen, room = [], units
    for i in range(len(options) - 1, -1, -1):
        j = int(picks[i, room])
        chosen.append(j)
        extra = options[i][j][1]
        room -= -(-extra // unit) if round_up else extra // unit
    return float(best[units]), chosen[::-1]


def _fill(options, chosen: list[int], room: int) -> list[int]:
    """Spend bytes that rounding left unused on the best KL-per-byte upgrades that still fit."""
    while True:
        moves = []
        for i, layer in enumerate(options):
            _, extra_now, kl_now = layer[chosen[i]]
            for j, (_, extra, kl) in enumerate(layer):
                if kl < kl_now and 0 < extra - extra_now <= room:
                    moves.append(((kl_now - kl) / (extra - extra_now), i, j))
        if not moves:
            return chosen
        _, i, j = max(moves)
        room -= options[i][j][1] - options[i][chosen[i]][1]
        chosen[i] = j


def allocate(layers: list[LayerChoice], budget: float, max_cells: int = MAX_CELLS) -> Allocation:
    """One format per module minimising summed KL with total bytes <= ``budget`` x uniform bytes."""
    if budget < 1.0:
        raise BadInputError(f"--budget {budget} is below uniform quantization (1.0): nothing could be built within it")
    uniform = sum(layer.bytes[layer.default] for layer in layers)
    limit = math.floor(budget * uniform)
    options = [_options(layer) for layer in layers]
    floor_bytes = sum(min(layer.bytes.values()) for layer in layers)
    capacity = limit - floor_bytes
    extras = [extra for layer in options for _, extra, _ in layer if extra > 0]
    unit = reduce(math.gcd, extras) if extras else 1
    exact = len(layers) * (capacity // unit + 1) <= max_cells
    if not exact:
        unit = max(unit, math.ceil(capacity * len(layers) / max_cells))
    _, chosen = _dp(options, unit, capacity, round_up=True)
    used = sum(options[i][j][1] for i, j in enumerate(chosen))
    if not exact:
        chosen = _fill(options, chosen, capacity - used)
        used = sum(options[i][j][1] for i, j in enumerate(chosen))
    kl_sum = sum(options[i][j][2] for i, j in enumerate(chosen))
    bound = kl_sum if exact else min(kl_sum, _dp(options, unit, capacity, round_up=False)[0])
    widths = {layer.path: options[i][j][0] for i, (layer, j) in enumerate(zip(layers, chosen))}
    uniform_kl = sum(layer.kl[layer.default] for layer in layers)
    return Allocation(widths, floor_bytes + used, uniform, limit, kl_sum, uniform_kl, bound)
