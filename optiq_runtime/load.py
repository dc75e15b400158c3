"""Load a model folder (a Hugging Face base or a built one) for inference."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from optiq_runtime import fp8
from optiq_runtime.checkpoint import inspect_checkpoint, resolve_base
from optiq_runtime.errors import BadInputError

_LOW_PRECISION = (mx.bfloat16, mx.float16)


@dataclass
class LoadedModel:
    """A model ready to run, with what it was loaded from."""

    model: nn.Module
    tokenizer: Any
    path: Path
    config: dict
    metadata: dict = field(default_factory=dict)


def cpu_backend() -> bool:
    """Whether MLX runs on its CPU backend here (no Metal, or the CPU is the default device)."""
    return mx.default_device().type == mx.DeviceType.cpu or not mx.metal.is_available()


def upcast_floats(model: nn.Module) -> nn.Module:
    """Cast every bf16/f16 parameter (quantization scales and biases included) to float32, in place.

    On the CPU backend quantized matmuls with bf16 scales run ~10x slower than with float32 ones.
    Packed uint32 weights are left alone.
    """

    def cast(value: mx.array) -> mx.array:
        return value.astype(mx.float32) if value.dtype in _LOW_PRECISION else value

    model.update(tree_map(cast, model.parameters()))
    return model


def load_network(path: str | os.PathLike, *, upcast: bool | None = None, lazy: bool = False) -> tuple[nn.Module, dict]:
    """The mlx-lm model and its config; ``upcast`` defaults to whether this is the CPU backend."""
    from mlx_lm.utils import load_model as mlx_load_model

    checkpoint = inspect_checkpoint(path)
    try:
        model, config = mlx_load_model(
            checkpoint.path, lazy=True, get_model_classes=_dequantizing_classes(fp8.block_size(checkpoint.config))
        )
    except ValueError as error:
        raise BadInputError(f"cannot load {checkpoint.path}: {error}") from error
    if cpu_backend() if upcast is None else upcast:
        upcast_floats(model)
    if not lazy:
        mx.eval(model.parameters())
    return model, config


def _dequantizing_classes(block: tuple[int, int] | None):
    """mlx-lm's model classes, whose ``sanitize`` first dequantizes fp8 weights (``optiq_runtime.fp8``)."""
    from mlx_lm.utils import _get_classes

    def classes(config: dict):
        model_class, args_class = _get_classes(config)
        if block is None:
            return model_class, args_class

        def sanitize(self, weights):
            weights = fp8.dequantize(weights, block)
            return model_class.sanitize(self, weights) if hasattr(model_class, "sanitize") else weights

        return type(model_class.__name__, (model_class,), {"sanitize": sanitize}), args_class

    return classes


def load_tokenizer(path: str | os.PathLike, config: dict | None = None):
    """The folder's tokenizer, wrapped by mlx-lm (streaming detokenizer, eos ids)."""
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    eos = (config or {}).get("eos_token_id")
    return mlx_load_tokenizer(Path(path), eos_token_ids=eos)


def read_metadata(path: str | os.PathLike) -> dict:
    """``optiq/metadata.json`` of a built folder, or {} for a folder that has none."""
    file = Path(path) / "optiq" / "metadata.json"
    return json.loads(file.read_text()) if file.exists() else {}


def load_model(path: str | os.PathLike, *, upcast: bool | None = None) -> LoadedModel:
    """Load a model folder (or Hub id) with its tokenizer; float32 scales and params on the CPU backend."""
    folder = resolve_base(path)
    model, config = load_network(folder, upcast=upcast)
    tokenizer = load_tokenizer(folder, config)
    return LoadedModel(model, tokenizer, folder, config, read_metadata(folder))
