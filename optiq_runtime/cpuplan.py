"""How a quantized model runs on MLX's CPU backend here: chosen by measuring this machine, once.

MLX's CPU quantized matmul is a plain loop: per token it costs more than a float32 product
through BLAS, and its cost grows with the tokens of a pass, so a 512-token prefill chunk pays
512 times what one token does. Float32 copies of the weights run through BLAS instead. Which
form wins, for single-token passes (decode, MTP drafts and verification) and for prefill
chunks, and how many BLAS threads each should use, depends on the machine and the model's
shapes; it is measured on the model's own largest layer (seconds), and its timings recorded in
``$OPTIQ_HOME/cpuplan.json`` under a key naming the machine, the BLAS library and that shape.

A third form is the project's own quantized matmul (``optiq_runtime.qmatmul``), which reads the
packed weights in place: made for short passes, timed for prefill chunks too. Where it cannot be
built or loaded, the plan records why and layers keep MLX's kernels or the copies.

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
from mlx.utils import tree_flatten, tree_unflatten

from optiq_runtime.fastcpu import blas_library, set_blas_threads
from optiq_runtime.home import cache_home
from optiq_runtime.machine import available_memory, cpu_name
from optiq_runtime.qmatmul import KernelEmbedding, KernelLinear, KernelMLP, host_product, supports, supports_here
from optiq_runtime.qmatmul import status as kernel_status

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
# The kernel decodes only where it takes at most this share of the best other form's time: a
# model using it runs its short passes uncompiled, which the probe layer's timing does not show
# (on tiny-agent compiled graphs are most of the speed). Prefill is never compiled.
KERNEL_SHARE = 0.5
_REPEATS = 3
_ROWS_AT_ONCE = 16384


@dataclass
class CpuPlan:
    """Which weights each kind of pass uses (``dense``: float32 copies; ``quantized``; ``kernel``: the
    project's quantized matmul over the quantized weights) and its threads; ``kernel`` says whether
    that kernel was usable here, and why not when it was not."""

    decode: str = "quantized"
    prefill: str = "quantized"
    decode_threads: int = 1
    prefill_threads: int = 1
    key: str = ""
    timings_ms: dict = field(default_factory=dict)
    memory_limited: bool = False
    kernel: str = ""

    @property
    def dense(self) -> bool:
        """Whether any pass uses the float32 copies."""
        return "dense" in (self.decode, self.prefill)


@dataclass(frozen=True)
class _Probe:
    """The layer measured: its packed weight, scales and biases, and its quantization (a layer's attributes)."""

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
        plan = _choose({k: v for k, v in plan.timings_ms.items() if "_dense_" not in k}, key)
        plan.memory_limited = True
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
    if kernel_status().available and supports(probe):
        for threads in (1, 2):
            product = KernelLinear(probe, threads)
            for name, x in (("decode", x_one), ("verify", x_verify), ("prefill", x_chunk)):
                timings[f"{name}_kernel_{threads}t"] = _time(lambda x=x, product=product: product(x))
    return _choose({k: round(v * 1e3, 3) for k, v in timings.items()}, key)


def _choose(timings_ms: dict[str, float], key: str) -> CpuPlan:
    """The fastest form and thread count of each kind (two threads only where they save ``THREAD_GAIN``).

    The threads are BLAS's for the dense form and the kernel's own for the kernel.
    """

    def threaded(form: str, kinds: tuple[str, ...]) -> tuple[float, int]:
        times = {t: sum(timings_ms.get(f"{k}_{form}_{t}t", float("inf")) for k in kinds) for t in (1, 2)}
        threads = 2 if times[2] < (1 - THREAD_GAIN) * times[1] else 1
        return times[threads], threads

    def best(kinds: tuple[str, ...], kernel_share: float) -> tuple[str, int]:
        dense, kernel = threaded("dense", kinds), threaded("kernel", kinds)
        quantized = sum(timings_ms[f"{k}_quantized"] for k in kinds)
        if kernel[0] < kernel_share * min(dense[0], quantized):
            return "kernel", kernel[1]
        return ("dense", dense[1]) if dense[0] < quantized else ("quantized", 1)

    decode, decode_threads = best(("decode", "verify"), KERNEL_SHARE)
    prefill, prefill_threads = best(("prefill",), 1.0)
    kernel = kernel_status()
    note = kernel.detail if kernel.available else f"unavailable: {kernel.detail}"
    return CpuPlan(decode, prefill, decode_threads, prefill_threads, key, dict(timings_ms), kernel=note)


def _time(run) -> float:
    mx.eval(run())  # the first pass allocates
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        mx.eval(run())
        best = min(best, time.perf_counter() - start)
    return best


def _quantized_matmul(probe: _Probe, x: mx.array) -> mx.array:
    return mx.quantized_matmul(
        x,
        probe.weight,
        probe.scales,
        probe.biases,
        transpose=True,
        group_size=probe.group_size,
        bits=probe.bits,
        mode=probe.mode,
    )


def _dequantized(probe: _Probe) -> mx.array:
    dense = mx.dequantize(
        probe.weight, probe.scales, probe.biases, group_size=probe.group_size, bits=probe.bits, mode=probe.mode
    ).astype(mx.float32)
    mx.eval(dense)
    return dense


def _largest_linear(modules: list[nn.Module]) -> _Probe | None:
    layers = [m for module in modules for m in quantized_layers(module) if isinstance(m, nn.QuantizedLinear)]
    if not layers:
        return None
    layer = max(layers, key=lambda m: m.weight.size)
    return _Probe(
        layer.weight,
        layer.scales,
        getattr(layer, "biases", None),
        layer.bits,
        layer.group_size,
        getattr(layer, "mode", "affine"),
    )


def plan_key(probe: _Probe) -> str:
    """The machine, its BLAS, MLX's version and the probe's shape and quantization, as one short string."""
    rows, cols = probe.shape
    kernel = kernel_status()  # a rebuilt kernel is measured again
    parts = [
        platform.machine(),
        cpu_name(),
        str(os.cpu_count()),
        mx.__version__,
        blas_library() or "reference",
        f"{rows}x{cols}",
        f"{probe.bits}b{probe.group_size}g",
        str(probe.scales.dtype),
        kernel.detail if kernel.available else "no kernel",
    ]
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
        "kernel": asdict(kernel_status()),
    }


class DualLinear(nn.Module):
    """One layer in two forms: passes of at most ``short_tokens`` tokens run through ``short``, longer ones ``long``.

    Each form is the quantized layer itself, its float32 copy or the kernel's product over the
    quantized layer's own arrays.
    """

    def __init__(self, short: nn.Module, long: nn.Module, short_tokens: int):
        super().__init__()
        self.short, self.long = short, long
        self.short_tokens = short_tokens

    def __call__(self, x: mx.array) -> mx.array:
        return self.short(x) if x.size // x.shape[-1] <= self.short_tokens else self.long(x)


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
        return mx.dequantize(
            layer.weight[start:stop],
            layer.scales[start:stop],
            None if biases is None else biases[start:stop],
            group_size=layer.group_size,
            bits=layer.bits,
            mode=getattr(layer, "mode", "affine"),
        )

    if rows <= _ROWS_AT_ONCE:
        return part(0, rows)
    first = part(0, _ROWS_AT_ONCE)
    weight = mx.zeros((rows, first.shape[1]), dtype=first.dtype)
    for start in range(0, rows, _ROWS_AT_ONCE):
        weight[start : start + _ROWS_AT_ONCE] = first if start == 0 else part(start, start + _ROWS_AT_ONCE)
        mx.eval(weight)  # in place: the buffer has no other reader
    return weight


def short_pass_form(layer: nn.Module) -> nn.Module:
    """The layer a short pass (decoding, drafting) runs through: a ``DualLinear``'s chosen form, else ``layer``.

    A kernel-served embedding gives its quantized layer (whose arrays a reduced draft vocabulary slices).
    """
    if isinstance(layer, DualLinear):
        return layer.short
    if isinstance(layer, KernelEmbedding):
        return layer.layer
    return layer


def short_passes_on_host(module: nn.Module) -> bool:
    """Whether some layer that ``module``'s short passes run through multiplies on the host (the kernel).

    A ``DualLinear`` whose long form only is the kernel's (prefill on the kernel, decoding on float32
    copies or MLX's kernels) leaves short passes free to run as compiled graphs.
    """
    if host_product(module):
        return True
    if isinstance(module, DualLinear):
        return short_passes_on_host(module.short)
    children = tree_flatten(module.children(), is_leaf=lambda m: isinstance(m, nn.Module))
    return any(short_passes_on_host(child) for _, child in children if isinstance(child, nn.Module))


def apply_plan(module: nn.Module, plan: CpuPlan, short_tokens: int) -> None:
    """Give ``module``'s quantized layers the forms ``plan`` asks for, in place, one layer at a time.

    A layer whose two kinds of pass use one form becomes that form; otherwise a ``DualLinear``.
    An embedding is only ever short as a tied output layer (prefill keeps the last token's
    logits): dense when decoding is, served by the kernel when decoding is, else as it is.
    A layer the kernel does not take keeps MLX's kernel for short passes. Each layer is
    replaced and evaluated before the next, which bounds the memory peak to the copies made so
    far plus one.
    """
    if plan.decode == plan.prefill == "quantized":
        return
    pending = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))]
    while pending:  # popped, so that a replaced layer's packed weights are freed at once
        name, layer = pending.pop()
        replacement = _replacement(layer, plan, short_tokens)
        if replacement is not None:
            mx.eval(replacement.parameters())
            module.update_modules(tree_unflatten([(name, replacement)]))
        del layer
    _host_mlps(module, short_tokens)
    mx.clear_cache()


