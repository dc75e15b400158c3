"""The fork server: a trusted process that imports everything once and forks a fresh,
confined worker for each run, so a warm run costs a fork instead of an interpreter start.

Protocol on stdin/stdout, one JSON object per line: the first line is the policy, answered
by ``{"ready": true}``; then each request ``{"code": ..., "timeout": ...}`` is answered by the
fields of a ``RunResult`` (without ``duration_s``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from typing import Any

from sandbox.execute import run_snippet
from sandbox.guards import ModuleProxy, load_proxies
from sandbox.limits import confine
from sandbox.policy import Policy

_CHUNK = 1 << 16


def serve(stdin: Any, stdout: Any) -> None:
    policy = Policy.from_json(stdin.readline())
    proxies = load_proxies(policy.modules)
    _reply(stdout, {"ready": True})
    for line in stdin:
        request = json.loads(line)
        _reply(stdout, run_once(request["code"], float(request["timeout"]), policy, proxies))


def _reply(stdout: Any, message: dict[str, Any]) -> None:
    stdout.write(json.dumps(message) + "\n")
    stdout.flush()


def run_once(code: str, timeout_s: float, policy: Policy, proxies: dict[str, ModuleProxy]) -> dict[str, Any]:
    """Fork a confined worker for ``code``; kill it at the timeout; classify how it ended."""
    read_end, write_end = os.pipe()
    deadline = time.monotonic() + timeout_s
    pid = os.fork()
    if pid == 0:
        _child(code, timeout_s, policy, proxies, read_end, write_end)
    os.close(write_end)
    try:
        data, timed_out = _read_until(read_end, deadline)
    finally:
        os.close(read_end)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"ok": False, "error": f"timed out after {timeout_s:g} s", "error_kind": "timeout"}
    try:
        return json.loads(data)
    except ValueError:
        return _died(status)


def _child(code: str, timeout_s: float, policy: Policy, proxies: dict[str, ModuleProxy], read_end: int, write_end: int) -> None:
    status = 70
    try:
        os.close(read_end)
        out = confine(policy, timeout_s, write_end)
        try:
            outcome = run_snippet(code, policy, proxies)
        except Exception as error:  # a bug of ours, reported rather than mistaken for the code's
            outcome = {"ok": False, "error": f"sandbox internal error: {type(error).__name__}: {error}",
                       "error_kind": "runtime"}
        payload = json.dumps(outcome).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(out, view):]
        status = 0
    finally:
        os._exit(status)


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    chunks = []
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
        return {"ok": False, "error": f"the worker crashed ({signal.Signals(sig).name}), "
                "for example from recursion too deep for the C stack", "error_kind": "runtime"}
    return {"ok": False, "error": f"the worker exited without a result (status {os.WEXITSTATUS(status)}), "
            "most likely out of memory", "error_kind": "memory"}


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host's Ctrl-C is the host's to handle
    serve(sys.stdin, sys.stdout)
