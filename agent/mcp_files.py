"""Which MCP servers files a session uses, and the user's approval of a workspace's own file.

The files, later ones overriding a server of the same name:
1. the user's default, ``$XDG_CONFIG_HOME/optiq/mcp.json`` (else ``~/.config/optiq/mcp.json``), when it exists;
2. the workspace's ``.mcp.json``, only once the user has approved it in the TUI. It starts programs,
   and a workspace may come from anyone, so the approval is remembered by the file's SHA-256 in
   ``approved-mcp.json`` beside the default file: a changed file asks again;
3. every ``--mcp FILE`` (the user named it, so it needs no approval).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from optiq_runtime.errors import BadInputError
from tools.mcp.config import McpConfigError, ServerSpec, parse_servers, read_servers

WORKSPACE_FILE = ".mcp.json"


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/optiq``, else ``~/.config/optiq``."""
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / "optiq"


def user_file() -> Path:
    return config_dir() / "mcp.json"


def approvals_file() -> Path:
    return config_dir() / "approved-mcp.json"


@dataclass(frozen=True)
class WorkspaceServers:
    """A workspace's ``.mcp.json`` and what it would start; ``approved`` when the user has said yes to this content."""

    path: Path
    digest: str
    servers: tuple[ServerSpec, ...]

    @property
    def approved(self) -> bool:
        return _approvals().get(str(self.path)) == self.digest

    def approve(self) -> None:
        """Remember that the user trusts this file as it is now."""
        approvals = _approvals()
        approvals[str(self.path)] = self.digest
        target = approvals_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(approvals, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        partial.replace(target)

    def question(self) -> str:
        """What the user reads before deciding."""
        lines = [
            f"{self.path} declares MCP servers. Using them starts these programs (or reaches these URLs)",
            "with your own rights, outside the sandbox:",
            "",
        ]
        lines += [f"  {spec.name}: {spec.describe()}  (calls: {spec.approval})" for spec in self.servers]
        return "\n".join(lines)


def workspace_servers(workspace: Path) -> WorkspaceServers | None:
    """The workspace's ``.mcp.json`` when it has one (a broken file is bad input, said before anything starts)."""
    path = (Path(workspace) / WORKSPACE_FILE).resolve()
    if not path.is_file():
        return None
    data = path.read_bytes()
    servers = _parse(data.decode("utf-8", errors="replace"), str(path))
    return WorkspaceServers(path, hashlib.sha256(data).hexdigest(), tuple(servers))


def session_servers(mcp_files: list[str] | None, workspace: Path | None) -> tuple[list[ServerSpec], list[str]]:
    """The servers a session starts, and notes for the user (a workspace file skipped until approved)."""
    chosen: dict[str, ServerSpec] = {}
    notes: list[str] = []
    if user_file().is_file():
        _merge(chosen, _read(user_file()))
    pending = workspace_servers(workspace) if workspace is not None else None
    if pending is not None and pending.approved:
        _merge(chosen, list(pending.servers))
    elif pending is not None and pending.servers:
        notes.append(
            f"{pending.path} is not used: its MCP servers start programs, so approve it first "
            "by opening optiq (the TUI) in this workspace, or pass it as --mcp FILE"
        )
    _merge(chosen, read_files(mcp_files or []))
    return list(chosen.values()), notes


def read_files(paths: list[str]) -> list[ServerSpec]:
    """The servers of ``--mcp`` files, a later file's entry replacing an earlier one of the same name."""
    chosen: dict[str, ServerSpec] = {}
    for path in paths:
        _merge(chosen, _read(Path(path)))
    return list(chosen.values())


def _merge(chosen: dict[str, ServerSpec], servers: list[ServerSpec]) -> None:
    for spec in servers:
        chosen.pop(spec.name, None)  # a later file's entry replaces an earlier one and takes its place
        chosen[spec.name] = spec


def _read(path: Path) -> list[ServerSpec]:
    if not path.expanduser().is_file():
        raise BadInputError(f'--mcp: {path} is not a file; give a JSON file with "mcpServers"')
    try:
        return read_servers(path)
    except McpConfigError as error:
        raise BadInputError(f"MCP servers file {error}") from error


def _parse(text: str, origin: str) -> list[ServerSpec]:
    try:
        return parse_servers(text, origin)
    except McpConfigError as error:
        raise BadInputError(f"MCP servers file {error}") from error


def _approvals() -> dict[str, str]:
    try:
        data = json.loads(approvals_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
