"""One shell command in a confined worker: fork from the fork server, confine, ``/bin/sh -c``.

The worker leads its own process group and seccomp refuses ``setsid``/``setpgid``, so nothing it
starts can leave the group: when the shell ends, times out or floods its output, the whole group is
killed, and no process outlives the call.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import time
from typing import Any

from sandbox import landlock
from sandbox.limits import NOBODY, close_from, drop_privileges, set_limits
from sandbox.policy import Policy

SHELL = "/bin/sh"
PATH = "/usr/local/bin:/usr/bin:/bin"
COMMAND_OPEN_FILES = 256
_CHUNK = 1 << 16
DRAIN_S = 1.0
# What programs print when an allocation fails under RLIMIT_AS (libc, Python, C++, bash, GNU tools).
_MEMORY_SIGNS = ("cannot allocate memory", "memoryerror", "out of memory", "bad_alloc", "memory exhausted")


def environment(workspace: str, scratch: str) -> dict[str, str]:
    """All a command inherits: nothing of the agent's environment."""
    return {"PATH": PATH, "LANG": "C.UTF-8", "HOME": workspace, "TMPDIR": scratch}


def run_command(
    command: str, timeout_s: float, policy: Policy, workspace: str, scratch: str, syscalls: Any, read_only_abi: int = 0
) -> dict[str, Any]:
    """Run ``command`` to its end, its timeout or its output limit; the fields of a CommandResult.

    ``read_only_abi`` (a Landlock ABI version, 0 for none) stacks one more Landlock layer that
    leaves only the scratch folder and /dev/null writable: the workspace becomes read-only.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    deadline = time.monotonic() + timeout_s
    pid = os.fork()
    if pid == 0:
        _child(command, timeout_s, policy, workspace, scratch, syscalls, read_only_abi, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    try:
        output, stopped = _collect(pid, {out_r: [], err_r: []}, deadline, policy.output_chars)
    finally:
        os.close(out_r)
        os.close(err_r)
    _, status = os.waitpid(pid, 0)
    _empty(scratch)
    stdout, stderr = (_text(b"".join(output[fd])) for fd in (out_r, err_r))
    return _outcome(status, stopped, stdout, stderr, timeout_s, policy.output_chars)


def _child(
    command: str,
    timeout_s: float,
    policy: Policy,
    workspace: str,
    scratch: str,
    syscalls: Any,
    read_only_abi: int,
    out_w: int,
    err_w: int,
) -> None:
    try:
        os.setsid()
        if read_only_abi:
            _read_only(scratch, read_only_abi)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (out_w, 1), (err_w, 2)):
            os.dup2(source, target)
        close_from(3)
        drop_privileges()
        try:
            os.chdir(workspace)
        except OSError as error:
            who = " (as root, commands run as user nobody)" if os.getuid() == NOBODY else ""
            os.write(2, f"sandbox: cannot enter the workspace {workspace}: {error.strerror}{who}\n".encode())
            os._exit(126)
        set_limits(
            policy, timeout_s, processes=policy.processes, file_bytes=policy.file_bytes, open_files=COMMAND_OPEN_FILES
        )
        if syscalls is not None:
            syscalls.install()
        os.execve(SHELL, ["sh", "-c", command], environment(workspace, scratch))
    except BaseException as error:  # anything before exec is ours: say it on the command's stderr
        try:
            os.write(2, f"sandbox: could not start the command: {error}\n".encode())
        finally:
            os._exit(127)


def _read_only(scratch: str, abi: int) -> None:
    rules = [landlock.Rule("/", "r"), landlock.Rule("/dev/null", "rw"), landlock.Rule(scratch, "rw")]
    ruleset = landlock.build_ruleset(rules, abi)
    try:
        landlock.restrict_self(ruleset)  # reads stay bounded by the fork server's own layer
    finally:
        os.close(ruleset)


def _collect(
    pid: int, output: dict[int, list[bytes]], deadline: float, cap: int
) -> tuple[dict[int, list[bytes]], str | None]:
    """Read both pipes until the shell exits; kill its whole group; read what is left.

    Returns the chunks per pipe and why the sandbox stopped the command ("timeout",
    "output_limit") or None when the shell ended by itself.
    """
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    open_fds, size, stopped = set(output), 0, None
    try:
        while stopped is None and not _exited(pid, pidfd):
            for fd in select.select(
                [*open_fds, *([pidfd] if pidfd is not None else [])], [], [], _wait_s(deadline, pidfd)
            )[0]:
                if fd != pidfd:
                    size += _read_into(fd, output, open_fds)
            if size > cap:
                stopped = "output_limit"
            elif time.monotonic() >= deadline:
                stopped = "timeout"
    finally:
        _kill_group(pid)  # before waitpid: the group id cannot have been reused yet
        if pidfd is not None:
            os.close(pidfd)
    _drain(output, open_fds, cap)
    return output, stopped


def _wait_s(deadline: float, pidfd: int | None) -> float:
    left = max(deadline - time.monotonic(), 0.0)
    return left if pidfd is not None else min(left, 0.01)  # without pidfd (macOS), poll the shell


def _exited(pid: int, pidfd: int | None) -> bool:
    if pidfd is not None:
        return bool(select.select([pidfd], [], [], 0)[0])
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _read_into(fd: int, output: dict[int, list[bytes]], open_fds: set[int]) -> int:
    chunk = os.read(fd, _CHUNK)
    if not chunk:
        open_fds.discard(fd)
        return 0
    output[fd].append(chunk)
    return len(chunk)


def _drain(output: dict[int, list[bytes]], open_fds: set[int], cap: int) -> None:
    """What the pipes still hold once every writer is dead (bounded: the cap, then a short wait)."""
    deadline = time.monotonic() + DRAIN_S
    size = sum(len(c) for chunks in output.values() for c in chunks)
    while open_fds and size <= cap and time.monotonic() < deadline:
        for fd in select.select(list(open_fds), [], [], max(deadline - time.monotonic(), 0.0))[0]:
            size += _read_into(fd, output, open_fds)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already empty


def _empty(folder: str) -> None:
    """The scratch folder is private to each command: empty it after every one."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass  # already gone


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _outcome(status: int, stopped: str | None, stdout: str, stderr: str, timeout_s: float, cap: int) -> dict[str, Any]:
    result: dict[str, Any] = {"stdout": stdout[:cap], "stderr": stderr[: max(cap - len(stdout), 0)]}
    if stopped == "timeout":
        return {**result, "exit_code": None, "error_kind": "timeout", "error": f"timed out after {timeout_s:g} s"}
    if stopped == "output_limit":
        return {
            **result,
            "exit_code": None,
            "error_kind": "output_limit",
            "error": f"output passed the limit of {cap} characters; the first part is kept",
        }
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return {**result, "exit_code": None, "error_kind": "timeout", "error": "CPU time limit exceeded"}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if code != 0 and any(sign in stderr.lower() for sign in _MEMORY_SIGNS):
        return {**result, "exit_code": code, "error_kind": "memory", "error": "the command ran out of memory"}
    return {**result, "exit_code": code, "error_kind": None, "error": None}
