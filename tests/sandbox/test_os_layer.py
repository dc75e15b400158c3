"""The OS layer on its own: plain Python with every guard gone (the test-only unrestricted runner)
still cannot read the host, reach the network, write outside the workspace or leave a process."""

import os
import shutil
import socket
import sys
import tempfile
import time

import pytest

from sandbox import Policy, Sandbox, confinement, landlock, seatbelt, seccomp
from sandbox.netns import private_network_possible
from sandbox.oslayer import is_confined

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux OS layer")
# Where the kernel or a container withholds Landlock or namespaces, the tests of what they stop
# cannot run; test_every_available_layer_is_used still checks the report says so.
confined = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not is_confined(confinement()),
    reason="no OS layer on this machine (see optiq doctor)",
)

SECRET = "optiq-host-secret-4f2a"


@pytest.fixture(scope="module")
def host_folder():
    """A world-readable, world-writable folder outside any workspace, holding a secret file."""
    folder = tempfile.mkdtemp(prefix="optiq-host-")
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "secret.txt")
    with open(path, "w") as file:
        file.write(SECRET)
    os.chmod(path, 0o644)
    yield folder
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


@pytest.fixture(scope="module")
def raw():
    os.environ["OPTIQ_TEST_PARENT_SECRET"] = SECRET
    try:
        with Sandbox(unrestricted_for_tests=True) as box:
            yield box
    finally:
        del os.environ["OPTIQ_TEST_PARENT_SECRET"]


def attempt(box, body):
    """Run ``body`` (plain Python) in a confined worker; 'allowed: ...' or 'refused: ErrorName'."""
    code = f"try:\n    value = ({body})\n    print('allowed:', repr(value)[:200])\nexcept BaseException as e:\n    print('refused:', type(e).__name__, e)"
    result = box.run(code, timeout=5)
    assert result.ok, result
    return result.stdout


@linux
def test_every_available_layer_is_used(raw):
    layers = raw.confinement
    abi = landlock.abi_version()
    assert layers["filesystem"] == (f"landlock abi {abi}" if abi else "none")
    assert ("netns" in layers["network"]) == private_network_possible()
    assert layers["syscalls"] == ("seccomp" if seccomp.available() else "none")
    assert is_confined(layers) == (abi > 0 and layers["network"] != "none")
    assert confinement() == layers


@confined
def test_host_file_cannot_be_read(raw, host_folder):
    out = attempt(raw, f"open({os.path.join(host_folder, 'secret.txt')!r}).read()")
    assert out.startswith("refused: PermissionError") and SECRET not in out


@confined
def test_home_folder_cannot_be_listed(raw):
    home = os.path.expanduser("~")
    assert attempt(raw, f"__import__('os').listdir({home!r})").startswith("refused: PermissionError")


@confined
def test_parent_environment_is_not_inherited_or_readable(raw):
    env = attempt(raw, "dict(__import__('os').environ)")
    assert SECRET not in env and "OPTIQ_TEST_PARENT_SECRET" not in env
    out = attempt(raw, f"open('/proc/{os.getpid()}/environ').read()")
    assert out.startswith("refused:") and SECRET not in out


@confined
def test_writing_outside_the_workspace_fails(raw, host_folder):
    target = os.path.join(host_folder, "written")
    assert attempt(raw, f"open({target!r}, 'w')").startswith("refused: PermissionError")
    assert not os.path.exists(target)


@confined
def test_loopback_listener_cannot_be_reached(raw):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        out = attempt(raw, f"__import__('socket').socket().connect(('127.0.0.1', {port}))")
        assert out.startswith("refused:"), out
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()


@confined
def test_no_process_can_be_started_or_namespace_made(raw):
    assert attempt(raw, "__import__('os').fork()").startswith("refused:")
    assert attempt(raw, "__import__('subprocess').run(['/bin/true'])").startswith("refused:")
    out = attempt(raw, "__import__('ctypes').CDLL(None, use_errno=True).unshare(0x10000000)")
    assert out.startswith("allowed: -1")  # refused by seccomp: the call returns -1


@confined
def test_workspace_is_writable(tmp_path):
    workspace = _workspace()
    try:
        with Sandbox(workspace=workspace, unrestricted_for_tests=True) as box:
            out = attempt(box, f"open({os.path.join(workspace, 'made')!r}, 'w').close()")
        assert out.startswith("allowed:") and os.path.exists(os.path.join(workspace, "made"))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _workspace() -> str:
    folder = tempfile.mkdtemp(prefix="optiq-test-ws-")
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)
    return folder


def test_seccomp_program_is_well_formed():
    for arch in ("x86_64", "aarch64"):
        for python in (True, False):
            code = seccomp.program(python, arch)
            assert len(code) % 8 == 0 and len(code) // 8 < 256
    assert len(seccomp.program(True, "x86_64")) > len(seccomp.program(False, "x86_64"))


def test_seatbelt_profile_denies_by_default(tmp_path):
    text = seatbelt.profile(str(tmp_path / 'w"s'), str(tmp_path / "scratch"), python=["/opt/py"])
    lines = text.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    assert "(deny network*)" in lines
    write = next(line for line in lines if line.startswith("(allow file-write*"))
    assert '(subpath "/opt/py")' not in write and 'w\\"s' in write and "scratch" in write
    read = next(line for line in lines if line.startswith("(allow file-read*"))
    assert '(subpath "/opt/py")' in read and os.path.expanduser("~") not in read.replace("/root/.pyenv", "")
    assert text.count("(") == text.count(")")


@confined
def test_timeout_kills_the_worker_group(raw):
    start = time.monotonic()
    result = raw.run("while True:\n    pass", timeout=0.5)
    assert result.error_kind == "timeout" and time.monotonic() - start < 2
    assert raw.run("print(1)").stdout == "1\n"


@linux
def test_without_the_os_layer_commands_are_unavailable():
    with Sandbox(os_layer=False) as box:
        assert box.confinement["filesystem"] == "none"
        result = box.run_command("true")
        assert result.error_kind == "unavailable" and result.exit_code is None
        assert "--allow-unconfined-shell" in result.error
        assert box.run("print(2)").stdout == "2\n"  # Python keeps its language layer
    with Sandbox(Policy(unconfined_commands=True), os_layer=False) as box:
        assert box.run_command("true").ok


@confined
def test_seccomp_refuses_what_a_worker_never_needs(raw):
    libc = "__import__('ctypes').CDLL(None, use_errno=True)"
    assert attempt(raw, f"{libc}.ptrace(0, 0, 0, 0)").startswith("allowed: -1")  # PTRACE_TRACEME
    assert attempt(raw, f"{libc}.setsid()").startswith("allowed: -1")
    assert attempt(raw, "__import__('socket').socket(__import__('socket').AF_UNIX)").startswith(
        "refused: PermissionError"
    )
    assert attempt(raw, "len(__import__('socket').socketpair())").startswith("allowed: 2")
