"""The ASGI response of a generating request: wait for the model, generate, send JSON or Server-Sent Events.

While it runs it listens on the connection: a client that hangs up while queued leaves the queue,
and one that hangs up while its answer is generated stops the generation at the next step. What
is sent is shaped by a dialect (``response.OpenAIDialect``, ``anthropic_response.AnthropicDialect``);
every failure reaches the client in that dialect's error shape, as JSON before the answer has
started and as the stream's last event after.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from agent.serve.completion import Answering, Piece
from agent.serve.errors import APIError, bad_request, internal_error
from agent.serve.queue import ClientGone
from agent.serve.run import Hangup, Run
from agent.serve.schema import ChatRequest
from optiq_runtime.errors import OptiqError

log = logging.getLogger("optiq.serve")

CLIENT_LEFT = 499
SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


class Dialect(Protocol):
    def error_body(self, error: APIError) -> dict[str, Any]: ...
    def collector(self) -> Any: ...
    def whole(self, completion: Answering, collected: Any) -> tuple[dict[str, Any], dict[str, str]]: ...
    def stream_headers(self, completion: Answering) -> dict[str, str]: ...
    def opening(self, completion: Answering) -> list[bytes]: ...
    def piece(self, piece: Piece) -> list[bytes]: ...
    def closing(self, completion: Answering) -> list[bytes]: ...
    def stream_error(self, error: APIError) -> list[bytes]: ...


class SlowClient(Exception):
    """The client read nothing of its answer for the send timeout."""


def as_api_error(error: Exception) -> APIError:
    """What the client is told about ``error``: its own words for refusals, a plain 500 (logged) otherwise."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, OptiqError):  # the engine refused the input (written for a user to act on)
        return bad_request(str(error))
    log.error("optiq serve: a generation failed", exc_info=error)
    return internal_error()


def json_start(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[dict, dict]:
    """The two ASGI messages of a JSON answer."""
    data = json.dumps(body, ensure_ascii=False).encode()
    pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    pairs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http.response.start", "status": status, "headers": pairs}, {
        "type": "http.response.body",
        "body": data,
    }


class Answer:
    """Answers one checked request with ``service`` in ``dialect``'s shapes."""

    def __init__(self, service: Any, request: ChatRequest, dialect: Dialect):
        self.service = service
        self.request = request
        self.dialect = dialect
        self.send_timeout = service.config.send_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        hangup = Hangup()
        watcher = asyncio.create_task(_watch(receive, hangup))
        self._send = send
        try:
            await self._respond(hangup)
        except SlowClient:
            log.warning("optiq serve: dropped a client that read nothing for %g s", self.send_timeout)
        finally:
            watcher.cancel()
            hangup.halt()  # whatever ended this answer, the generation ends with it

    async def _respond(self, hangup: Hangup) -> None:
        try:
            run = await self.service.start(self.request, hangup)
        except ClientGone:
            return self._left()
        except Exception as error:  # noqa: BLE001 - the server's boundary: every failure becomes an answer
            return await self._fail(as_api_error(error))
        if self.request.stream:
            await self._stream(run)
        else:
            await self._whole(run, hangup)

    async def _whole(self, run: Run, hangup: Hangup) -> None:
        collected = self.dialect.collector()
        try:
            async for piece in run.pieces():
                collected.add(piece)
        except Exception as error:  # noqa: BLE001
            return await self._fail(as_api_error(error))
        if hangup.is_set():
            return self._left()  # nobody to answer
        body, headers = self.dialect.whole(run.completion, collected)
        for message in json_start(200, body, headers):
            await self._out(message)

    async def _stream(self, run: Run) -> None:
        headers = {**SSE_HEADERS, **self.dialect.stream_headers(run.completion)}
        pairs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await self._out({"type": "http.response.start", "status": 200, "headers": pairs})
        await self._events(self.dialect.opening(run.completion))
        try:
            async for piece in run.pieces():
                await self._events(self.dialect.piece(piece))
            ending = self.dialect.closing(run.completion)
        except Exception as error:  # noqa: BLE001 - headers are gone: the error is the stream's last event
            ending = self.dialect.stream_error(as_api_error(error))
        await self._events(ending)
        await self._out({"type": "http.response.body", "body": b"", "more_body": False})

    def _left(self) -> None:
        """Count a client that left before its answer began, as nginx does: 499, never sent."""
        self.service.metrics.answered(CLIENT_LEFT)

    async def _fail(self, error: APIError) -> None:
        for message in json_start(error.status, self.dialect.error_body(error), error.headers):
            await self._out(message)

    async def _events(self, events: list[bytes]) -> None:
        if events:
            await self._out({"type": "http.response.body", "body": b"".join(events), "more_body": True})

    async def _out(self, message: dict) -> None:
        try:
            await asyncio.wait_for(self._send(message), self.send_timeout)
        except TimeoutError:
            raise SlowClient() from None


async def _watch(receive, hangup: Hangup) -> None:
    """Set ``hangup`` when the client disconnects (the request body has been read already)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            hangup.set()
            return
