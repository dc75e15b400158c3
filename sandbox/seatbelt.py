"""macOS: a deny-by-default Seatbelt profile for the fork server, run under ``sandbox-exec``.

The profile allows what the Linux layer allows: reading the Python installation and the system's
programs and libraries, reading and writing the workspace and the scratch folder, starting
processes from those, and nothing on the network. The whole fork server runs inside it, so every
worker and command it forks does too. This machine cannot run it (Linux); the text is tested.
"""

from __future__ import annotations

import os
import shutil
import sys

from sandbox.oslayer import python_paths

SANDBOX_EXEC = "/usr/bin/sandbox-exec"
SYSTEM_READ = (
    "/usr/lib",
    "/usr/bin",
    "/bin",
    "/usr/share",
    "/System",
    "/Library/Apple",
    "/private/etc",
    "/private/var/db/timezone",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)


def available() -> bool:
    return sys.platform == "darwin" and shutil.which(SANDBOX_EXEC) is not None


def _quote(path: str) -> str:
    """A Seatbelt string literal: backslashes and double quotes escaped."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile(workspace: str, scratch: str, python: list[str] | None = None) -> str:
    """The profile text (SBPL) for one workspace and scratch folder.

    The fork server starts inside it, so it also reads this package's own folder to import it.
    """
    python = python if python is not None else python_paths()
    read = [*SYSTEM_READ, *python, os.path.dirname(os.path.abspath(__file__))]
    write = [os.path.realpath(workspace), os.path.realpath(scratch)]

    def paths(folders: list[str]) -> str:
        return "".join(f" (subpath {_quote(p)})" for p in folders)

    return (
        "\n".join(
            [
                "(version 1)",
                "(deny default)",
                "(allow process-fork)",
                "(allow signal (target same-sandbox))",
                "(allow sysctl-read)",
                "(allow file-read-metadata)",  # stat() on the way to allowed paths; no contents
                f'(allow file-read* (literal "/"){paths(read + write)})',
                f"(allow process-exec{paths(read + write)})",
                f'(allow file-write* (literal "/dev/null"){paths(write)})',
                "(deny network*)",
            ]
        )
        + "\n"
    )


def command(argv: list[str], workspace: str, scratch: str) -> list[str]:
    """``argv`` started under the profile."""
    return [SANDBOX_EXEC, "-p", profile(workspace, scratch), *argv]


def report() -> dict[str, str]:
    from sandbox.oslayer import user_layer

    return {
        "platform": "darwin",
        "filesystem": "seatbelt",
        "network": "none (seatbelt)",
        "syscalls": "none",
        "user": user_layer(),
    }
