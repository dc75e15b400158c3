"""Landlock (Linux 5.13+) through its three system calls, with ctypes.

A ruleset names what is allowed beneath a few paths; once a process restricts itself with it,
every other path is refused to that process and to everything it forks or executes, root
included. Rulesets only ever tighten. On ABI 4+ the same ruleset refuses TCP bind and connect,
and on ABI 6+ it scopes abstract UNIX sockets and signals to the sandboxed processes.
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_ABI1_FS = (1 << 13) - 1  # execute .. make_sym
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ_RIGHTS = EXECUTE | READ_FILE | READ_DIR
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    result = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(result), 0)


def fs_rights(abi: int) -> int:
    """Every filesystem right this ABI knows, so that all of them are refused unless a rule allows."""
    rights = _ABI1_FS
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Rule:
    """``path`` and what may be done beneath it: "r" (read, list, execute) or "rw" (everything)."""

    path: str
    mode: str


def _check(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"landlock {what}: {os.strerror(error)}")
    return int(result)


def build_ruleset(rules: list[Rule], abi: int) -> int:
    """A ruleset file descriptor allowing exactly ``rules``; paths that do not exist are skipped."""
    handled = fs_rights(abi)
    attr = _RulesetAttr(
        handled,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    fd = _check(
        _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)),
        "create_ruleset",
    )
    try:
        for rule in rules:
            _add_rule(fd, rule, handled)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _add_rule(ruleset: int, rule: Rule, handled: int) -> None:
    try:
        target = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        access = handled if rule.mode == "rw" else READ_RIGHTS
        if not stat.S_ISDIR(os.fstat(target).st_mode):
            access &= FILE_RIGHTS  # directory rights on a file are an error
        attr = _PathBeneathAttr(access & handled, target)
        _check(
            _libc.syscall(
                _SYS_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(attr),
                ctypes.c_uint32(0),
            ),
            f"add_rule {rule.path}",
        )
    finally:
        os.close(target)


def no_new_privs() -> None:
    """``PR_SET_NO_NEW_PRIVS``: nothing this process executes gains privileges (setuid bits, file caps)."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def restrict_self(ruleset: int) -> None:
    """Apply ``ruleset`` to this process (needs ``no_new_privs()`` first)."""
    _check(_libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "restrict_self")
