"""The project's quantized matmul for passes of a few tokens on the CPU backend (``qmatmul.c``).

MLX's CPU matrix-vector products read quantized weights at a small fraction of this machine's
memory bandwidth, and decoding is nothing but matrix-vector products. ``qmatmul.c`` reads MLX's
own packed arrays in place (numpy views of them: no second copy of the weights), with its own
thread pool, so decoding runs nearer the read limit. It is compiled on first use with the system
C compiler into ``$OPTIQ_HOME/kernels/`` under a name keyed by its source, the compiler and this
CPU's flags, and loaded with ctypes; with no compiler, or a library that will not load or computes wrong
values, layers keep MLX's kernels and ``status()`` says why. ``OPTIQ_NO_KERNEL=1`` turns it off.

Calling it is a host round trip: the input is evaluated, multiplied here, and the product goes
back into MLX as a new array, so a pass through it cannot be part of an ``mx.compile``d graph.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from optiq_runtime.home import cache_home

log = logging.getLogger("optiq")

DISABLE_VAR = "OPTIQ_NO_KERNEL"
SOURCE = Path(__file__).with_name("qmatmul.c")
BITS = (2, 3, 4, 5, 6, 8)
GROUP_SIZES = (32, 64, 128)
THREADS = min(os.cpu_count() or 1, 8)
_FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-pthread")


@dataclass(frozen=True)
class KernelStatus:
    """Whether the kernel is in use in this process, and why not when it is not."""

    available: bool
    detail: str


@dataclass
class _Library:
    handle: ctypes.CDLL
    path: Path


def compiler() -> str | None:
    """The C compiler to use: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH; None when none exists."""
    if explicit := os.environ.get("CC"):
        return shutil.which(explicit)
    return next((found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)


def library_key(cc: str) -> str:
    """The source, the compiler (its version) and this CPU's flags, as one short string."""
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    parts = [SOURCE.read_text(), cc, version, " ".join(_FLAGS), _cpu_flags()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.machine()


def _loaded() -> _Library | str:
    """The library, built when needed and checked against MLX; or why it cannot be used."""
    if os.environ.get(DISABLE_VAR):
        return f"turned off by {DISABLE_VAR}"
    return _built(compiler(), cache_home())


@functools.cache
def _built(cc: str | None, home: Path) -> _Library | str:
    """``_loaded`` once per compiler and cache folder."""
    if mx.default_device().type != mx.DeviceType.cpu:
        return "not the CPU backend"
    if cc is None:
        return f"no C compiler ({os.environ.get('CC') or 'cc, gcc, clang'} not found)"
    path = home / "kernels" / f"qmatmul-{library_key(cc)}.so"
    if path.exists():
        library = _open(path)
        if library is not None:
            return _checked(library)
        log.warning("optiq: the cached kernel %s did not load; rebuilding it", path)
    error = _build(cc, path)
    if error:
        return error
    library = _open(path)
    return _checked(library) if library is not None else f"the kernel built at {path} does not load"


def _build(cc: str, path: Path) -> str | None:
    """Compile the source into ``path`` (written beside it, then renamed); an error line, or None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    command = [cc, *_FLAGS, str(SOURCE), "-o", str(partial)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the kernel did not compile ({cc}: {exc})"
    if done.returncode == 0:
        partial.replace(path)
        return None
    partial.unlink(missing_ok=True)
    return f"the kernel did not compile ({cc}: {(done.stderr.strip().splitlines() or ['no output'])[-1]})"


def _open(path: Path) -> _Library | None:
    try:
        handle = ctypes.CDLL(str(path))
        function = handle.optiq_qmm
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    return _Library(handle, path)


def _checked(library: _Library) -> _Library | str:
    """The library when it matches ``mx.quantized_matmul`` on a small case of every width, else why not."""
    rng = np.random.default_rng(0)
    x = mx.array(rng.standard_normal((3, 128), dtype=np.float32))
    for bits in BITS:
        weight, scales, biases = mx.quantize(mx.array(rng.standard_normal((40, 128), dtype=np.float32)), 64, bits)
        expected = mx.quantized_matmul(x, weight, scales, biases, transpose=True, group_size=64, bits=bits)
        got = _multiply(library, np.asarray(x), _Weights.of(weight, scales, biases, 64, bits), THREADS)
        if not np.allclose(got, np.asarray(expected), rtol=1e-3, atol=1e-3):
            return f"the kernel at {library.path} disagrees with MLX at {bits} bits"
    return library


def status() -> KernelStatus:
    """Whether the kernel is usable here (building it on first call), and what it is or why not."""
    library = _loaded()
    if isinstance(library, str):
        return KernelStatus(False, library)
    vector = "AVX2/FMA" if library.handle.optiq_qmm_vectorized() else "scalar"
    return KernelStatus(True, f"{vector}, up to {THREADS} thread(s), {library.path.name}")


def supports(layer: nn.Module) -> bool:
    """Whether ``layer`` (a quantized linear or embedding) is one the kernel multiplies."""
    return (
        getattr(layer, "mode", "affine") == "affine"
        and getattr(layer, "bits", None) in BITS
        and getattr(layer, "group_size", None) in GROUP_SIZES
    )


def supports_here(layer: nn.Module) -> bool:
    """Whether the kernel is usable in this process and takes ``layer``."""
    return supports(layer) and status().available


@dataclass(frozen=True)
class _Weights:
    """Numpy views of a quantized layer's packed weight, scales and biases (float32)."""

    weight: np.ndarray
    scales: np.ndarray
    biases: np.ndarray | None
    group_size: int
    bits: int

    @classmethod
    def of(cls, weight: mx.array, scales: mx.array, biases: mx.array | None, group_size: int, bits: int) -> _Weights:
        arrays = [a if a.dtype == mx.float32 else a.astype(mx.float32) for a in (scales, biases) if a is not None]
        mx.eval(weight, *arrays)
        views = [_view(a) for a in (weight, *arrays)]
        return cls(views[0], views[1], views[2] if biases is not None else None, group_size, bits)

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape[0], self.weight.shape[1] * 32 // self.bits


def _view(array: mx.array) -> np.ndarray:
    """A numpy array over ``array``'s own buffer (row-contiguous arrays only: the weights as loaded)."""
    view = np.asarray(array)
    if not view.flags.c_contiguous:
        raise ValueError("the kernel needs row-contiguous weights")
    return view


def _multiply(library: _Library, x: np.ndarray, weights: _Weights, threads: int) -> np.ndarray:
    rows, cols = weights.shape
    x = np.ascontiguousarray(x.reshape(-1, cols), dtype=np.float32)
    out = np.empty((x.shape[0], rows), dtype=np.float32)
    biases = weights.biases.ctypes.data if weights.biases is not None else None
    code = library.handle.optiq_qmm(
        x.ctypes.data,
        x.shape[0],
        cols,
        weights.weight.ctypes.data,
        weights.scales.ctypes.data,
        biases,
        rows,
        weights.bits,
        weights.group_size,
        out.ctypes.data,
        threads,
    )
    if code:
        raise ValueError(f"the kernel refused a {rows}x{cols} {weights.bits}-bit product (code {code})")
    return out


class KernelLinear(nn.Module):
    """A quantized linear layer's product through the kernel, over the layer's own arrays (no copy)."""

    def __init__(self, layer: nn.Module, threads: int = 1):
        super().__init__()
        library = _loaded()
        if isinstance(library, str):
            raise RuntimeError(library)
        self._library, self._threads = library, threads
        self.layer = layer
        self._weights = _Weights.of(
            layer.weight, layer.scales, getattr(layer, "biases", None), layer.group_size, layer.bits
        )

    def rows(self, ids: mx.array) -> KernelLinear:
        """The product over the output rows ``ids`` only (a reduced output layer), on the same threads; no bias."""
        layer, biases = self.layer, getattr(self.layer, "biases", None)
        subset = _Rows(layer.weight[ids], layer.scales[ids], None if biases is None else biases[ids])
        return KernelLinear(subset.quantized_as(layer), self._threads)

    def host(self, x: np.ndarray) -> np.ndarray:
        """The product of a host array (float32) without the layer's bias: ``[tokens, out]``."""
        return _multiply(self._library, x, self._weights, self._threads)

    def __call__(self, x: mx.array) -> mx.array:
        x = x if x.dtype == mx.float32 else x.astype(mx.float32)
        mx.eval(x)
        out = mx.array(self.host(np.asarray(x)))
        out = out.reshape(*x.shape[:-1], out.shape[-1])
        bias = getattr(self.layer, "bias", None) if isinstance(self.layer, nn.Module) and "bias" in self.layer else None
        return out if bias is None else out + bias


@dataclass(frozen=True)
class _Rows:
    """Some output rows of a quantized layer: its packed weight, scales and biases, and (once set) its format."""

    weight: mx.array
    scales: mx.array
    biases: mx.array | None
    group_size: int = 0
    bits: int = 0

    def quantized_as(self, layer) -> _Rows:
        return _Rows(self.weight, self.scales, self.biases, layer.group_size, layer.bits)


def kernel_rows(module: nn.Module, ids: mx.array) -> KernelLinear | None:
    """A kernel product over the output rows ``ids`` of a layer whose short passes the kernel serves, else None."""
    product = module._product if isinstance(module, KernelEmbedding) else module
    return product.rows(ids) if isinstance(product, KernelLinear) else None


def shared_products(products: list[KernelLinear], x: mx.array) -> list[mx.array]:
    """Several bias-free kernel products of one input, with one host round trip: ``[*x.shape[:-1], out]`` each."""
    x = x if x.dtype == mx.float32 else x.astype(mx.float32)
    mx.eval(x)
    host = np.asarray(x)
    return [mx.array(p.host(host)).reshape(*x.shape[:-1], -1) for p in products]


def host_product(module: nn.Module) -> bool:
    """Whether ``module`` multiplies through the kernel (a host round trip, never inside a compiled graph)."""
    return isinstance(module, (KernelLinear, KernelEmbedding))


class KernelEmbedding(nn.Module):
    """A quantized embedding whose ``as_linear`` (a tied output layer) goes through the kernel for short passes."""

    def __init__(self, layer: nn.QuantizedEmbedding, short_tokens: int, threads: int = 1):
        super().__init__()
        self.layer = layer
        self.short_tokens = short_tokens
        self._product = KernelLinear(layer, threads)

    def __call__(self, ids: mx.array) -> mx.array:
        return self.layer(ids)

    def as_linear(self, x: mx.array) -> mx.array:
        if x.size // x.shape[-1] <= self.short_tokens:
            return self._product(x)
        return self.layer.as_linear(x)


@dataclass(frozen=True)
class _Products:
    gate: KernelLinear
    up: KernelLinear
    down: KernelLinear


class KernelMLP(nn.Module):
    """mlx-lm's Qwen3.5 MLP (``down(silu(gate(x)) * up(x))``) on the host for short passes: one round trip, not two.

    ``gate``, ``up``, ``down``: the kernel products of the MLP's layers; longer passes run ``mlp`` as it is.
    """

    def __init__(self, mlp: nn.Module, gate: KernelLinear, up: KernelLinear, down: KernelLinear, short_tokens: int):
        super().__init__()
        self.mlp = mlp
        self.short_tokens = short_tokens
        self._products = _Products(gate, up, down)  # not a tuple: a Module would list their arrays as its own

    def __call__(self, x: mx.array) -> mx.array:
        if x.size // x.shape[-1] > self.short_tokens:
            return self.mlp(x)
        gate, up, down = self._products.gate, self._products.up, self._products.down
        x = x if x.dtype == mx.float32 else x.astype(mx.float32)
        mx.eval(x)
        host = np.asarray(x)
        g, u = gate.host(host), up.host(host)
        hidden = g / (1.0 + np.exp(-g)) * u  # silu(g) * u, as mlx-lm's swiglu
        out = down.host(hidden)
        return mx.array(out).reshape(*x.shape[:-1], out.shape[-1])
