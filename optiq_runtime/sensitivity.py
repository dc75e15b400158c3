"""Per-module sensitivity state: the quantizable modules, their measured KL and weight errors.

``Sensitivity`` holds, per quantizable module, the summed token KL attributed to it at the low
format (measured by ``kl_gradient``: one backward pass per calibration batch scores every module)
and its squared weight error at each format, from which KL at the other formats is estimated
(KL is quadratic in a small perturbation). It is saved after every batch to ``sensitivity.json``
so an interrupted run resumes and a new budget needs no measuring. The forward pass it is measured
through lives in ``forward``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from optiq_runtime.allocate import LayerChoice, Width

FORMAT_VERSION = 4  # 4: KL from the gradient of KL at the all-low model (kl_gradient), not per-layer probes
# Formats whose KL can be estimated from a measured one by the weight-error ratio.
ESTIMABLE_BITS = (2, 3, 4, 5, 6, 8)
GROUP_SIZES = (32, 64, 128)  # the group sizes MLX quantizes with
# Weight errors (used only as ratios between formats) are measured on at most this many evenly spaced rows.
ERROR_ROWS = 512
_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class Target:
    """A quantizable module: its path in the model, the block a probe restarts from, its weight shape.

    ``block`` is -1 for modules before the first block (the embedding: rerun everything) and
    the number of blocks for modules after the last one (the head: rerun only the head).
    """

    path: str
    block: int
    shape: tuple[int, int]
    fixed: dict | None = None  # quantization the model itself imposes (e.g. MoE gates): never probed

    def nbytes(self, width: Width) -> int:
        return width.nbytes(*self.shape)

    @property
    def fixed_width(self) -> Width | None:
        return Width(self.fixed["bits"], self.fixed["group_size"]) if self.fixed else None


def find_targets(model: nn.Module, group_size: int) -> list[Target]:
    """Every module a uniform build quantizes (mlx-lm's rule: ``to_quantized`` and whole groups)."""
    predicate = getattr(model, "quant_predicate", None)
    blocks = len(model.layers)
    targets = []
    for path, module in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if not hasattr(module, "to_quantized") or module.weight.shape[-1] % group_size:
            continue
        verdict = predicate(path, module) if predicate else True
        if verdict is False:
            continue
        targets.append(
            Target(
                path,
                _block_of(path, blocks),
                tuple(module.weight.shape),
                verdict if isinstance(verdict, dict) else None,
            )
        )
    return targets


def _block_of(path: str, blocks: int) -> int:
    if match := _BLOCK.search(path):
        return int(match.group(1))
    return blocks if path.endswith("lm_head") else -1


def qdq(weight: mx.array, bits: int, group_size: int) -> mx.array:
    """The float32 weight a saved ``bits``-bit layer computes with: quantized from bf16, bf16 scales."""
    packed, scales, biases = mx.quantize(weight.astype(mx.bfloat16), group_size=group_size, bits=bits)
    return mx.dequantize(packed, scales.astype(mx.float32), biases.astype(mx.float32), group_size=group_size, bits=bits)


@dataclass
class Sensitivity:
    """Measured so far: per module the summed token KL at the low format and weight errors; how far the run got."""

    fingerprint: str
    reference: str
    bits: int
    high_bits: int
    group_size: int
    batches: int
    batches_done: int
    tokens_done: int
    layers: dict[str, dict]
    estimator: str = "kl-gradient"  # how kl_sum was measured (kl_gradient's docstring)
    batch_tokens: int = 0  # calibration tokens per batch (chosen from the memory budget)
    all_low_kl_sum: float = 0.0  # summed token KL of the model with every target at the low format
    mtp_weight: float = 0.0  # weight of the MTP head's drafts' KL in the objective (kl_gradient's docstring)
    all_low_draft_kl_sum: float = 0.0  # ... and their weighted summed KL at the all-low model

    @property
    def complete(self) -> bool:
        return self.batches_done >= self.batches

    @property
    def low(self) -> Width:
        return Width(self.bits, self.group_size)

    @property
    def high(self) -> Width:
        return Width(self.high_bits, self.group_size)

    def mean_kl(self, path: str, width: Width) -> float:
        """Mean token KL with this module alone at ``width``: measured at the low format, else estimated
        by the ratio of squared weight errors (KL is quadratic in a small perturbation)."""
        if self.tokens_done == 0:
            return 0.0
        layer = self.layers[path]
        anchor = layer["kl_sum"].get(self.low.label, 0.0)
        if width == self.low:
            return max(0.0, anchor / self.tokens_done)  # an interaction can outweigh a module's own error
        mse = layer.get("mse", {})
        low_error = mse.get(self.low.label)
        ratio = mse.get(width.label, 0.0) / low_error if low_error else 0.0
        return max(0.0, anchor * ratio / self.tokens_done)

    def missing_errors(self, widths: tuple[Width, ...]) -> list[Width]:
        """Formats some non-fixed module has no weight error for."""
        return sorted(
            {
                w
                for w in widths
                for layer in self.layers.values()
                if not layer.get("fixed") and w.label not in layer.get("mse", {})
            }
        )

    def targets(self) -> list[Target]:
        return [
            Target(path, layer["block"], tuple(layer["shape"]), layer.get("fixed"))
            for path, layer in self.layers.items()
        ]

    def choices(self, widths: tuple[Width, ...] | None = None) -> list[LayerChoice]:
        """What the allocator needs: bytes and mean KL at each candidate format (default: low and high)."""
        widths = widths or (self.low, self.high)
        choices = []
        for target in self.targets():
            fixed = target.fixed_width
            if fixed is not None:
                choices.append(LayerChoice(target.path, {fixed: target.nbytes(fixed)}, {fixed: 0.0}, fixed))
                continue
            sizes = {width: target.nbytes(width) for width in widths}
            kl = {width: self.mean_kl(target.path, width) for width in widths}
            choices.append(LayerChoice(target.path, sizes, kl, self.low))
        return choices

    def to_json(self) -> dict:
        data = dict(vars(self), version=FORMAT_VERSION)
        for path, layer in self.layers.items():
            widths = [Width.parse(label) for label in layer.get("mse", {})]
            data["layers"][path]["kl"] = {w.label: self.mean_kl(path, w) for w in sorted(widths) or [self.low]}
        return data

    def save(self, file: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file."""
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(partial, file)

    @classmethod
    def load(cls, file: Path) -> Sensitivity | None:
        """The saved state, or None when there is none or it is from another format."""
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.pop("version", None) != FORMAT_VERSION:
            return None
        try:
            return cls(**data)
        except TypeError:
            return None


def fresh(
    targets: list[Target], fingerprint: str, bits: int, high_bits: int, group_size: int, batches: int, batch_tokens: int
) -> Sensitivity:
    layers = {t.path: {"block": t.block, "shape": list(t.shape), "fixed": t.fixed, "kl_sum": {}} for t in targets}
    return Sensitivity(
        fingerprint, "bf16", bits, high_bits, group_size, batches, 0, 0, layers, batch_tokens=batch_tokens
    )


def weight_errors(weight: mx.array, widths: tuple[Width, ...]) -> dict[str, float]:
    """Squared weight error at each format (KL grows with it about linearly), keyed by label, over
    at most ``ERROR_ROWS`` evenly spaced rows."""
    exact = weight[:: -(-weight.shape[0] // ERROR_ROWS)].astype(mx.float32)
    found = {}
    for width in widths:
        if weight.shape[-1] % width.group_size == 0:
            found[width.label] = mx.square(qdq(exact, width.bits, width.group_size) - exact).sum().item()
    return found
