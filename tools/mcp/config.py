"""The standard MCP servers file: ``{"mcpServers": {"NAME": {"command", "args", "env"} | {"url"}}}``.

Each entry may also say ``"approval": "ask"`` (the default: every call of the server's tools asks the
user first) or ``"allow"`` (its calls run without asking), and ``"timeout"`` (seconds a call may take).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPROVALS = ("ask", "allow")
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KNOWN_KEYS = {
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "type",
    "transport",
    "approval",
    "timeout",
    "disabled",
    "description",
}
HTTP_TYPES = ("http", "streamable-http", "streamable_http", "streamableHttp")


class McpConfigError(ValueError):
    """A servers file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ServerSpec:
    """One MCP server: started as ``command args`` (stdio) or reached at ``url`` (streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, compare=False)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, compare=False)
    approval: str = "ask"
    timeout: float = 120.0
    origin: str = ""  # the file it came from, for messages

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def describe(self) -> str:
        """What starts or reaches it, for a user deciding whether to trust it."""
        if self.url:
            return self.url
        return " ".join([self.command or "", *self.args]).strip()


def read_servers(path: str | Path) -> list[ServerSpec]:
    """The servers declared in the file at ``path`` (disabled ones left out), in file order."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise McpConfigError(f"{path}: cannot read it ({error.strerror or error})") from error
    return parse_servers(text, str(path))


def parse_servers(text: str, origin: str) -> list[ServerSpec]:
    """The servers declared in ``text`` (the contents of ``origin``)."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise McpConfigError(f"{origin}: not valid JSON ({error})") from error
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(f'{origin}: expected an object with "mcpServers": {{"NAME": {{"command": ...}}}}')
    specs = [_server(name, entry, origin) for name, entry in servers.items()]
    return [spec for spec in specs if spec is not None]


def _server(name: str, entry: Any, origin: str) -> ServerSpec | None:
    where = f"{origin}: server {name!r}"
    if not SERVER_NAME.match(name):
        raise McpConfigError(f"{where}: a server name may hold only letters, digits, '_' and '-' (64 at most)")
    if not isinstance(entry, dict):
        raise McpConfigError(f'{where}: expected an object with "command" (and "args", "env") or "url"')
    unknown = sorted(set(entry) - KNOWN_KEYS)
    if unknown:
        raise McpConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}")
    if entry.get("disabled") is True:
        return None
    command, url = entry.get("command"), entry.get("url")
    if bool(command) == bool(url):
        raise McpConfigError(f'{where}: give either "command" (a program to start) or "url" (a streamable HTTP server)')
    kind = entry.get("type") or entry.get("transport")
    if url and kind not in (None, *HTTP_TYPES):
        raise McpConfigError(f"{where}: type {kind!r} is not supported for a url; only streamable HTTP ('http') is")
    return ServerSpec(
        name=name,
        command=_string(command, where, "command") if command else None,
        args=tuple(_strings(entry.get("args", []), where, "args")),
        env=_string_map(entry.get("env", {}), where, "env"),
        cwd=_string(entry["cwd"], where, "cwd") if entry.get("cwd") else None,
        url=_string(url, where, "url") if url else None,
        headers=_string_map(entry.get("headers", {}), where, "headers"),
        approval=_approval(entry.get("approval", "ask"), where),
        timeout=_timeout(entry.get("timeout", 120.0), where),
        origin=origin,
    )


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise McpConfigError(f'{where}: "{key}" must be a non-empty string, got {json.dumps(value)}')
    return value


def _strings(value: Any, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise McpConfigError(f'{where}: "{key}" must be a list of strings, got {json.dumps(value)}')
    return value


def _string_map(value: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise McpConfigError(f'{where}: "{key}" must be an object of string values, got {json.dumps(value)}')
    return dict(value)


def _approval(value: Any, where: str) -> str:
    if value not in APPROVALS:
        raise McpConfigError(f'{where}: "approval" must be "ask" or "allow", got {json.dumps(value)}')
    return value


def _timeout(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise McpConfigError(f'{where}: "timeout" must be a positive number of seconds, got {json.dumps(value)}')
    return float(value)
