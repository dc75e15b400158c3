"""Sandbox.run_command: /bin/sh -c in the workspace, inside the OS layer; bad commands get their
error_kind, leave no process behind, and the next command still runs."""

import os
import shutil
import sys
import tempfile
import time

import pytest

from sandbox import Policy, Sandbox, confinement
from sandbox.oslayer import is_confined

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not is_confined(confinement()),
    reason="no OS layer on this machine (see optiq doctor); commands are refused there",
)

TIMEOUT = 1.0


def _workspace() -> str:
    folder = tempfile.mkdtemp(prefix="optiq-test-ws-")
    if os.geteuid() == 0:  # commands run as nobody then; the workspace must be theirs
        os.chown(folder, 65534, 65534)
    return folder


@pytest.fixture(scope="module")
def workspace():
    folder = _workspace()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def box(workspace):
    with Sandbox(Policy(output_chars=2000, memory_bytes=256 << 20), workspace=workspace) as sandbox:
        yield sandbox


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def test_runs_in_the_workspace_with_a_scrubbed_environment(box, workspace):
    os.environ["OPTIQ_TEST_LEAK"] = "leak"
    try:
        result = box.run_command("pwd; env | sort; echo out; echo err >&2; exit 3")
    finally:
        del os.environ["OPTIQ_TEST_LEAK"]
    assert result.exit_code == 3 and result.error_kind is None and not result.ok
    lines = result.stdout.splitlines()
    assert lines[0] == workspace and "out" in lines and result.stderr == "err\n"
    names = {line.split("=")[0] for line in lines[1:-1]}
    assert names <= {"HOME", "LANG", "PATH", "PWD", "TMPDIR", "SHLVL", "_", "OLDPWD"}, names
    assert f"HOME={workspace}" in lines


def test_writes_land_in_the_workspace_only(box, workspace):
    outside = tempfile.mkdtemp(prefix="optiq-outside-")
    os.chmod(outside, 0o777)
    result = box.run_command(f"echo hi > made.txt && cat made.txt; echo x > {outside}/escaped")
    assert result.stdout == "hi\n" and "Permission denied" in result.stderr
    assert open(os.path.join(workspace, "made.txt")).read() == "hi\n"
    assert not os.path.exists(os.path.join(outside, "escaped"))
    os.rmdir(outside)


def test_true_is_ok(box):
    result = box.run_command("true")
    assert result.ok and result.exit_code == 0 and result.duration_s > 0


def test_host_and_network_are_out_of_reach(box):
    home = os.path.expanduser("~")
    result = box.run_command(f"ls {home}; cat /etc/hostname; cat /proc/{os.getpid()}/environ")
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.count("Permission denied") == 3, result.stderr


BAD = [
    ("timeout", "sleep 10", "timeout"),
    ("busy_loop", "while :; do :; done", "timeout"),
    ("flood", "yes", "output_limit"),
    ("flood_stderr", "yes >&2", "output_limit"),
    ("memory", "python3 -c 'x = bytearray(10 ** 10)'", "memory"),
]


@pytest.mark.parametrize("name,command,kind", BAD, ids=[b[0] for b in BAD])
def test_bad_command_is_contained(box, name, command, kind):
    start = time.monotonic()
    result = box.run_command(command + " & echo $!; wait $!", timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + 1.5
    assert result.error_kind == kind, result
    assert result.error
    if kind != "memory":
        assert result.exit_code is None
    pid = result.stdout.split("\n", 1)[0]
    if pid.isdigit():
        assert _gone(int(pid))
    after = box.run_command("echo still here")
    assert after.ok and after.stdout == "still here\n"


@pytest.mark.parametrize(
    "command", ["sleep 30 & echo $!", "sh -c 'sleep 30 & echo $!'", "nohup sleep 30 >/dev/null 2>&1 & echo $!"]
)
def test_no_process_outlives_the_command(box, command):
    result = box.run_command(command)
    pids = [int(p) for p in result.stdout.split()]
    assert pids, result
    assert all(_gone(pid) for pid in pids)


def test_a_command_cannot_leave_its_process_group(box):
    result = box.run_command("setsid sleep 30; echo status $?")
    assert "status 1" in result.stdout and result.duration_s < 5


def test_output_keeps_the_first_part(box):
    result = box.run_command("seq 100000")
    assert result.error_kind == "output_limit"
    assert result.stdout.startswith("1\n2\n3\n") and len(result.stdout) <= 2000


def test_bad_arguments_are_refused(box):
    with pytest.raises(ValueError):
        box.run_command("  ")
    with pytest.raises(ValueError):
        box.run_command("true", timeout=0)


def test_scratch_is_private_and_emptied(box):
    first = box.run_command('echo x > "$TMPDIR/left"; ls "$TMPDIR"')
    assert first.stdout == "left\n"
    assert box.run_command('ls -A "$TMPDIR"').stdout == ""


def test_read_only_commands_cannot_write_the_workspace(box, workspace):
    result = box.run_command('ls; echo x > ro.txt; echo y > "$TMPDIR/t" && cat "$TMPDIR/t"', read_only=True)
    assert "Permission denied" in result.stderr and result.stdout.endswith("y\n")
    assert not os.path.exists(os.path.join(workspace, "ro.txt"))
    assert box.run_command("echo x > rw.txt").ok
