"""How a build becomes visible: written under a lock in a ``.partial`` folder, renamed into place only when complete."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from optiq_runtime.errors import OptiqError


class BuildBusy(OptiqError):
    """Another process is building the same output right now."""

    def __init__(self, out: Path, lock_file: Path):
        super().__init__(f"another optiq process is building {out} right now")
        self.lock_file = lock_file


def wait_for(lock_file: Path) -> None:
    """Block until the build holding ``lock_file`` finishes (or dies)."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        fcntl.flock(handle, fcntl.LOCK_UN)


def lock(out: Path, work: Path):
    """Take the lock beside ``work`` (``BuildBusy`` when another process holds it) and make ``work``.

    The returned handle holds the lock until it is closed.
    """
    lock_file = work.parent / f"{work.name}.lock"
    handle = open(lock_file, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        handle.close()
        raise BuildBusy(out, lock_file) from error
    work.mkdir(parents=True, exist_ok=True)
    return handle


def clear_work(work: Path, keep: Path) -> None:
    """Empty the work folder of an earlier attempt's files, keeping its probes."""
    for entry in work.iterdir():
        if entry.is_dir() and entry.name == "optiq":
            for inner in entry.iterdir():
                if inner != keep:
                    inner.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def publish(work: Path, out: Path) -> None:
    """Rename the finished folder into place; an existing one (``--force``) is swapped out, then removed."""
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    os.rename(work, out)
    shutil.rmtree(old, ignore_errors=True)
