"""The agent's side: ``Sandbox`` keeps a fork server running and sends it code to run."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import IO, Any

from sandbox import seatbelt
from sandbox.command import DRAIN_S
from sandbox.limits import NOBODY
from sandbox.oslayer import is_confined
from sandbox.policy import Policy
from sandbox.result import CommandResult, RunResult

_START_TIMEOUT_S = 60.0
# How long past its own timeout the fork server may take to answer before it is replaced.
_GRACE_S = 0.8


class SandboxError(RuntimeError):
    """The sandbox itself could not start; not something the code did."""


_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from sandbox.forkserver import main; main(sys.argv[2:])"
# The folder holding this package: the fork server runs this very code, not whatever is installed.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Server:
    """One fork server process, its empty working directory, and a line reader over its stdout."""

    def __init__(self, policy: Policy, workspace: str, scratch: str, unrestricted: bool, os_layer: bool) -> None:
        self.workdir = tempfile.mkdtemp(prefix="optiq-sandbox-")
        os.chmod(self.workdir, 0o555)
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workspace}
        argv = [sys.executable, "-I", "-c", _BOOT, _SOURCE_ROOT] + (
            ["--unrestricted-for-tests"] if unrestricted else []
        )
        self.seatbelt = os_layer and seatbelt.available()
        if self.seatbelt:
            argv = seatbelt.command(argv, workspace, scratch)
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
        )
        self.buffer = b""
        self.ready = False
        self.confinement: dict[str, str] = {}
        setup = {
            "policy": json.loads(policy.to_json()),
            "workspace": workspace,
            "scratch": scratch,
            "confine": os_layer,
        }
        self._send(json.dumps(setup))
        self._finalizer = weakref.finalize(self, _stop, self.process, self.workdir)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self) -> None:
        if self.ready:
            return
        reply = self.read(_START_TIMEOUT_S)
        if reply is None or not reply.get("ready"):
            self.stop()
            raise SandboxError("the sandbox fork server did not start (is RestrictedPython installed?)")
        self.confinement = reply["confinement"]
        if self.seatbelt:
            self.confinement = seatbelt.report()
        self.ready = True

    def request(self, message: dict[str, Any], timeout_s: float, extra_s: float = 0.0) -> dict[str, Any] | None:
        """Send a request; the reply, or None when the server did not answer in time or died."""
        try:
            self._send(json.dumps({**message, "timeout": timeout_s}))
        except (BrokenPipeError, OSError):
            return None
        return self.read(timeout_s + extra_s + _GRACE_S)

    def read(self, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        fd = _pipe(self.process.stdout).fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def _send(self, line: str) -> None:
        stdin = _pipe(self.process.stdin)
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def stop(self) -> None:
        self._finalizer()


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    """One of the sandbox process's pipes (started with stdin and stdout piped, so never None)."""
    if stream is None:
        raise RuntimeError("the sandbox process was started without this pipe")
    return stream


def _stop(process: subprocess.Popen, workdir: str) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is None:
            continue
        try:
            stream.close()
        except OSError:
            pass  # the pipe is gone with the process; nothing left to release
    shutil.rmtree(workdir, ignore_errors=True)


