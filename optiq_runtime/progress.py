"""A small progress reporter: a bar with an ETA on stderr, or a callback for a UI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long task: ``done`` of ``total`` units of ``stage``."""

    stage: str
    done: int
    total: int
    elapsed_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressCallback = Callable[[ProgressEvent], None]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{secs:02d}"


def format_event(event: ProgressEvent, width: int = 24) -> str:
    """``stage [#####.....] 12/40 00:03<00:07``."""
    filled = int(width * event.fraction)
    bar = "#" * filled + "." * (width - filled)
    return f"{event.stage:<12} [{bar}] {event.done}/{event.total} {_clock(event.elapsed_s)}<{_clock(event.eta_s)}"


def stderr_callback(stream: TextIO | None = None, every_s: float = 10.0) -> ProgressCallback:
    """A callback that redraws one line per stage on a terminal, or writes a line every ``every_s`` to a pipe."""
    out = stream or sys.stderr
    interactive = out.isatty()
    last = {"at": -every_s}

    def report(event: ProgressEvent) -> None:
        line = format_event(event)
        finished = event.done >= event.total
        if interactive:
            out.write("\r" + line + ("\n" if finished else ""))
        elif finished or event.elapsed_s - last["at"] >= every_s or event.done == 0:
            last["at"] = event.elapsed_s
            out.write(line + "\n")
        out.flush()

    return report


class Progress:
    """Counts units of one stage and reports each step, with an ETA from the mean rate so far."""

    def __init__(self, stage: str, total: int, callback: ProgressCallback | None, done: int = 0):
        self.stage = stage
        self.total = total
        self.callback = callback
        self.done = done
        self._start_done = done
        self._start = time.monotonic()
        self._emit()

    def advance(self, units: int = 1) -> None:
        self.done = min(self.total, self.done + units)
        self._emit()

    def _emit(self) -> None:
        if self.callback is None:
            return
        elapsed = time.monotonic() - self._start
        made = self.done - self._start_done
        eta = elapsed / made * (self.total - self.done) if made > 0 else None
        self.callback(ProgressEvent(self.stage, self.done, self.total, elapsed, eta))
