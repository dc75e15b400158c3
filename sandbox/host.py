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
from typing import Any

from sandbox.policy import Policy
from sandbox.result import RunResult

_START_TIMEOUT_S = 60.0
# How long past its own timeout the fork server may take to answer before it is replaced.
_GRACE_S = 0.8


class SandboxError(RuntimeError):
    """The sandbox itself could not start; not something the code did."""


class _Server:
    """One fork server process, its empty working directory, and a line reader over its stdout."""

    def __init__(self, policy: Policy) -> None:
        self.workdir = tempfile.mkdtemp(prefix="optiq-sandbox-")
        os.chmod(self.workdir, 0o555)
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": self.workdir}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "sandbox.forkserver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, cwd=self.workdir, env=env, start_new_session=True,
        )
        self.buffer = b""
        self.ready = False
        self._send(policy.to_json())
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
        self.ready = True

    def request(self, code: str, timeout_s: float) -> dict[str, Any] | None:
        """Send code; the reply, or None when the server did not answer in time or died."""
        try:
            self._send(json.dumps({"code": code, "timeout": timeout_s}))
        except (BrokenPipeError, OSError):
            return None
        return self.read(timeout_s + _GRACE_S)

    def read(self, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        fd = self.process.stdout.fileno()
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
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        self._finalizer()


def _stop(process: subprocess.Popen, workdir: str) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass  # the pipe is gone with the process; nothing left to release
    shutil.rmtree(workdir, ignore_errors=True)


class Sandbox:
    """Runs untrusted Python: RestrictedPython guards inside a confined, disposable process.

    A fork server starts as soon as the sandbox is made; each run forks a fresh worker from it,
    so runs share no state. Use as a context manager, or call ``close()``.
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self._lock = threading.Lock()
        self._server: _Server | None = _Server(self.policy)

    def run(self, code: str, timeout: float | None = None) -> RunResult:
        """Run ``code``; never raises for anything the code does."""
        timeout_s = self.policy.timeout_s if timeout is None else float(timeout)
        if timeout_s <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        with self._lock:
            server = self._ready_server()
            start = time.monotonic()
            reply = server.request(code, timeout_s)
            duration = time.monotonic() - start
            if reply is None:
                self._replace(server)
                reply = {"ok": False, "error_kind": "timeout",
                         "error": f"timed out after {timeout_s:g} s (the sandbox worker was replaced)"}
        return RunResult(duration_s=duration, **reply)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready_server(self) -> _Server:
        if self._server is None or not self._server.alive():
            self._replace(self._server)
        self._server.wait_ready()
        return self._server

    def _replace(self, server: _Server | None) -> None:
        if server is not None:
            server.stop()
        self._server = _Server(self.policy)
