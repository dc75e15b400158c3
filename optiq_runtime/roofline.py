"""This machine's limits for inference, measured now, and a model's share of them.

Prefill is bounded by matmul throughput (about 2 x parameters flops per token); decoding by
how fast the weights can be read (their stored bytes per token). Both limits are measured
with numpy (its own multithreaded BLAS) so that they do not depend on how MLX is set up.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GEMM_SIZE = 1024
READ_BYTES = 128 << 20
_REPEATS = 10


@dataclass(frozen=True)
class Limits:
    """Float32 GEMM throughput and memory read bandwidth."""

    gemm_flops: float
    read_bytes_s: float

    def best(self, other: Limits) -> Limits:
        return Limits(max(self.gemm_flops, other.gemm_flops), max(self.read_bytes_s, other.read_bytes_s))


@dataclass(frozen=True)
class ModelSize:
    """A model folder's parameters (quantized ones counted unpacked) and stored weight bytes."""

    params: int
    weight_bytes: int


def measure_limits() -> Limits:
    """The best of a few float32 GEMMs and full reads of a large array (a second or two)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    big = np.ones(READ_BYTES // 4, dtype=np.float32)
    gemm = _best(lambda: a @ b)
    read = _best(big.sum)
    return Limits(2 * GEMM_SIZE**3 / gemm, READ_BYTES / read)


def _best(run) -> float:
    run()
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def model_size(folder: str | Path) -> ModelSize:
    """Counted from the safetensors headers of the main model's weights (no weights are read; no MTP head)."""
    shapes: dict[str, tuple[int, int]] = {}  # name -> (elements, bytes)
    for file in sorted(Path(folder).glob("model*.safetensors")):
        shapes.update((k, v) for k, v in _header(file).items() if not k.startswith("mtp."))  # a base's MTP head
    quantization = json.loads((Path(folder) / "config.json").read_text()).get("quantization") or {}
    params = weight_bytes = 0
    for name, (elements, nbytes) in shapes.items():
        weight_bytes += nbytes
        stem = name.rsplit(".", 1)[0]
        if name.endswith((".scales", ".biases")) and f"{stem}.weight" in shapes:
            continue  # a quantized layer's: its weight counts the parameters
        scales = shapes.get(f"{stem}.scales") if name.endswith(".weight") else None
        params += scales[0] * _group_size(quantization, stem) if scales else elements
    return ModelSize(params, weight_bytes)


def _group_size(quantization: dict, stem: str) -> int:
    """Elements per scale of layer ``stem`` in an mlx-lm ``quantization`` config (64 when unsaid)."""
    layer = quantization.get(stem) or quantization.get(stem.removeprefix("language_model.")) or {}
    default = int(quantization.get("group_size", 64))
    return int(layer.get("group_size", default)) if isinstance(layer, dict) else default


def _header(file: Path) -> dict[str, tuple[int, int]]:
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        elements = int(np.prod(info["shape"])) if info["shape"] else 1
        start, stop = info["data_offsets"]
        out[name] = (elements, stop - start)
    return out


def fractions(limits: Limits, size: ModelSize, prefill_tok_s: float, decode_tok_s: float) -> dict:
    """Prefill as a share of the GEMM limit and decoding as a share of the read limit, with both limits in tok/s."""
    prefill_limit = limits.gemm_flops / (2 * size.params)
    decode_limit = limits.read_bytes_s / size.weight_bytes
    return {
        "gemm_gflops": round(limits.gemm_flops / 1e9, 1),
        "read_gb_s": round(limits.read_bytes_s / 1e9, 2),
        "params": size.params,
        "weight_bytes": size.weight_bytes,
        "prefill_limit_tok_s": round(prefill_limit, 1),
        "decode_limit_tok_s": round(decode_limit, 1),
        "prefill_fraction": round(prefill_tok_s / prefill_limit, 4),
        "decode_fraction": round(decode_tok_s / decode_limit, 4),
    }
