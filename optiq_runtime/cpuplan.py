"""How a quantized model runs on MLX's CPU backend here: chosen by measuring this machine, once.

MLX's CPU quantized matmul is a plain loop: per token it costs more than a float32 product
through BLAS, and its cost grows with the tokens of a pass, so a 512-token prefill chunk pays
512 times what one token does. Float32 copies of the weights run through BLAS instead. Which
form wins, for single-token passes (decode, MTP drafts and verification) and for prefill
chunks, and how many BLAS threads each should use, depends on the machine and the model's
shapes; it is measured on the model's own largest layer (seconds), and its timings recorded in
``$OPTIQ_HOME/cpuplan.json`` under a key naming the machine, the BLAS library and that shape.

Decode and verification always use the same form: MTP's greedy output is exact only when a
verification pass computes what the plain step it replaces would have.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten

from optiq_runtime.fastcpu import blas_library, set_blas_threads
from optiq_runtime.home import cache_home
from optiq_runtime.machine import available_memory, cpu_name

PLAN_FILE = "cpuplan.json"
# Tokens of the multi-token pass measured for prefill (a prefill chunk is longer; the ratio holds).
PREFILL_PROBE_TOKENS = 64
# Tokens of the verification pass measured beside the single-token one.
VERIFY_PROBE_TOKENS = 3
# Float32 copies are made only when they fit in this share of the memory available at load.
MEMORY_SHARE = 0.5
# A second BLAS thread is used only when it saves at least this share of the time: near a tie,
# one thread leaves the other core to the rest of the machine.
THREAD_GAIN = 0.1
_REPEATS = 3
_ROWS_AT_ONCE = 16384


@dataclass
class CpuPlan:
    """Which weights each kind of pass uses (``dense``: float32 copies; ``quantized``) and its BLAS threads."""

    decode: str = "quantized"
    prefill: str = "quantized"
    decode_threads: int = 1
    prefill_threads: int = 1
    key: str = ""
    timings_ms: dict = field(default_factory=dict)
    memory_limited: bool = False

    @property
    def dense(self) -> bool:
        """Whether any pass uses the float32 copies."""
        return "dense" in (self.decode, self.prefill)


@dataclass(frozen=True)
class _Probe:
    """The layer measured: its packed weight, scales and biases, and its quantization."""

    weight: mx.array
    scales: mx.array
    biases: mx.array | None
    bits: int
    group_size: int
    mode: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape[0], self.weight.shape[1] * 32 // self.bits


def quantized_layers(module: nn.Module) -> list[nn.Module]:
    """The quantized linear and embedding layers of ``module``."""
    return [m for _, m in module.named_modules() if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))]


def plan_for(modules: list[nn.Module], *, dense_bytes: int, refresh: bool = False) -> CpuPlan | None:
    """The plan for these quantized modules (None when nothing is quantized), from the cache or measured now."""
    probe = _largest_linear(modules)
    if probe is None:
        return None
    key = plan_key(probe)
    cached = None if refresh else read_plans().get(key)
    plan = _choose(cached["timings_ms"], key) if cached else _store(measure(probe, key))
    if plan.dense and dense_bytes > MEMORY_SHARE * available_memory():
        plan.decode, plan.prefill, plan.memory_limited = "quantized", "quantized", True
    return plan


def measure(probe: _Probe, key: str) -> CpuPlan:
    """Time the probe layer in each form, pass kind and thread count; pick the fastest of each kind."""
    x_one = mx.random.normal((1, probe.shape[1]))
    x_verify = mx.random.normal((VERIFY_PROBE_TOKENS, probe.shape[1]))
    x_chunk = mx.random.normal((PREFILL_PROBE_TOKENS, probe.shape[1]))
    dense = _dequantized(probe)
    timings: dict[str, float] = {}
    for threads in (1, 2):
        set_blas_threads(threads)
        for name, x in (("decode", x_one), ("verify", x_verify), ("prefill", x_chunk)):
            timings[f"{name}_dense_{threads}t"] = _time(lambda x=x: x @ dense.T)
    set_blas_threads(1)
    for name, x in (("decode", x_one), ("verify", x_verify), ("prefill", x_chunk)):
        timings[f"{name}_quantized"] = _time(lambda x=x: _quantized_matmul(probe, x))
    return _choose({k: round(v * 1e3, 3) for k, v in timings.items()}, key)


def _choose(timings_ms: dict[str, float], key: str) -> CpuPlan:
    """The fastest form and thread count of each kind (two threads only where they save ``THREAD_GAIN``)."""
    def best(kinds: tuple[str, ...]) -> tuple[str, int]:
        dense = {threads: sum(timings_ms[f"{k}_dense_{threads}t"] for k in kinds) for threads in (1, 2)}
        threads = 2 if dense[2] < (1 - THREAD_GAIN) * dense[1] else 1
        quantized = sum(timings_ms[f"{k}_quantized"] for k in kinds)
        return ("dense", threads) if dense[threads] < quantized else ("quantized", 1)

    decode, decode_threads = best(("decode", "verify"))
    prefill, prefill_threads = best(("prefill",))
    return CpuPlan(decode, prefill, decode_threads, prefill_threads, key, dict(timings_ms))


def _time(run) -> float:
    mx.eval(run())  # the first pass allocates
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        mx.eval(run())
        best = min(best, time.perf_counter() - start)
    return best


def _quantized_matmul(probe: _Probe, x: mx.array) -> mx.array:
    return mx.quantized_matmul(x, probe.weight, probe.scales, probe.biases, transpose=True,
                               group_size=probe.group_size, bits=probe.bits, mode=probe.mode)


def _dequantized(probe: _Probe) -> mx.array:
    dense = mx.dequantize(probe.weight, probe.scales, probe.biases, group_size=probe.group_size,
                          bits=probe.bits, mode=probe.mode).astype(mx.float32)
    mx.eval(dense)
    return dense


def _largest_linear(modules: list[nn.Module]) -> _Probe | None:
    layers = [m for module in modules for m in quantized_layers(module) if isinstance(m, nn.QuantizedLinear)]
    if not layers:
        return None
    layer = max(layers, key=lambda m: m.weight.size)
    return _Probe(layer.weight, layer.scales, getattr(layer, "biases", None), layer.bits, layer.group_size,
                  getattr(layer, "mode", "affine"))


def plan_key(probe: _Probe) -> str:
    """The machine, its BLAS, MLX's version and the probe's shape and quantization, as one short string."""
    rows, cols = probe.shape
    parts = [platform.machine(), cpu_name(), str(os.cpu_count()), mx.__version__, blas_library() or "reference",
             f"{rows}x{cols}", f"{probe.bits}b{probe.group_size}g", str(probe.scales.dtype)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def plans_file() -> Path:
    return cache_home() / PLAN_FILE


def read_plans() -> dict[str, dict]:
    """Every plan measured on this machine, by key ({} when none or the file is unreadable)."""
    try:
        data = json.loads(plans_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _store(plan: CpuPlan) -> CpuPlan:
    plans = read_plans()
    plans[plan.key] = asdict(plan)
    file = plans_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(plans, indent=1, sort_keys=True))
    partial.replace(file)
    return plan


def describe() -> dict:
    """What ``optiq doctor`` shows: the BLAS library in use and every plan measured on this machine."""
    from optiq_runtime.fastcpu import blas_advice

    return {
        "backend": "cpu" if mx.default_device().type == mx.DeviceType.cpu else "gpu",
        "blas": blas_library() or "reference (MLX's bundled BLAS)",
        "blas_advice": blas_advice(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "plans_file": str(plans_file()),
        "plans": read_plans(),
    }


class DualLinear(nn.Module):
    """A quantized linear layer beside its float32 copy; passes of at most ``short_tokens`` tokens are short.

    ``dense_short`` / ``dense_long``: whether short / long passes use the copy.
    """

    def __init__(self, layer: nn.QuantizedLinear, short_tokens: int, *, dense_short: bool, dense_long: bool):
        super().__init__()
        self.quantized = layer
        self.dense = dense_linear(layer)
        self.short_tokens = short_tokens
        self.dense_short, self.dense_long = dense_short, dense_long

    def __call__(self, x: mx.array) -> mx.array:
        short = x.size // x.shape[-1] <= self.short_tokens
        return self.dense(x) if (self.dense_short if short else self.dense_long) else self.quantized(x)


def dense_linear(layer: nn.QuantizedLinear) -> nn.Linear:
    """A float32 linear layer holding exactly the values ``layer`` multiplies by."""
    weight = _layer_dequantized(layer)
    out_dims, in_dims = weight.shape
    bias = "bias" in layer
    dense = nn.Linear(in_dims, out_dims, bias=bias)
    dense.weight = weight
    if bias:
        dense.bias = layer.bias
    return dense


def dense_embedding(layer: nn.QuantizedEmbedding) -> nn.Embedding:
    """A float32 embedding holding exactly ``layer``'s values (its ``as_linear`` serves a tied output too)."""
    weight = _layer_dequantized(layer)
    dense = nn.Embedding(*weight.shape)
    dense.weight = weight
    return dense


