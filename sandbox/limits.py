"""Confine the current (freshly forked) process: its own session, no privileges, no inherited
files, resource limits, and last the seccomp filter."""

from __future__ import annotations

import math
import os
import resource
import sys
from typing import Any

from sandbox.netns import drop_capabilities
from sandbox.policy import Policy

NOBODY = 65534


def cpu_seconds(policy: Policy, timeout_s: float) -> int:
    return policy.cpu_s if policy.cpu_s is not None else math.ceil(timeout_s) + 1


def confine(policy: Policy, timeout_s: float, keep_fd: int, syscalls: Any = None) -> int:
    """Confine a Python worker; returns the new number of ``keep_fd`` (always 3).

    ``syscalls`` is a ``sandbox.seccomp.Filter`` (or None where seccomp is missing). Order
    matters: files are closed and privileges dropped before the limits that would stop it, and
    the filter comes last because it refuses ``setsid``.
    """
    os.setsid()
    if keep_fd != 3:
        os.dup2(keep_fd, 3)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    close_from(4)
    drop_privileges()
    set_limits(policy, timeout_s, processes=0, file_bytes=0, open_files=policy.open_files)
    if syscalls is not None:
        syscalls.install()
    return 3


def close_from(first: int) -> None:
    # An unlimited soft limit (macOS) would make closerange walk billions of numbers.
    os.closerange(first, min(max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024), 1 << 16))


def drop_privileges() -> None:
    """Root becomes ``nobody``; every capability (a user namespace grants them all) is dropped."""
    if os.geteuid() == 0:  # root ignores RLIMIT_NPROC and owns too much
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    if sys.platform.startswith("linux"):
        drop_capabilities()


def set_limits(policy: Policy, timeout_s: float, *, processes: int, file_bytes: int, open_files: int) -> None:
    cpu = cpu_seconds(policy, timeout_s)
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    try:
        _limit(resource.RLIMIT_AS, policy.memory_bytes)
    except (ValueError, OSError):
        if sys.platform != "darwin":
            raise
        # macOS refuses RLIMIT_AS below the current mapping size; the timeout bounds memory there.
    _limit(resource.RLIMIT_FSIZE, file_bytes)
    _limit(resource.RLIMIT_NOFILE, open_files)
    _limit(resource.RLIMIT_NPROC, processes)
    _limit(resource.RLIMIT_CORE, 0)


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))
