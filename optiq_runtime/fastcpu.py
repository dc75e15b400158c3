"""Fast CPU math on Linux: preload OpenBLAS under MLX's reference BLAS.

MLX's Linux CPU wheel links a reference BLAS (about 5 GFLOP/s for a 1024^2 fp32
matmul on two cores); Debian's ``libopenblas0-pthread`` is ~60x faster. The
dynamic loader only honours ``LD_PRELOAD`` at process start, so we re-execute
the current command once with the library preloaded. ``OPTIQ_NO_OPENBLAS=1``
turns this off; nothing happens on macOS or when no OpenBLAS is installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DISABLE_VAR = "OPTIQ_NO_OPENBLAS"
_MARKER_VAR = "OPTIQ_OPENBLAS_PRELOADED"
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
)


def find_openblas() -> Path | None:
    """The first installed OpenBLAS shared library, or None."""
    for candidate in _CANDIDATES:
        path = Path(candidate)
        if path.exists():
            return path
    return None


def openblas_active() -> bool:
    """Whether this process was started with OpenBLAS preloaded."""
    return "openblas" in os.environ.get("LD_PRELOAD", "")


def preload_env(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """A copy of ``env`` with OpenBLAS preloaded, or None when not applicable."""
    env = dict(os.environ if env is None else env)
    if not sys.platform.startswith("linux") or env.get(DISABLE_VAR):
        return None
    if "openblas" in env.get("LD_PRELOAD", "") or env.get(_MARKER_VAR):
        return None
    library = find_openblas()
    if library is None:
        return None
    env["LD_PRELOAD"] = ":".join(p for p in (str(library), env.get("LD_PRELOAD", "")) if p)
    env[_MARKER_VAR] = "1"
    return env


def reexec_with_openblas(argv: list[str]) -> None:
    """Replace this process with ``python argv...`` with OpenBLAS preloaded.

    Returns without doing anything when preloading does not apply (already
    preloaded, disabled, not Linux, no library).
    """
    env = preload_env()
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)


def set_blas_threads(count: int) -> bool:
    """Tell the preloaded OpenBLAS to use ``count`` threads; False when there is none to tell.

    Decoding multiplies a few rows at a time: split over threads, each product pays a thread
    hand-off that costs more than the arithmetic (measured here: verifying 3 tokens took 3.7
    plain steps with two threads beside a busy core, 1.6 with one).
    """
    preloaded = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if "openblas" in p]
    if not preloaded:
        return False
    import ctypes

    try:
        library = ctypes.CDLL(preloaded[0])  # the loaded library: dlopen hands back the same one
    except OSError:
        return False
    setter = getattr(library, "openblas_set_num_threads", None)
    if setter is None:
        return False
    setter(int(count))
    return True
