"""Running a validated tool call: its handler, given the workspace and (for sandboxed tools) the sandbox.

The agent loop and ``optiq tools call`` both run calls here, so a tool behaves the same in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.tool import Tool, ToolContext, ToolError


class ToolRunner:
    """Runs handlers; starts the sandbox the first time a sandboxed tool needs it (and owns it then)."""

    def __init__(self, workspace: Path, sandbox: Any = None):
        self.workspace = Path(workspace)
        self._sandbox = sandbox
        self._own_sandbox = sandbox is None

    def execute(self, tool: Tool, arguments: dict[str, Any]) -> tuple[str, bool]:
        """The handler's result and True, or the failure as text the model reads and False."""
        if tool.handler is None:
            return f"error: the tool {tool.name} has no handler", False
        context = ToolContext(workspace=self.workspace, sandbox=self._sandbox_for(tool))
        try:
            return str(tool.handler(arguments, context)), True
        except ToolError as error:
            return f"error: {error}", False
        except Exception as error:  # a tool's own bug (custom tools are user code) must not end the session
            return f"error: {tool.name} failed unexpectedly: {type(error).__name__}: {error}", False

    def _sandbox_for(self, tool: Tool) -> Any:
        if not tool.sandboxed:
            return self._sandbox
        if self._sandbox is None:
            from sandbox import Sandbox

            self._sandbox = Sandbox(workspace=self.workspace)
        return self._sandbox

    def close(self) -> None:
        """Stop the sandbox worker if this runner started it."""
        if self._own_sandbox and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
