"""The fork server: a trusted process that imports everything once, confines itself (the OS
layer, ``sandbox.oslayer``) and forks a fresh worker for each run, so a warm run costs a
fork instead of an interpreter start.

Protocol on stdin/stdout, one JSON object per line: the first line is
``{"policy": ..., "workspace": ..., "scratch": ..., "confine": bool}``, answered by
``{"ready": true, "confinement": {...}}``; then each request ``{"code": ..., "timeout": ...}`` is
answered by the fields of a ``RunResult``, and each ``{"command": ..., "timeout": ...}`` by those of
a ``CommandResult`` (both without ``duration_s``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from sandbox import seccomp
from sandbox.command import run_command
from sandbox.execute import run_snippet
from sandbox.guards import load_proxies
from sandbox.limits import confine
from sandbox.oslayer import confine_server, unconfined
from sandbox.policy import Policy

_CHUNK = 1 << 16

Runner = Callable[[str, Policy, Any], dict[str, Any]]


class Server:
    """What every request needs: the policy, the loaded modules, the folders and the seccomp filters."""

    def __init__(self, setup: dict[str, Any], runner: Runner) -> None:
        self.policy = Policy.from_json(json.dumps(setup["policy"]))
        self.workspace, self.scratch = setup["workspace"], setup["scratch"]
        self.proxies = load_proxies(self.policy.modules)
        self.runner = runner
        self.confinement = self._confine(bool(setup.get("confine", True)))
        filesystem = self.confinement["filesystem"]
        self.landlock_abi = int(filesystem.rsplit(" ", 1)[1]) if filesystem.startswith("landlock") else 0
        filtered = self.confinement["syscalls"] == "seccomp"
        self.python_filter = seccomp.Filter(python_worker=True) if filtered else None
        self.command_filter = seccomp.Filter(python_worker=False) if filtered else None

    def _confine(self, wanted: bool) -> dict[str, str]:
        if sys.platform.startswith("linux") and wanted:
            return confine_server(self.workspace, self.scratch)
        return unconfined(sys.platform)  # macOS: the host started us under sandbox-exec and says so

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        timeout_s = float(request["timeout"])
        if "command" in request:
            read_only_abi = self.landlock_abi if request.get("read_only") else 0
            return run_command(
                str(request["command"]),
                timeout_s,
                self.policy,
                self.workspace,
                self.scratch,
                self.command_filter,
                read_only_abi,
            )
        return run_once(request["code"], timeout_s, self)


def serve(stdin: Any, stdout: Any, runner: Runner) -> None:
    server = Server(json.loads(stdin.readline()), runner)
    _reply(stdout, {"ready": True, "confinement": server.confinement})
    for line in stdin:
        _reply(stdout, server.handle(json.loads(line)))


def _reply(stdout: Any, message: dict[str, Any]) -> None:
    stdout.write(json.dumps(message) + "\n")
    stdout.flush()


def run_once(code: str, timeout_s: float, server: Server) -> dict[str, Any]:
    """Fork a confined worker for ``code``; kill its group at the timeout; classify how it ended."""
    read_end, write_end = os.pipe()
    deadline = time.monotonic() + timeout_s
    pid = os.fork()
    if pid == 0:
        _child(code, timeout_s, server, read_end, write_end)
    os.close(write_end)
    try:
        data, timed_out = _read_until(read_end, deadline)
    finally:
        os.close(read_end)
    try:
        os.killpg(pid, signal.SIGKILL)  # nothing of the worker's may outlive the run
    except ProcessLookupError:
        pass  # it had already ended
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"ok": False, "error": f"timed out after {timeout_s:g} s", "error_kind": "timeout"}
    try:
        return json.loads(data)
    except ValueError:
        return _died(status)


def _child(code: str, timeout_s: float, server: Server, read_end: int, write_end: int) -> None:
    status = 70
    try:
        os.close(read_end)
        out = confine(server.policy, timeout_s, write_end, server.python_filter)
        try:
            outcome = server.runner(code, server.policy, server.proxies)
        except Exception as error:  # a bug of ours, reported rather than mistaken for the code's
            outcome = {
                "ok": False,
                "error": f"sandbox internal error: {type(error).__name__}: {error}",
                "error_kind": "runtime",
            }
        payload = json.dumps(outcome).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(out, view) :]
        status = 0
    finally:
        os._exit(status)


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def _died(status: int) -> dict[str, Any]:
    """Describe a worker that ended without a result."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return {"ok": False, "error": "CPU time limit exceeded", "error_kind": "timeout"}
        if sig == signal.SIGSYS:
            return {"ok": False, "error": "the worker made a system call the sandbox forbids", "error_kind": "policy"}
        return {
            "ok": False,
            "error": f"the worker crashed ({signal.Signals(sig).name}), "
            "for example from recursion too deep for the C stack",
            "error_kind": "runtime",
        }
    return {
        "ok": False,
        "error": f"the worker exited without a result (status {os.WEXITSTATUS(status)}), most likely out of memory",
        "error_kind": "memory",
    }


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host's Ctrl-C is the host's to handle
    if "--unrestricted-for-tests" in argv:
        from sandbox.unrestricted import run_unrestricted as runner
    else:
        runner = run_snippet
    serve(sys.stdin, sys.stdout, runner)


if __name__ == "__main__":
    main(sys.argv[1:])
