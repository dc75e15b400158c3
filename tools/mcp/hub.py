"""MCP client sessions on one asyncio loop in a background thread, called from synchronous code.

The agent loop is synchronous (it runs in a model thread), while the ``mcp`` SDK is async and an
SDK session must be entered and left in one task. So each server gets one long-lived task on the
hub's loop that opens its transport and session, lists its tools, and holds them open until
``close``; tool calls are coroutines sent to that loop from the caller's thread.

A server that fails to start, or stops answering later, is one line in ``problems`` (and passed
to ``on_problem``); the other servers go on.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.mcp.config import ServerSpec

START_TIMEOUT = 60.0  # seconds for a server to start, initialize and list its tools
STOP_TIMEOUT = 10.0  # seconds for every server to shut down (the SDK terminates, then kills, each process)


class McpCallError(Exception):
    """A call that could not be made or answered (the server is gone, timed out, refused the request)."""


@dataclass
class ServerTools:
    """A started server and the tools it listed (``mcp.types.Tool``)."""

    spec: ServerSpec
    tools: list[Any] = field(default_factory=list)


class _Connection:
    """One server's transport and session, held open by one task on the hub's loop."""

    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self.session: Any = None
        self.gone: str = ""  # why the server can no longer be called
        self.stop = asyncio.Event()
        self.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") if spec.command else None

    async def hold(self, ready: asyncio.Future, on_gone: Callable[[str], None]) -> None:
        """Open, list the tools into ``ready``, stay open until ``stop``; say so if the server goes first."""
        from mcp import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(await self._transport(stack))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                tools = await _list_tools(session)
                self.session = session
                ready.set_result(tools)
                await self.stop.wait()
        except asyncio.CancelledError:
            ready.cancel()  # a no-op once the tools were listed
            raise
        except Exception as error:  # noqa: BLE001 - any failure of a server is reported, never raised into the agent
            self._failed(ready, error, on_gone)
        finally:
            self.session = None
            if self.stderr is not None:
                self.stderr.close()

    def _failed(self, ready: asyncio.Future, error: Exception, on_gone: Callable[[str], None]) -> None:
        reason = self._explain(error)
        if not ready.done():
            ready.set_exception(McpCallError(reason))
        elif not self.stop.is_set():
            self.gone = f"stopped: {reason}"
            on_gone(f"MCP server {self.spec.name!r} stopped: {reason}")

    async def _transport(self, stack: contextlib.AsyncExitStack):
        if self.spec.url:
            from mcp.client.streamable_http import streamable_http_client

            client = await stack.enter_async_context(_http_client(self.spec)) if self.spec.headers else None
            return streamable_http_client(self.spec.url, http_client=client)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        if self.spec.command is None or self.stderr is None:  # the config requires a url or a command
            raise McpCallError(f"MCP server {self.spec.name!r} has neither a url nor a command")
        parameters = StdioServerParameters(
            command=self.spec.command, args=list(self.spec.args), env=self.spec.env or None, cwd=self.spec.cwd
        )
        return stdio_client(parameters, errlog=self.stderr)

    def _explain(self, error: BaseException) -> str:
        """One line: the innermost error, and the server's last stderr line."""
        reason = _innermost(error)
        last = self.last_stderr_line()
        return f"{reason} (stderr: {last})" if last else reason

    def last_stderr_line(self) -> str:
        if self.stderr is None or self.stderr.closed:
            return ""
        self.stderr.flush()
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""


def _innermost(error: BaseException) -> str:
    """The first innermost error of an exception group (or the error itself), on one line."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    message = getattr(error, "message", None) if isinstance(getattr(error, "message", None), str) else None
    text = (message or str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _connection_lost(error: BaseException) -> bool:
    """Whether the session is over (the process exited, the stream closed), rather than one call failing."""
    from mcp import types
    from mcp.shared.exceptions import MCPError

    if isinstance(error, MCPError):
        return error.code == types.CONNECTION_CLOSED
    return isinstance(error, (OSError, EOFError)) or type(error).__name__ in (
        "ClosedResourceError",
        "BrokenResourceError",
        "EndOfStream",
    )


def _http_client(spec: ServerSpec) -> Any:
    """An HTTP client sending the entry's headers (the hub closes it with the session)."""
    from mcp.shared._httpx_utils import create_mcp_http_client

    return create_mcp_http_client(headers=spec.headers)