class Sandbox:
    """Runs untrusted Python and shell commands inside the OS layer, Python also under RestrictedPython.

    A fork server starts as soon as the sandbox is made; each run forks a fresh worker from it,
    so runs share no state. ``workspace`` is the one folder workers may write (and commands start
    in); without one, the sandbox makes a private empty folder. Use as a context manager, or call
    ``close()``. ``os_layer=False`` leaves the OS layer out (as on a machine without one);
    ``unrestricted_for_tests`` turns the language layer off, for tests of the OS layer alone.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        workspace: str | os.PathLike | None = None,
        *,
        os_layer: bool = True,
        unrestricted_for_tests: bool = False,
    ) -> None:
        self.policy = policy or Policy()
        self._lock = threading.Lock()
        self._folders = _Folders(workspace)
        self.workspace = self._folders.workspace
        self._unrestricted = unrestricted_for_tests
        self._os_layer = os_layer
        self._server: _Server | None = self._new_server()

    @property
    def confinement(self) -> dict[str, str]:
        """The OS layers this sandbox's workers run under ("none" for a missing one)."""
        with self._lock:
            return dict(self._ready_server().confinement)

    def run(self, code: str, timeout: float | None = None) -> RunResult:
        """Run ``code``; never raises for anything the code does."""
        timeout_s = self._timeout(timeout)
        reply, duration = self._request({"code": code}, timeout_s)
        if reply is None:
            reply = {
                "ok": False,
                "error_kind": "timeout",
                "error": f"timed out after {timeout_s:g} s (the sandbox worker was replaced)",
            }
        return RunResult(duration_s=duration, **reply)

    def run_command(self, command: str, timeout: float | None = None, *, read_only: bool = False) -> CommandResult:
        """Run ``/bin/sh -c command`` confined, in the workspace; never raises for what the command does.

        ``read_only`` makes the workspace read-only to this command (where Landlock is present).
        """
        if type(command) is not str or not command.strip():
            raise ValueError("command must be a non-empty string")
        timeout_s = self._timeout(timeout)
        layers = self.confinement
        if not is_confined(layers) and not self.policy.unconfined_commands:
            return CommandResult(
                None,
                error_kind="unavailable",
                error=(
                    f"commands need the OS sandbox, which is missing here (filesystem: {layers['filesystem']}, "
                    f"network: {layers['network']}); pass --allow-unconfined-shell to run them anyway"
                ),
            )
        reply, duration = self._request({"command": command, "read_only": read_only}, timeout_s, DRAIN_S)
        if reply is None:
            reply = {
                "exit_code": None,
                "error_kind": "timeout",
                "error": f"timed out after {timeout_s:g} s (the sandbox worker was replaced)",
            }
        return CommandResult(duration_s=duration, **reply)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
            self._folders.remove()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float:
        timeout_s = self.policy.timeout_s if timeout is None else float(timeout)
        if timeout_s <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        return timeout_s

    def _request(
        self, message: dict[str, Any], timeout_s: float, extra_s: float = 0.0
    ) -> tuple[dict[str, Any] | None, float]:
        with self._lock:
            server = self._ready_server()
            start = time.monotonic()
            reply = server.request(message, timeout_s, extra_s)
            duration = time.monotonic() - start
            if reply is None:
                self._replace(server)
        return reply, duration

    def _ready_server(self) -> _Server:
        server = self._server
        if server is None or not server.alive():
            server = self._replace(server)
        server.wait_ready()
        return server

    def _replace(self, server: _Server | None) -> _Server:
        if server is not None:
            server.stop()
        self._server = fresh = self._new_server()
        return fresh

    def _new_server(self) -> _Server:
        return _Server(self.policy, self.workspace, self._folders.scratch, self._unrestricted, self._os_layer)


class _Folders:
    """The workspace (given, or made and removed here) and the private scratch folder."""

    def __init__(self, workspace: str | os.PathLike | None) -> None:
        self.own_workspace = workspace is None
        if workspace is None:
            workspace = _private_folder("optiq-workspace-")
        elif not os.path.isdir(workspace):
            raise ValueError(f"workspace {workspace} is not a folder")
        self.workspace = os.path.realpath(workspace)
        self.scratch = _private_folder("optiq-scratch-")

    def remove(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.own_workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)


def hand_to_workers(folder: str | os.PathLike) -> None:
    """Let workers write a folder we made for them: as root they run as ``nobody``, so it becomes nobody's."""
    if os.geteuid() != 0:
        return
    for parent, dirs, files in os.walk(os.fspath(folder)):
        for name in [parent, *(os.path.join(parent, n) for n in dirs + files)]:
            os.chown(name, NOBODY, NOBODY, follow_symlinks=False)


def _private_folder(prefix: str) -> str:
    """A new empty folder only the workers' user may use (``nobody`` when we run as root)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    hand_to_workers(folder)
    return folder


_PROBED: dict[str, str] | None = None


def confinement() -> dict[str, str]:
    """The OS layers a sandbox gets on this machine, found once by starting one."""
    global _PROBED
    if _PROBED is None:
        with Sandbox() as box:
            _PROBED = box.confinement
    return dict(_PROBED)
