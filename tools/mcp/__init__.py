"""MCP servers' tools: the servers file, the client sessions (``McpHub``), and their tools as ``Tool``s."""

from tools.mcp.config import McpConfigError, ServerSpec, parse_servers, read_servers
from tools.mcp.hub import McpCallError, McpHub, ServerTools
from tools.mcp.tools import hub_tools, result_text

__all__ = [
    "McpConfigError",
    "ServerSpec",
    "parse_servers",
    "read_servers",
    "McpHub",
    "McpCallError",
    "ServerTools",
    "hub_tools",
    "result_text",
]
