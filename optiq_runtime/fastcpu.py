"""Fast CPU math on Linux: preload OpenBLAS under MLX's reference BLAS.

MLX's Linux CPU wheel links a reference BLAS (about 5 GFLOP/s for a 1024^2 fp32
matmul on two cores); Debian's ``libopenblas0-pthread`` is ~60x faster, and the
``cmeel-openblas`` wheel that ``pip install`` brings on x86-64 Linux ~30x (its
symbols are unprefixed, so it can stand in for MLX's; ``scipy-openblas32``'s and
numpy's are prefixed and cannot). The dynamic loader only honours ``LD_PRELOAD``
at process start, so we re-execute the current command once with the library
preloaded. ``OPTIQ_NO_OPENBLAS=1`` turns this off; nothing happens on macOS or
when no OpenBLAS is found.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
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


# Where the cmeel-openblas wheel puts its library, relative to site-packages.
_WHEEL_LIBRARY = "cmeel.prefix/lib/libopenblas.so.0"
# The Fortran runtime that library needs; MLX's wheel bundles one under another name.
_FORTRAN_RUNTIME = "libgfortran.so.5"
ADVICE = "optiq: MLX is on its reference BLAS here, about {speedup} slower on the CPU; for the fast path: {command}"


def find_openblas() -> Path | None:
    """The first OpenBLAS shared library found (the system's, then the pip wheel's), or None."""
    for path in (*map(Path, _CANDIDATES), wheel_openblas()):
        if path is not None and path.exists():
            return path
    return None


def wheel_openblas() -> Path | None:
    """The cmeel-openblas wheel's library when it is installed."""
    path = Path(sysconfig.get_paths()["purelib"]) / _WHEEL_LIBRARY
    return path if path.exists() else None


def fortran_shim(library: Path) -> str | None:
    """A folder to put on ``LD_LIBRARY_PATH`` so that ``library`` finds a Fortran runtime, or None when not needed.

    The wheel's OpenBLAS needs ``libgfortran.so.5``; a machine without Debian's ``libgfortran5``
    lacks it, but MLX's own wheel ships one (renamed): a link under the standard name serves it.
    """
    if library != wheel_openblas() or _system_has(_FORTRAN_RUNTIME):
        return None
    libs = Path(sysconfig.get_paths()["purelib"]) / "mlx_cpu.libs"
    bundled = sorted(libs.glob("libgfortran*.so*"))
    if not bundled:
        return None
    from optiq_runtime.home import cache_home

    folder = cache_home() / "fortran"
    # Its own dependencies (libquadmath) are found beside the link, under their bundled names.
    links = {_FORTRAN_RUNTIME: bundled[0], **{f.name: f for f in libs.iterdir()}}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, target in links.items():
            _link(folder / name, target)
    except OSError:
        return None  # a read-only cache folder: no preload rather than a failing one
    return str(folder)


def _link(link: Path, target: Path) -> None:
    try:
        link.symlink_to(target)
    except FileExistsError:
        pass  # made by an earlier run, or by another optiq process just now


def _system_has(soname: str) -> bool:
    return any(
        (Path(d) / soname).exists()
        for d in (
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/lib/x86_64-linux-gnu",
        )
    )


def blas_library() -> str | None:
    """The OpenBLAS this process runs on (preloaded), or None for MLX's reference BLAS."""
    preloaded = [p for p in os.environ.get("LD_PRELOAD", "").split(":") if "openblas" in p]
    return preloaded[0] if preloaded else None


def blas_advice() -> str | None:
    """One line saying what to install for fast CPU math, or None when there is nothing to say."""
    if not sys.platform.startswith("linux") or blas_library() or find_openblas() or os.environ.get(DISABLE_VAR):
        return None
    return ADVICE.format(
        speedup="30-60x", command="apt-get install libopenblas0-pthread (or pip install cmeel-openblas on x86-64)"
    )


def openblas_active() -> bool:
    """Whether this process was started with OpenBLAS preloaded."""
    return "openblas" in os.environ.get("LD_PRELOAD", "")


def advise_once(stream=None) -> bool:
    """Print ``blas_advice()`` to ``stream`` (stderr) the first time on this machine; whether it printed.

    A marker in the cache folder remembers it was said; the build screen shows it every time.
    """
    advice = blas_advice()
    if advice is None:
        return False
    from optiq_runtime.home import cache_home

    marker = cache_home() / "blas-advice-shown"
    if marker.exists():
        return False
    print(advice, file=stream or sys.stderr)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(advice + "\n")
    except OSError:
        pass  # a read-only cache folder: the advice comes again next time, which is harmless
    return True


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
    if shim := fortran_shim(library):
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (shim, env.get("LD_LIBRARY_PATH", "")) if p)
    env[_MARKER_VAR] = "1"
    return env


def reexec_with_openblas(argv: list[str]) -> None:
    """Replace this process with ``python argv...`` with OpenBLAS preloaded.

    Returns without doing anything when preloading does not apply (already
    preloaded, disabled, not Linux, no library).
    """
    env = preload_env()
    if env is None:
        _one_thread_on_the_wheel()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)


def _one_thread_on_the_wheel() -> None:
    """Start the wheel's OpenBLAS on one thread (engines raise it where their CPU plan measured a gain).

    It splits even the quantizer's small matmuls over every core: the thread hand-offs made
    tiny-agent's first build 4x slower than on one thread (131 s vs 33 s on a busy 2-core
    machine; Debian's OpenBLAS: 26 s). Set here, not by ``OPENBLAS_NUM_THREADS``, which numpy's
    own OpenBLAS reads too.
    """
    wheel = wheel_openblas()
    if wheel is not None and blas_library() == str(wheel):
        set_blas_threads(1)


def set_blas_threads(count: int) -> bool:
    """Tell the preloaded OpenBLAS to use ``count`` threads; False when there is none to tell.

    Decoding multiplies a few rows at a time: split over threads, each product pays a thread
    hand-off that costs more than the arithmetic (measured here: verifying 3 tokens took 3.7
    plain steps with two threads beside a busy core, 1.6 with one).
    """
    setter = _thread_setter(blas_library())
    if setter is None:
        return False
    setter(int(count))
    return True


@functools.cache
def _thread_setter(preloaded: str | None):
    if preloaded is None:
        return None
    import ctypes

    try:
        library = ctypes.CDLL(preloaded)  # the loaded library: dlopen hands back the same one
    except OSError:
        return None
    return getattr(library, "openblas_set_num_threads", None)
