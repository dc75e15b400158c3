"""The operating-system layer: what a worker may touch, and putting the fork server inside it.

On Linux the fork server, before it answers "ready", moves into a fresh network namespace, sets
``no_new_privs`` and restricts itself with Landlock to reading the Python installation and the
system's programs and libraries, and reading and writing the workspace and a private scratch
folder. Every worker it forks inherits all of that and adds its own seccomp filter
(``sandbox.seccomp``), process group and limits (``sandbox.limits``). On macOS the host starts
the fork server under ``sandbox-exec`` with a profile for the same allow-list
(``sandbox.seatbelt``).

A report names each layer, or "none" where it is missing:
``{"platform": "linux", "filesystem": "landlock abi 7", "network": "none (netns, seccomp, landlock)",
"syscalls": "seccomp", "user": "nobody (dropped from root)"}``.
"""

from __future__ import annotations

import os
import sys

from sandbox import landlock, netns, seccomp

SYSTEM_READ = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/lib32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/gitconfig",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)
DEVICES_READ_WRITE = ("/dev/null",)
LAYERS = ("platform", "filesystem", "network", "syscalls", "user")


def python_paths() -> list[str]:
    """The Python installation (and virtual environment) this interpreter runs from."""
    interpreter_home = os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))
    found = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, interpreter_home]
    return sorted({os.path.realpath(p) for p in found})


def rules(workspace: str, scratch: str) -> list[landlock.Rule]:
    """Everything a worker may touch: system and Python read-only, workspace and scratch read-write."""
    read = [*SYSTEM_READ, *python_paths()]
    write = [*DEVICES_READ_WRITE, workspace, scratch]
    return [landlock.Rule(p, "r") for p in read] + [landlock.Rule(p, "rw") for p in write]


def user_layer() -> str:
    return "nobody (dropped from root)" if os.geteuid() == 0 else "the current user"


def confine_server(workspace: str, scratch: str) -> dict[str, str]:
    """Put this (Linux, single-threaded) fork server inside every layer available; report them."""
    network = []
    try:
        netns.enter_private_network()
        network.append("netns")
    except OSError:
        pass  # no user namespaces here: seccomp and Landlock still refuse sockets below
    landlock.no_new_privs()
    abi = _restrict_files(workspace, scratch)
    syscalls = "seccomp" if seccomp.available() else "none"
    if syscalls != "none":
        network.append("seccomp")
    if abi >= 4:
        network.append("landlock")
    return {
        "platform": "linux",
        "filesystem": f"landlock abi {abi}" if abi else "none",
        "network": f"none ({', '.join(network)})" if network else "none",
        "syscalls": syscalls,
        "user": user_layer(),
    }


def _restrict_files(workspace: str, scratch: str) -> int:
    """Apply the Landlock rules; the ABI used, or 0 where Landlock is missing or refused (reported as "none")."""
    abi = landlock.abi_version()
    if not abi:
        return 0
    try:
        ruleset = landlock.build_ruleset(rules(workspace, scratch), abi)
        try:
            landlock.restrict_self(ruleset)
        finally:
            os.close(ruleset)
    except OSError:
        return 0  # e.g. a container's own seccomp profile refusing the calls
    return abi


def unconfined(platform: str) -> dict[str, str]:
    """The report where no OS layer applies (only the process limits remain)."""
    return {"platform": platform, "filesystem": "none", "network": "none", "syscalls": "none", "user": user_layer()}


def is_confined(report: dict[str, str]) -> bool:
    """Whether files and network are both confined: the condition for running commands."""
    return report.get("filesystem", "none") != "none" and report.get("network", "none") != "none"