async def _list_tools(session: Any) -> list[Any]:
    """Every page of the server's tools."""
    from mcp import types

    tools: list[Any] = []
    cursor = None
    while True:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await session.list_tools(params=params)
        tools += result.tools
        cursor = result.next_cursor
        if not cursor:
            return tools


class McpHub:
    """The MCP servers of one session: started together, called from any thread, stopped together."""

    def __init__(self, on_problem: Callable[[str], None] | None = None, start_timeout: float = START_TIMEOUT):
        self.problems: list[str] = []
        self._on_problem = on_problem
        self._start_timeout = start_timeout
        self._connections: dict[str, _Connection] = {}
        self._tasks: list[asyncio.Task] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="optiq-mcp", daemon=True)
        self._thread.start()
        self._closed = False
        atexit.register(self.close)  # an owner that forgot close() still leaves no server process behind

    def start(self, specs: list[ServerSpec]) -> list[ServerTools]:
        """Start every server at once; those that fail are left out and reported in ``problems``."""
        started = asyncio.run_coroutine_threadsafe(self._start_all(specs), self._loop).result()
        for spec, outcome in zip(specs, started):
            if isinstance(outcome, BaseException):
                self._report(f"MCP server {spec.name!r} failed to start: {outcome}")
        return [
            ServerTools(spec, outcome)
            for spec, outcome in zip(specs, started)
            if not isinstance(outcome, BaseException)
        ]

    async def _start_all(self, specs: list[ServerSpec]) -> list[Any]:
        return await asyncio.gather(*(self._start_one(spec) for spec in specs), return_exceptions=True)

    async def _start_one(self, spec: ServerSpec) -> list[Any]:
        connection = _Connection(spec)
        self._connections[spec.name] = connection
        ready = self._loop.create_future()
        task = self._loop.create_task(connection.hold(ready, self._report))
        self._tasks.append(task)
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self._start_timeout)
        except TimeoutError:
            task.cancel()  # the SDK's transport still stops the process on its way out
            raise McpCallError(f"no answer within {self._start_timeout:g} s") from None

    def call(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        """Call ``tool`` on ``server`` and wait for its ``CallToolResult``; ``McpCallError`` when it cannot answer."""
        connection = self._connections.get(server)
        if connection is None or connection.session is None or connection.gone:
            reason = connection.gone if connection and connection.gone else "is not running"
            raise McpCallError(f"the MCP server {server!r} {reason}")
        future = asyncio.run_coroutine_threadsafe(self._call(connection, tool, arguments), self._loop)
        return future.result()

    async def _call(self, connection: _Connection, tool: str, arguments: dict[str, Any]) -> Any:
        try:
            return await connection.session.call_tool(tool, arguments, read_timeout_seconds=connection.spec.timeout)
        except Exception as error:  # noqa: BLE001 - the SDK raises its own errors and transport errors alike
            reason = _innermost(error)
            if _connection_lost(error) and not connection.gone:
                connection.gone = f"stopped ({reason}); its tools are unavailable for the rest of the session"
                self._report(f"MCP server {connection.spec.name!r} stopped: {reason}")
            raise McpCallError(f"the MCP server {connection.spec.name!r} did not answer: {reason}") from None

    def _report(self, line: str) -> None:
        self.problems.append(line)
        if self._on_problem is not None:
            self._on_problem(line)

    def close(self) -> None:
        """Stop every server (their processes end with them) and the loop's thread."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._tasks:
            asyncio.run_coroutine_threadsafe(self._stop_all(), self._loop).result(STOP_TIMEOUT + 5)
        asyncio.run_coroutine_threadsafe(self._loop.shutdown_asyncgens(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _stop_all(self) -> None:
        for connection in self._connections.values():
            connection.stop.set()
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    def __enter__(self) -> McpHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
