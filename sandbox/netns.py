"""A private network namespace, and dropping the capabilities a user namespace hands out.

A fresh network namespace has only a loopback interface, and it is down: no address, host or
local listener can be reached from it, and abstract UNIX sockets outside it are out of sight. Root
makes one directly; any other user first makes a user namespace (unprivileged, on kernels that
allow it) in which its own ids map to themselves.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
_CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


def _fail(what: str) -> OSError:
    error = ctypes.get_errno()
    return OSError(error, f"{what}: {os.strerror(error)}")


def enter_private_network() -> str:
    """Move this (single-threaded) process into a new network namespace; says how it was made."""
    if os.geteuid() == 0:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise _fail("unshare(CLONE_NEWNET)")
        return "netns"
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise _fail("unshare(CLONE_NEWUSER | CLONE_NEWNET)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    return "netns in userns"


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empty every capability set of this process (what a user namespace granted, or root's)."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise _fail("capset")


def private_network_possible() -> bool:
    """Whether this process could make a private network namespace (tried in a throwaway child)."""
    pid = os.fork()
    if pid == 0:
        try:
            enter_private_network()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
