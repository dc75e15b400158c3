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


CommandErrorKind = Literal["timeout", "memory", "output_limit", "unavailable"]


@dataclass(frozen=True)
class CommandResult:
    """The outcome of ``Sandbox.run_command``.

    ``exit_code`` is the shell's status (128 + N when a signal N ended it), None when the sandbox
    killed the command (timeout, output limit) or never started it (unavailable); ``error`` says why.
    """

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    error_kind: CommandErrorKind | None = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error_kind is None
