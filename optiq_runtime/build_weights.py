"""The quantized weights of a build: the base cast to bf16, each module quantized to its allocated format."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path

from optiq_runtime.allocate import Width
from optiq_runtime.build_options import BuildOptions
from optiq_runtime.sensitivity import Target


def as_bf16(model: nn.Module) -> nn.Module:
    """Cast float parameters to bf16 (mlx-lm's cast rule), so quantization scales are bf16 on disk."""
    keep = getattr(model, "cast_predicate", lambda path: True)

    def cast(path, value):
        if mx.issubdtype(value.dtype, mx.floating) and value.dtype != mx.bfloat16 and keep(path):
            return value.astype(mx.bfloat16)
        return value

    model.update(tree_map_with_path(cast, model.parameters()))
    return model


def quantize_modules(model: nn.Module, widths: dict[str, dict]) -> None:
    """Quantize exactly the modules named in ``widths`` with their own group size and bits."""
    nn.quantize(model, class_predicate=lambda path, module: widths.get(path, False))


def module_formats(targets: list[Target], chosen: dict[str, Width], options: BuildOptions) -> dict[str, dict]:
    """Per-module quantization parameters: the chosen format (default the low one), or the model's fixed one."""
    widths = {}
    for t in targets:
        width = chosen.get(t.path, options.default_width)
        widths[t.path] = t.fixed or {"group_size": width.group_size, "bits": width.bits}
    return widths


def quantized_nbytes(model: nn.Module) -> int:
    """Bytes of the packed weights, scales and biases of every quantized module."""
    total = 0
    for _, module in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            total += module.weight.nbytes + module.scales.nbytes + module.biases.nbytes
    return total
