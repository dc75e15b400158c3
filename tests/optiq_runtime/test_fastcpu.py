"""OpenBLAS preloading: when it applies, and that a re-executed process really has it."""

import os
import subprocess
import sys

import pytest

from optiq_runtime import fastcpu


def test_preload_env_adds_the_library_once():
    library = fastcpu.find_openblas()
    if library is None or not sys.platform.startswith("linux"):
        pytest.skip("no OpenBLAS installed here")
    env = fastcpu.preload_env({"PATH": "/usr/bin"})
    assert env is not None and env["LD_PRELOAD"].startswith(str(library))
    assert fastcpu.preload_env(env) is None  # already preloaded: no second re-exec


def test_disable_variable_turns_it_off():
    assert fastcpu.preload_env({fastcpu.DISABLE_VAR: "1"}) is None


def test_reexec_gives_the_new_process_openblas(tmp_path):
    if fastcpu.find_openblas() is None:
        pytest.skip("no OpenBLAS installed here")
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        "from optiq_runtime.fastcpu import reexec_with_openblas\n"
        "reexec_with_openblas(sys.argv)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('openblas' in maps)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPTIQ_OPENBLAS_PRELOADED")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr


def test_blas_threads_are_set_on_the_preloaded_library():
    import subprocess
    import sys

    from optiq_runtime.fastcpu import openblas_active, set_blas_threads

    if openblas_active():
        assert set_blas_threads(1) is True
        set_blas_threads(2)
    code = "from optiq_runtime.fastcpu import set_blas_threads; print(set_blas_threads(1))"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # nothing preloaded: nothing to tell


def test_the_pip_wheel_serves_a_machine_without_system_openblas_or_fortran(tmp_path, monkeypatch):
    """What a fresh Linux machine gets from `pip install`: the cmeel-openblas wheel, with MLX's own Fortran runtime."""
    if fastcpu.wheel_openblas() is None or not sys.platform.startswith("linux"):
        pytest.skip("the cmeel-openblas wheel is not installed here")
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path))
    monkeypatch.setattr(fastcpu, "_CANDIDATES", ())  # as if Debian's OpenBLAS were absent
    monkeypatch.setattr(fastcpu, "_system_has", lambda soname: False)  # and libgfortran5 too
    base = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPTIQ_OPENBLAS_PRELOADED")}
    env = fastcpu.preload_env(base)
    assert env is not None and env["LD_PRELOAD"] == str(fastcpu.wheel_openblas())
    code = (
        "import mlx.core as mx; a = mx.ones((64, 64)); mx.eval(a @ a)\n"
        "print(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'gfortran' in l or 'openblas' in l}))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    loaded = out.stdout
    assert "cmeel.prefix/lib/libopenblas" in loaded and "mlx_cpu.libs/libgfortran" in loaded, out.stderr


def test_advice_is_one_line_said_once_where_no_openblas_is_found(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(fastcpu.DISABLE_VAR, raising=False)
    monkeypatch.setattr(fastcpu, "find_openblas", lambda: None)
    if not sys.platform.startswith("linux"):
        assert fastcpu.blas_advice() is None
        return
    advice = fastcpu.blas_advice()
    assert advice and "\n" not in advice and "libopenblas0-pthread" in advice and "slower" in advice
    assert fastcpu.advise_once() and not fastcpu.advise_once()
    assert capsys.readouterr().err == advice + "\n"


def test_the_wheels_openblas_starts_on_one_thread():
    """Its default (every core) makes small matmuls slower; engines raise it where their plan measures a gain."""
    wheel = fastcpu.wheel_openblas()
    if wheel is None or not sys.platform.startswith("linux"):
        pytest.skip("the cmeel-openblas wheel is not installed here")
    code = (
        "import ctypes, os; from optiq_runtime.fastcpu import reexec_with_openblas; reexec_with_openblas(['-c', ''])\n"
        "print(ctypes.CDLL(os.environ['LD_PRELOAD'].split(':')[0]).openblas_get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPENBLAS_NUM_THREADS")}
    env.update(LD_PRELOAD=str(wheel), OPTIQ_OPENBLAS_PRELOADED="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stderr
