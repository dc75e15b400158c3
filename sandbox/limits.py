"""Confine the current process: resource limits, no privileges, no inherited files."""

from __future__ import annotations

import math
import os
import resource
import sys

from sandbox.policy import Policy

NOBODY = 65534


def cpu_seconds(policy: Policy, timeout_s: float) -> int:
    return policy.cpu_s if policy.cpu_s is not None else math.ceil(timeout_s) + 1


def confine(policy: Policy, timeout_s: float, keep_fd: int) -> int:
    """Confine this (freshly forked) process; returns the new number of ``keep_fd`` (always 3).

    Order matters: files are closed and privileges dropped before the limits that would stop it.
    """
    os.setsid()
    if keep_fd != 3:
        os.dup2(keep_fd, 3)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # An unlimited soft limit (macOS) would make closerange walk billions of numbers.
    os.closerange(4, min(max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1024), 1 << 16))
    if os.geteuid() == 0:  # root ignores RLIMIT_NPROC and could read every file
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    cpu = cpu_seconds(policy, timeout_s)
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    try:
        _limit(resource.RLIMIT_AS, policy.memory_bytes)
    except (ValueError, OSError):
        if sys.platform != "darwin":
            raise
        # macOS refuses RLIMIT_AS below the current mapping size; the timeout bounds memory there.
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_NOFILE, policy.open_files)
    _limit(resource.RLIMIT_NPROC, 0)
    _limit(resource.RLIMIT_CORE, 0)
    return 3


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (soft, soft if hard is None else hard))
