"""The MTP head of a build: ``mtp.safetensors`` from the base's ``mtp.*`` tensors, its decoder projections quantized."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from optiq_runtime import fp8
from optiq_runtime.checkpoint import Checkpoint


def _mtp_layers(checkpoint: Checkpoint) -> int:
    text = checkpoint.config.get("text_config", checkpoint.config)
    indices = {name.split(".")[2] for name in checkpoint.tensor_names if name.startswith("mtp.layers.")}
    return int(text.get("mtp_num_hidden_layers") or len(indices))


def write_mtp(checkpoint: Checkpoint, folder: Path, bits: int, group_size: int) -> dict:
    """``mtp.safetensors``: the base's mtp.* tensors under HF names, decoder projections quantized, the rest bf16."""
    tensors: dict[str, mx.array] = {}
    for file in checkpoint.weight_files:
        tensors.update({k: v for k, v in mx.load(str(file)).items() if k.startswith("mtp.")})
    tensors = fp8.dequantize(tensors, fp8.block_size(checkpoint.config))
    out: dict[str, mx.array] = {}
    for name, value in sorted(tensors.items()):
        value = value.astype(mx.bfloat16) if mx.issubdtype(value.dtype, mx.floating) else value
        is_projection = name.startswith("mtp.layers.") and name.endswith(".weight") and value.ndim == 2
        if is_projection and value.shape[-1] % group_size == 0:
            stem = name[: -len(".weight")]
            out[name], out[f"{stem}.scales"], out[f"{stem}.biases"] = mx.quantize(
                value, group_size=group_size, bits=bits
            )
        else:
            out[name] = value
    mx.save_safetensors(str(folder / "mtp.safetensors"), out, metadata={"format": "mlx"})
    return {
        "file": "mtp.safetensors",
        "num_hidden_layers": _mtp_layers(checkpoint),
        "quantization": {"group_size": group_size, "bits": bits},
    }
