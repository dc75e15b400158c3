"""A seccomp-BPF filter, built by hand: the system calls a sandbox worker never needs are refused.

Refused with EPERM: debugging other processes, mounting, namespaces, BPF, keyrings, kernel
modules, kexec, io_uring (its operations bypass seccomp), leaving the process group (so the
whole group can be killed), ``socket`` of any family (only ``socketpair`` stays) and faking
terminal input. ``clone`` with a namespace flag is refused; ``clone3`` answers ENOSYS, because
its flags sit in memory a filter cannot read, and libc then falls back to ``clone``. Python
workers are also refused ``execve``, so code that got past the guards cannot start a program.
A call from another architecture (or the x32 ABI) kills the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# The generic numbers (arm64) differ from x86-64's; the newer calls share numbers.
_NUMBERS = {
    "x86_64": dict(
        ptrace=101,
        process_vm_readv=310,
        process_vm_writev=311,
        mount=165,
        umount2=166,
        pivot_root=155,
        chroot=161,
        bpf=321,
        keyctl=250,
        add_key=248,
        request_key=249,
        init_module=175,
        finit_module=313,
        delete_module=176,
        kexec_load=246,
        kexec_file_load=320,
        unshare=272,
        setns=308,
        perf_event_open=298,
        userfaultfd=323,
        open_by_handle_at=304,
        name_to_handle_at=303,
        swapon=167,
        swapoff=168,
        reboot=169,
        acct=163,
        iopl=172,
        ioperm=173,
        setsid=112,
        setpgid=109,
        socket=41,
        quotactl=179,
        syslog=103,
        vhangup=153,
        personality=135,
        lookup_dcookie=212,
        uselib=134,
        execve=59,
        execveat=322,
        fork=57,
        vfork=58,
        clone=56,
        clone3=435,
        ioctl=16,
    ),
    "aarch64": dict(
        ptrace=117,
        process_vm_readv=270,
        process_vm_writev=271,
        mount=40,
        umount2=39,
        pivot_root=41,
        chroot=51,
        bpf=280,
        keyctl=219,
        add_key=217,
        request_key=218,
        init_module=105,
        finit_module=273,
        delete_module=106,
        kexec_load=104,
        kexec_file_load=294,
        unshare=97,
        setns=268,
        perf_event_open=241,
        userfaultfd=282,
        open_by_handle_at=265,
        name_to_handle_at=264,
        swapon=224,
        swapoff=225,
        reboot=142,
        acct=89,
        setsid=157,
        setpgid=154,
        socket=198,
        quotactl=60,
        syslog=116,
        vhangup=58,
        personality=92,
        lookup_dcookie=18,
        execve=221,
        execveat=281,
        clone=220,
        clone3=435,
        ioctl=29,
    ),
}
_SHARED = dict(
    io_uring_setup=425,
    io_uring_enter=426,
    io_uring_register=427,
    open_tree=428,
    move_mount=429,
    fsopen=430,
    fsconfig=431,
    fsmount=432,
    fspick=433,
    pidfd_getfd=438,
    mount_setattr=442,
)

REFUSED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "unshare",
    "setns",
    "perf_event_open",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "iopl",
    "ioperm",
    "setsid",
    "setpgid",
    "socket",
    "quotactl",
    "syslog",
    "vhangup",
    "personality",
    "lookup_dcookie",
    "uselib",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_getfd",
    "mount_setattr",
)
REFUSED_TO_PYTHON = ("execve", "execveat", "fork", "vfork")

_NAMESPACE_FLAGS = 0x7E020080  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_X32_BIT = 0x40000000

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_NR, _ARCH, _ARG0, _ARG1 = 0, 4, 16, 24  # offsets in struct seccomp_data (low half of each argument)

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_libc = ctypes.CDLL(None, use_errno=True)


def machine() -> str | None:
    """The architecture name this module has numbers for, or None."""
    name = platform.machine().lower()
    name = {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)
    return name if name in _NUMBERS else None


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(python_worker: bool, arch: str | None = None) -> bytes:
    """The filter's instructions for ``arch`` (default: this machine's)."""
    arch = arch or machine()
    if arch is None:
        raise OSError(errno.ENOSYS, f"no seccomp syscall table for {platform.machine()}")
    numbers = {**_NUMBERS[arch], **_SHARED}
    refused = REFUSED + (REFUSED_TO_PYTHON if python_worker else ())
    code = [
        _insn(_LD_W_ABS, _ARCH),
        _insn(_JEQ, _AUDIT_ARCH[arch], jt=1),
        _insn(_RET, _KILL_PROCESS),
        _insn(_LD_W_ABS, _NR),
    ]
    if arch == "x86_64":
        code += [_insn(_JGE, _X32_BIT, jf=1), _insn(_RET, _KILL_PROCESS)]
    for name in refused:
        if name in numbers:
            code += [_insn(_JEQ, numbers[name], jf=1), _insn(_RET, _ERRNO | errno.EPERM)]
    code += [_insn(_JEQ, numbers["clone3"], jf=1), _insn(_RET, _ERRNO | errno.ENOSYS)]
    code += [
        _insn(_JEQ, numbers["clone"], jf=4),
        _insn(_LD_W_ABS, _ARG0),
        _insn(_JSET, _NAMESPACE_FLAGS, jf=1),
        _insn(_RET, _ERRNO | errno.EPERM),
        _insn(_RET, _ALLOW),
    ]
    code += [
        _insn(_JEQ, numbers["ioctl"], jf=5),
        _insn(_LD_W_ABS, _ARG1),
        _insn(_JEQ, _TIOCSTI, jt=1),
        _insn(_JEQ, _TIOCLINUX, jf=1),
        _insn(_RET, _ERRNO | errno.EPERM),
        _insn(_RET, _ALLOW),
    ]
    code.append(_insn(_RET, _ALLOW))
    return b"".join(code)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Filter:
    """A built filter kept in memory, so a forked child installs it without allocating."""

    def __init__(self, python_worker: bool) -> None:
        code = program(python_worker)
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self._prog = _Fprog(len(code) // 8, ctypes.addressof(self._buffer))

    def install(self) -> None:
        """Apply to this process and its future children (needs no_new_privs first)."""
        if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"seccomp filter: {os.strerror(error)}")


def available() -> bool:
    """Whether this kernel takes seccomp filters (PR_GET_SECCOMP answers) and we know this machine."""
    return machine() is not None and _libc.prctl(21, 0, 0, 0, 0) >= 0
