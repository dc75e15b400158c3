"""The HTTP side: routes, auth, body limits, JSON and Server-Sent Events, on the standard library's server.

Each connection gets a thread (``ThreadingHTTPServer``); generations take turns through the
service's queue. Every failure reaches the client as an OpenAI-style error object, never a stack
trace, and the server goes on serving.
"""

from __future__ import annotations

import hmac
import json
import logging
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.serve.errors import APIError, bad_request, internal_error, not_found
from agent.serve.queue import ClientGone
from agent.serve.response import ChunkMaker, MessageBuilder, completion_body, completion_id, engine_headers
from agent.serve.service import ServeConfig, Service
from optiq_runtime.errors import OptiqError

log = logging.getLogger("optiq.serve")

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODELS_PATHS = ("/v1/models", "/models")


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, streamed answers in chunked transfer encoding."""

    protocol_version = "HTTP/1.1"
    server_version = "optiq-serve"
    timeout = 120  # seconds a socket may sit idle (a stalled client does not hold a thread forever)

    @property
    def service(self) -> Service:
        return self.server.service  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    # routing -------------------------------------------------------------------------
    def _dispatch(self, route) -> None:
        self._streaming = False
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            route(path)
        except APIError as error:
            self._fail(error)
        except OptiqError as error:  # the engine refused the input (written for a user to act on)
            self._fail(bad_request(str(error)))
        except ClientGone:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client left mid-answer; its generation has stopped
        except Exception:  # noqa: BLE001 - the server's boundary: log it, answer 500, keep serving
            log.exception("optiq serve: request %s %s failed", self.command, path)
            self._fail(internal_error())

    def _get(self, path: str) -> None:
        if path == "/health":
            return self._json(200, self.service.health())
        self._authorize(path)
        if path in MODELS_PATHS:
            return self._json(200, self.service.models())
        for prefix in MODELS_PATHS:
            if path.startswith(prefix + "/"):
                return self._model(path[len(prefix) + 1:])
        raise _no_route(self.command, path)

    def _post(self, path: str) -> None:
        self._authorize(path)
        if path not in CHAT_PATHS:
            self._drain()
            raise _no_route(self.command, path)
        self._chat(self._body())

    def _model(self, name: str) -> None:
        if name != self.service.model_id:
            raise not_found(f"the model {name!r} does not exist here; this server serves {self.service.model_id!r}", "model_not_found")
        self._json(200, self.service.model_card())

    # chat ----------------------------------------------------------------------------
    def _chat(self, body: bytes) -> None:
        service = self.service
        request = service.parse(body)
        ignored = request.ignored_fields()
        extra = {"x-optiq-ignored-fields": ",".join(ignored)} if ignored else {}
        with service.queue.slot(gone=self._client_gone):
            completion = service.completion(request)
            if request.stream:
                self._stream(request, completion, extra)
            else:
                self._complete(completion, extra)
            service.remember(completion)

    def _complete(self, completion, headers: dict[str, str]) -> None:
        builder = MessageBuilder()
        pieces = completion.pieces(should_stop=self._client_gone)
        try:
            for piece in pieces:
                builder.add(piece)
        finally:
            pieces.close()
        if completion.outcome.stats.finish_reason == "interrupted":
            raise ClientGone()
        body = completion_body(completion_id(), self.service.model_id, completion, builder)
        headers = {**headers, **engine_headers(completion), "x-optiq-tool-call-errors": str(len(builder.errors))}
        self._json(200, body, headers)

    def _stream(self, request, completion, headers: dict[str, str]) -> None:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        maker = ChunkMaker(completion_id(), self.service.model_id, include_usage)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-optiq-mtp", "on" if self.service.engine.mtp_enabled else "off")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self._streaming = True
        self._event(maker.first())
        pieces = completion.pieces(should_stop=self._client_gone)
        try:
            for piece in pieces:
                self._event(maker.piece(piece))
        finally:
            pieces.close()
        for chunk in maker.last(completion):
            self._event(chunk)
        self._end_stream()

    # HTTP plumbing -------------------------------------------------------------------
    def _authorize(self, path: str) -> None:
        key = self.service.config.api_key
        if key is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            self._drain()
            raise APIError(
                401, "missing or wrong API key: send 'Authorization: Bearer KEY' with the key given to --api-key",
                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"},
            )

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise APIError(411, "send the request body with a Content-Length header (chunked bodies are not accepted)", code="length_required")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise APIError(400, "the Content-Length header is not a number", code="invalid_header") from None
        limit = self.service.config.max_request_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise APIError(413, f"the request body is {length} bytes; this server accepts at most {limit}", code="request_too_large")
        return self.rfile.read(length) if length > 0 else b""

    def _drain(self) -> None:
        """Read and drop a body we will not use, so the connection stays usable."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if 0 < length <= self.service.config.max_request_bytes:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Whether the client closed its side of the connection (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, error: APIError) -> None:
        try:
            if self._streaming:  # headers are gone: the error becomes the stream's last event
                self._event(error.body())
                self._end_stream()
            else:
                self._json(error.status, error.body(), error.headers)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _event(self, body: dict[str, Any]) -> None:
        self._write_chunk(f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode())

    def _end_stream(self) -> None:
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self._streaming = False

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _no_route(method: str, path: str) -> APIError:
    return not_found(f"no route {method} {path}; this server answers POST /v1/chat/completions, GET /v1/models, GET /health")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, service: Service):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        super().__init__(address, Handler)


class Server:
    """An OpenAI-compatible server for one engine; ``start()`` runs it in a thread, ``serve_forever()`` in this one."""

    def __init__(self, engine: Any, config: ServeConfig | None = None, tools: Any = None):
        self.config = config or ServeConfig()
        self.service = Service(engine, self.config, tools)
        self._httpd = _HTTPServer((self.config.host, self.config.port), self.service)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.5)

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.serve_forever, name="optiq-serve", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (if ``start`` ran it) and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
