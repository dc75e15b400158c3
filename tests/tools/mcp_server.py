"""A small real MCP server (the ``mcp`` SDK's MCPServer, formerly FastMCP) for the tests and the benchmark.

Run as ``python mcp_server.py [stdio|http PORT]``. Tools: ``add``, ``echo``, ``fail`` (an ``isError``
result), ``read_file`` (collides with the built-in of that name), ``record`` (appends to a file: a
call leaves a trace), ``die`` (the process exits mid-call), ``state`` (how many calls this process
has answered, and its pid: one process per session).
"""

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("optiq-test")
calls = 0


def _count() -> None:
    global calls
    calls += 1


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    _count()
    return str(a + b)


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    _count()
    return text


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the given reason."""
    _count()
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
def read_file(path: str) -> str:
    """A tool whose name collides with the agent's built-in read_file."""
    _count()
    return f"mcp read_file {path}"


@server.tool()
def record(path: str, text: str) -> str:
    """Append a line of text to the file at path (so a test can tell whether a call happened)."""
    _count()
    with open(path, "a", encoding="utf-8") as file:
        file.write(text + "\n")
    return f"recorded {text}"


@server.tool()
def die() -> str:
    """Exit the server process without answering."""
    os._exit(3)


@server.tool()
def state() -> str:
    """How many calls this process has answered, and its process id."""
    _count()
    return f"calls={calls} pid={os.getpid()}"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