def _host_mlps(module: nn.Module, short_tokens: int) -> None:
    """mlx-lm Qwen3.5 MLPs whose three layers the kernel serves in short passes, run on the host as one."""
    from mlx_lm.models.qwen3_5 import MLP

    for name, mlp in [(n, m) for n, m in module.named_modules() if isinstance(m, MLP)]:
        forms = [short_pass_form(getattr(mlp, p)) for p in ("gate_proj", "up_proj", "down_proj")]
        if all(isinstance(f, KernelLinear) and "bias" not in f.layer for f in forms):
            gate, up, down = forms
            module.update_modules(tree_unflatten([(name, KernelMLP(mlp, gate, up, down, short_tokens))]))


def _replacement(layer: nn.Module, plan: CpuPlan, short_tokens: int) -> nn.Module | None:
    """``layer`` in the forms ``plan`` asks for, or None where it stays as it is."""
    if isinstance(layer, nn.QuantizedEmbedding):
        if plan.decode == "kernel" and supports_here(layer):
            return KernelEmbedding(layer, short_tokens, _kernel_threads(plan))
        return dense_embedding(layer) if plan.decode == "dense" else None
    dense = dense_linear(layer) if plan.dense else None
    wanted = "kernel" in (plan.decode, plan.prefill) and supports_here(layer)
    product = KernelLinear(layer, _kernel_threads(plan)) if wanted else None
    forms = {"dense": dense, "kernel": product, "quantized": layer}
    short, long = (forms[plan.decode] or layer), (forms[plan.prefill] or layer)
    if short is long:
        return None if short is layer else short
    return DualLinear(short, long, short_tokens)


def _kernel_threads(plan: CpuPlan) -> int:
    """The kernel's threads: decoding's when it decodes, else prefill's."""
    return plan.decode_threads if plan.decode == "kernel" else plan.prefill_threads