def _layer_dequantized(layer) -> mx.array:
    """``layer``'s float32 weight, made ``_ROWS_AT_ONCE`` rows at a time into one buffer.

    Dequantizing a 250k-row embedding at once passes through a second full-size temporary.
    """
    biases = getattr(layer, "biases", None)
    rows = layer.weight.shape[0]

    def part(start: int, stop: int) -> mx.array:
        return mx.dequantize(layer.weight[start:stop], layer.scales[start:stop],
                             None if biases is None else biases[start:stop], group_size=layer.group_size,
                             bits=layer.bits, mode=getattr(layer, "mode", "affine"))

    if rows <= _ROWS_AT_ONCE:
        return part(0, rows)
    first = part(0, _ROWS_AT_ONCE)
    weight = mx.zeros((rows, first.shape[1]), dtype=first.dtype)
    for start in range(0, rows, _ROWS_AT_ONCE):
        weight[start:start + _ROWS_AT_ONCE] = first if start == 0 else part(start, start + _ROWS_AT_ONCE)
        mx.eval(weight)  # in place: the buffer has no other reader
    return weight


def short_pass_form(layer: nn.Module) -> nn.Module:
    """The layer a short pass (decoding, drafting) runs through: a ``DualLinear``'s chosen form, else ``layer``."""
    if isinstance(layer, DualLinear):
        return layer.dense if layer.dense_short else layer.quantized
    return layer


def apply_plan(module: nn.Module, plan: CpuPlan, short_tokens: int) -> None:
    """Give ``module``'s quantized layers the forms ``plan`` asks for, in place, one layer at a time.

    Both kinds dense: plain float32 layers. One kind: ``DualLinear``s. An embedding is dense when
    decoding is: as a tied output layer it only ever sees short passes (prefill keeps the last
    token's logits). Each layer is replaced and evaluated before the next, which bounds the
    memory peak to the copies made so far plus one.
    """
    if not plan.dense:
        return
    short, long = plan.decode == "dense", plan.prefill == "dense"
    pending = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))]
    while pending:  # popped, so that a replaced layer's packed weights are freed at once
        name, layer = pending.pop()
        if isinstance(layer, nn.QuantizedEmbedding):
            replacement = dense_embedding(layer) if short else None
        elif short and long:
            replacement = dense_linear(layer)
        else:
            replacement = DualLinear(layer, short_tokens, dense_short=short, dense_long=long)
        if replacement is not None:
            mx.eval(replacement.parameters())
            module.update_modules(tree_unflatten([(name, replacement)]))
        del layer
    mx.clear_cache()
