"""An MCP server's tools as agent ``Tool``s: named without collisions, checked schemas, results as text.

Naming: a tool keeps its own name when that name is free and fits the tool-name alphabet
(letters, digits, ``_``, ``-``; 64 at most); otherwise it is called ``SERVER__NAME`` (other
characters replaced by ``_``). A tool whose name is still taken, or whose input schema is not a
valid JSON Schema object, is left out with one line saying so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from tools.mcp.config import ServerSpec
from tools.mcp.hub import McpCallError, McpHub, ServerTools
from tools.tool import Tool, ToolContext, ToolError

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def hub_tools(
    servers: Iterable[ServerTools], hub: McpHub, taken: Iterable[str], report: Callable[[str], None]
) -> list[Tool]:
    """Every listed tool of ``servers`` as a ``Tool`` whose handler calls it through ``hub``."""
    names, tools = set(taken), []
    for server in servers:
        for listed in server.tools:
            tool = _tool(server.spec, listed, hub, names, report)
            if tool is not None:
                names.add(tool.name)
                tools.append(tool)
    return tools


def _tool(spec: ServerSpec, listed: Any, hub: McpHub, taken: set[str], report: Callable[[str], None]) -> Tool | None:
    name = agent_name(spec.name, listed.name, taken)
    if name is None:
        report(
            f"MCP server {spec.name!r}: tool {listed.name!r} left out: its name and {spec.name}__{listed.name} are both taken"
        )
        return None
    problem = schema_problem(listed.input_schema)
    if problem:
        report(f"MCP server {spec.name!r}: tool {listed.name!r} left out: its input schema {problem}")
        return None
    return Tool(
        name=name,
        description=listed.description or listed.title or listed.name,
        parameters=_untitled(listed.input_schema),
        handler=_handler(hub, spec.name, listed.name),
        side_effects=spec.approval == "ask",
        source=f"mcp:{spec.name}",
    )


def agent_name(server: str, tool: str, taken: set[str]) -> str | None:
    """The name the model sees: the tool's own when free and valid, else ``SERVER__TOOL``; None when both are taken."""
    if TOOL_NAME.match(tool) and tool not in taken:
        return tool
    prefixed = re.sub(r"[^A-Za-z0-9_-]", "_", f"{server}__{tool}")[:64]
    return None if prefixed in taken else prefixed


def schema_problem(schema: Any) -> str:
    """Why ``schema`` cannot check a call's arguments, or ``""``."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return "is not an object schema"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return f"is invalid: {error.message}"
    return ""


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without the titles SDKs generate from parameter names: they only add prompt tokens."""
    schema = {key: value for key, value in schema.items() if key != "title"}
    properties = schema.get("properties")
    if isinstance(properties, dict):
        schema["properties"] = {
            name: ({k: v for k, v in prop.items() if k != "title"} if isinstance(prop, dict) else prop)
            for name, prop in properties.items()
        }
    return schema


def _handler(hub: McpHub, server: str, tool: str) -> Callable[[dict[str, Any], ToolContext], str]:
    def call(arguments: dict[str, Any], context: ToolContext) -> str:
        try:
            result = hub.call(server, tool, arguments)
        except McpCallError as error:
            raise ToolError(str(error)) from None
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"{tool} failed (the MCP server {server!r} gave no message)")
        return text

    return call


def result_text(result: Any) -> str:
    """A ``CallToolResult``'s content as the text the model reads (structured content when there is nothing else)."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return f"[{kind} {block.mime_type}, {len(block.data) * 3 // 4} bytes, not shown]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return (
            text
            if text is not None
            else f"[resource {resource.uri}, {getattr(resource, 'mime_type', None) or 'binary'}, not shown]"
        )
    if kind == "resource_link":
        return f"[resource link: {block.uri}]"
    return f"[{kind or type(block).__name__} content, not shown]"
