"""The tools a session offers: the built-ins, a ``--tools`` file's, and its MCP servers'.

``plan_tools`` reads every file (bad input fails here, before a model loads or a process starts);
``SessionTools.start`` then starts the MCP servers and adds their tools; ``close`` stops them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.custom_tools import load_tools
from agent.mcp_files import session_servers
from optiq_runtime.errors import BadInputError
from tools.mcp import McpHub, ServerSpec, hub_tools
from tools.registry import Registry

Report = Callable[[str], None]


def report_to_stderr(line: str) -> None:
    """One line per MCP server problem, on stderr (headless commands)."""
    print(f"optiq: {line}", file=sys.stderr, flush=True)


@dataclass
class SessionTools:
    """A registry and the MCP servers behind some of its tools; ``close`` stops the servers."""

    registry: Registry
    servers: list[ServerSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hub: McpHub | None = None

    def start(self, report: Report = report_to_stderr) -> SessionTools:
        """Start the MCP servers and add their tools; a server that fails is one ``report`` line, the rest go on."""
        for note in self.notes:
            report(note)
        if self.servers and self.hub is None:
            self.hub = McpHub(on_problem=report)
            started = self.hub.start(self.servers)
            for tool in hub_tools(started, self.hub, self.registry.names(), report):
                self.registry.add(tool)
        return self

    @property
    def problems(self) -> list[str]:
        return list(self.hub.problems) if self.hub else []

    def close(self) -> None:
        if self.hub is not None:
            self.hub.close()

    def __enter__(self) -> SessionTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plan_tools(
    tools_file: str | None = None, mcp_files: list[str] | None = None, workspace: Path | None = None
) -> SessionTools:
    """The built-in and ``--tools`` tools, and the MCP servers to start (user default, approved workspace file, ``--mcp``)."""
    servers, notes = session_servers(mcp_files, workspace)
    return SessionTools(agent_registry(tools_file), servers, notes)


def agent_registry(tools_file: str | None = None) -> Registry:
    """The built-in tools, plus the tools declared in ``tools_file`` (source ``custom``)."""
    from tools.builtin import builtin_tools

    registry = Registry(builtin_tools())
    for tool in load_tools(tools_file) if tools_file else []:
        try:
            registry.add(replace(tool, source="custom"))
        except ValueError as error:
            raise BadInputError(f"--tools {tools_file}: {error}") from error
    return registry
