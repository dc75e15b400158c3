"""Block-scaled FP8 checkpoints, as Qwen publishes its ``*-FP8`` models: dequantized when loaded.

Such a checkpoint stores a Linear weight ``X.weight`` as float8 e4m3 and beside it
``X.weight_scale_inv``, one float per ``weight_block_size`` block (``[128, 128]``); the weight is
``fp8 * scale`` block by block. ``config.json`` says so in ``quantization_config``
(``quant_method: fp8``). mlx-lm keeps only power-of-two 32x32-block fp8 packed (as mxfp8); every
other fp8 checkpoint is expected to be dequantized by the model's own ``sanitize``, which Qwen3.5's
does not do. optiq dequantizes to bf16 before the model sees the weights, so a base in this format
loads, quantizes and decodes like its bf16 original.

MLX is imported where weights are dequantized, not at import: the training side writes this format
from its names alone, where MLX is not installed (a lent GPU machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from optiq_runtime.errors import BadInputError

if TYPE_CHECKING:
    import mlx.core as mx

SCALE_SUFFIX = "_scale_inv"  # ``X.weight`` -> ``X.weight_scale_inv``


def block_size(config: dict) -> tuple[int, int] | None:
    """The ``weight_block_size`` of a block-scaled fp8 config (top level or ``text_config``), else None."""
    for where in (config, config.get("text_config") or {}):
        quantization = where.get("quantization_config") or {}
        if quantization.get("quant_method") == "fp8":
            block = quantization.get("weight_block_size")
            if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
                raise BadInputError(f"fp8 quantization_config needs weight_block_size [rows, cols], got {block!r}")
            return block[0], block[1]
    return None


def folder_block_size(folder: Path) -> tuple[int, int] | None:
    """``block_size`` of the ``config.json`` in ``folder`` (None when there is none)."""
    config_file = Path(folder) / "config.json"
    return block_size(json.loads(config_file.read_text())) if config_file.exists() else None


def dequantize_block(weight: mx.array, scale: mx.array, block: tuple[int, int]) -> mx.array:
    """The bf16 weight of one fp8 tensor (stored as uint8 bytes) and its per-block scales."""
    import mlx.core as mx

    rows, cols = weight.shape
    if scale.shape != (-(-rows // block[0]), -(-cols // block[1])):
        raise ValueError(f"scales of shape {tuple(scale.shape)} do not tile a {rows}x{cols} weight in {block} blocks")
    expanded = mx.repeat(mx.repeat(scale.astype(mx.float32), block[0], axis=0), block[1], axis=1)
    return (mx.from_fp8(weight, dtype=mx.float32) * expanded[:rows, :cols]).astype(mx.bfloat16)


def dequantize(weights: dict[str, mx.array], block: tuple[int, int] | None) -> dict[str, mx.array]:
    """``weights`` with every fp8 weight and its ``*_scale_inv`` replaced by the bf16 weight they encode."""
    scales = [name for name in weights if name.endswith(SCALE_SUFFIX)]
    if not scales:
        return weights
    import mlx.core as mx

    if block is None:
        raise BadInputError(f"{scales[0]} is an fp8 scale, but config.json declares no fp8 quantization_config")
    out = {name: value for name, value in weights.items() if not name.endswith(SCALE_SUFFIX)}
    for scale_name in scales:
        name = scale_name.removesuffix(SCALE_SUFFIX)
        weight = out.get(name)
        if weight is None or weight.dtype != mx.uint8 or weight.ndim != 2:
            raise BadInputError(f"{scale_name} has no fp8 matrix {name} beside it")
        try:
            out[name] = dequantize_block(weight, weights[scale_name], block)
        except ValueError as error:
            raise BadInputError(f"{name}: {error}") from error
    return out
