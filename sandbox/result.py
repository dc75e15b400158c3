"""What one sandboxed run produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal["syntax", "policy", "runtime", "timeout", "memory", "output_limit"]


@dataclass(frozen=True)
class RunResult:
    """The outcome of ``Sandbox.run``.

    ``value`` is the repr of a final expression statement (None when there is none or it is None);
    ``error`` is one message, with the line number for syntax, policy and runtime errors.
    """

    ok: bool
    stdout: str = ""
    value: str | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_s: float = 0.0
