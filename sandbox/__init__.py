"""Running untrusted code: RestrictedPython policy and an OS layer around every worker process."""

from sandbox.host import Sandbox, SandboxError, confinement, hand_to_workers
from sandbox.policy import DEFAULT_MODULES, Policy
from sandbox.result import CommandResult, ErrorKind, RunResult

__all__ = [
    "DEFAULT_MODULES",
    "CommandResult",
    "ErrorKind",
    "Policy",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "confinement",
    "hand_to_workers",
]
