"""Running untrusted Python: RestrictedPython policy inside confined worker processes."""

from sandbox.host import Sandbox, SandboxError
from sandbox.policy import DEFAULT_MODULES, Policy
from sandbox.result import ErrorKind, RunResult

__all__ = ["DEFAULT_MODULES", "ErrorKind", "Policy", "RunResult", "Sandbox", "SandboxError"]
