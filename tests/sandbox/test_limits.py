"""Bad input: each gets its error_kind and a clear message within timeout + 1 s, and later
runs and the host process are unaffected."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sandbox import Policy, Sandbox

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(Policy(output_chars=1000, memory_bytes=256 << 20)) as box:
        yield box


BAD_INPUT = [
    ("syntax", "def f(:\n    pass", "syntax", "line 1"),
    ("syntax_line", "x = 1\ny = (", "syntax", "line 2"),
    ("nested_too_deep", "x = " + "(" * 300 + "1" + ")" * 300, "syntax", "SyntaxError"),
    ("return_outside_function", "return 1", "syntax", "SyntaxError"),
    ("infinite_loop", "while True:\n    pass", "timeout", "timed out"),
    ("c_level_loop", "x = 10 ** 10 ** 8", "timeout", "timed out"),
    ("memory_bomb", "x = 'a' * 10 ** 10", "memory", "memory limit"),
    ("growing_list", "x = []\nwhile True:\n    x.append(bytearray(10 ** 8))", "memory", "memory limit"),
    ("deep_recursion", "def f(n):\n    return f(n + 1)\nf(0)", "runtime", "RecursionError"),
    ("fork", "import os\nos.fork()", "policy", "'os'"),
    ("enormous_output", "while True:\n    print('x' * 100)", "output_limit", "limit"),
    ("output_caught", "try:\n    print('x' * 5000)\nexcept BaseException:\n    pass\n1", "output_limit", "limit"),
    ("system_exit", "raise SystemExit(0)", "runtime", "SystemExit"),
    ("keyboard_interrupt", "raise KeyboardInterrupt", "runtime", "KeyboardInterrupt"),
    ("generator_exit", "raise GeneratorExit('bye')", "runtime", "GeneratorExit: bye"),
    ("custom_base_exception", "class Out(BaseException):\n    pass\nraise Out('x')", "runtime", "Out: x (line 3)"),
    ("close_stdout", "import sys\nsys.stdout.close()", "policy", "'sys'"),
    ("runtime_line", "x = 1\n\ny = x / 0", "runtime", "ZeroDivisionError: division by zero (line 3)"),
]


@pytest.mark.parametrize("name,code,kind,message", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_contained(sandbox, name, code, kind, message):
    start = time.monotonic()
    result = sandbox.run(code, timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + 1.0
    assert not result.ok
    assert result.error_kind == kind, result
    assert message in result.error
    after = sandbox.run("print(1 + 1)")
    assert after.ok and after.stdout == "2\n"


def test_output_keeps_first_part(sandbox):
    result = sandbox.run("for i in range(10000):\n    print(i)")
    assert result.error_kind == "output_limit" and not result.ok
    assert result.stdout.startswith("0\n1\n2\n") and len(result.stdout) <= 1000


def test_non_utf8_output_is_escaped(sandbox):
    result = sandbox.run("print('a\\udcff b')\nbytes([255, 0]).decode('latin-1')")
    assert result.ok
    assert result.stdout == "a\\udcff b\n"
    result.stdout.encode("utf-8")


def test_print_inside_functions_is_collected(sandbox):
    result = sandbox.run("def f():\n    print('in f')\nf()\nprint('top')\n41 + 1")
    assert result.ok and result.stdout == "in f\ntop\n" and result.value == "42"


def test_runs_share_no_state(sandbox):
    assert sandbox.run("x = 5").ok
    result = sandbox.run("x")
    assert result.error_kind == "runtime" and "NameError" in result.error


def test_dead_fork_server_is_replaced(sandbox):
    sandbox._server.process.kill()
    sandbox._server.process.wait()
    assert sandbox.run("1 + 1").value == "2"


def test_stuck_fork_server_is_replaced_within_deadline(sandbox):
    os.kill(sandbox._server.process.pid, signal.SIGSTOP)
    start = time.monotonic()
    result = sandbox.run("1", timeout=0.5)
    assert time.monotonic() - start < 1.5
    assert result.error_kind == "timeout"
    assert sandbox.run("1 + 1").value == "2"


def test_default_memory_limit_is_about_a_gigabyte():
    assert Policy().memory_bytes == 1 << 30


def test_close_releases_the_worker(tmp_path):
    box = Sandbox()
    assert box.run("1").ok
    process, workdir = box._server.process, box._server.workdir
    box.close()
    assert process.poll() is not None
    assert not os.path.exists(workdir)


CONFINED = """
import os, sys
from sandbox.limits import confine
from sandbox.policy import Policy
r, w = os.pipe()
confine(Policy(), 2.0, w)
out = []
for name, attempt in [
    ("fork", lambda: os.fork()),
    ("write", lambda: open(sys.argv[1], "w")),
    ("read", lambda: open("/etc/shadow").read()),
]:
    try:
        attempt()
        out.append(name + ":allowed")
    except OSError:
        out.append(name + ":refused")
os.write(3, " ".join(out).encode())
"""


def test_process_layer_refuses_even_trusted_code(tmp_path):
    """Layer 2 alone: with the guards out of the way, the worker still cannot fork or write files."""
    os.chmod(tmp_path, 0o777)
    target = tmp_path / "written"
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", CONFINED.replace("os.pipe()", f"({read_end}, {write_end})"), str(target)],
        pass_fds=(write_end,),
        cwd=tmp_path,
    )
    os.close(write_end)
    proc.wait(timeout=20)
    report = os.read(read_end, 4096).decode()
    os.close(read_end)
    assert "fork:refused" in report
    assert "read:refused" in report or os.geteuid() != 0
    assert not (target.exists() and target.stat().st_size > 0)
