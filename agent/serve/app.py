"""The HTTP side: routes, the API key, request bodies under a size and time limit, error shapes (Starlette).

Routes: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` and
``/v1/messages/count_tokens`` (Anthropic), ``GET /v1/models[/ID]`` (both APIs' fields),
``GET /health`` (no key) and ``GET /metrics`` (Prometheus text). The key, when set, is accepted
as ``Authorization: Bearer KEY`` (OpenAI clients) or ``x-api-key: KEY`` (Anthropic clients).
Errors are Anthropic-shaped on ``/v1/messages`` and for clients that send ``anthropic-version``,
OpenAI-shaped elsewhere; never a stack trace.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agent.serve.answer import CLIENT_LEFT, Answer
from agent.serve.anthropic import parse_messages, to_chat_request
from agent.serve.anthropic_response import AnthropicDialect
from agent.serve.errors import APIError, body_timeout, internal_error, not_found, too_large
from agent.serve.response import OpenAIDialect
from agent.serve.service import Service
from optiq_runtime.errors import OptiqError

log = logging.getLogger("optiq.serve")


def create_app(service: Service):
    """The ASGI application serving ``service``, counting every API answer's status for ``/metrics``."""
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/v1/models/{name:path}", model, methods=["GET"]),
        Route("/models/{name:path}", model, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[..., Any]] = {
        APIError: _api_error,
        HTTPException: _http_error,
        OptiqError: _optiq_error,
        ClientDisconnect: _client_gone,
        Exception: _internal_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.service = service
    return counting_statuses(app, service)


UNCOUNTED = ("/health", "/metrics")  # the monitor's own requests would drown the clients' in the counts


def counting_statuses(app, service: Service):
    async def counted(scope, receive, send):
        if scope["type"] != "http" or scope["path"] in UNCOUNTED:
            return await app(scope, receive, send)

        async def send_counted(message):
            if message["type"] == "http.response.start":
                service.metrics.answered(message["status"])
            await send(message)

        await app(scope, receive, send_counted)

    return counted


# routes ------------------------------------------------------------------------------
async def health(request: Request) -> Response:
    return JSONResponse(_service(request).health())


async def metrics(request: Request) -> Response:
    service = authorized(request)
    return PlainTextResponse(service.render_metrics(), media_type="text/plain; version=0.0.4")


async def models(request: Request) -> Response:
    return JSONResponse(authorized(request).models())


async def model(request: Request) -> Response:
    service = authorized(request)
    name = request.path_params["name"]
    if name != service.model_id:
        raise not_found(
            f"the model {name!r} does not exist here; this server serves {service.model_id!r}", "model_not_found"
        )
    return JSONResponse(service.model_card())


async def chat(request: Request) -> Answer:
    service = authorized(request)
    checked = service.parse(await read_body(request, service))
    return Answer(service, checked, OpenAIDialect(service.model_id, checked))


async def messages(request: Request) -> Answer:
    service = authorized(request)
    parsed = parse_messages(await read_body(request, service))
    service.check_model(parsed.model)
    checked = to_chat_request(parsed, service.context_length)
    return Answer(service, checked, AnthropicDialect(service.model_id))


async def count_tokens(request: Request) -> Response:
    service = authorized(request)
    parsed = parse_messages(await read_body(request, service), counting=True)
    service.check_model(parsed.model)
    return JSONResponse({"input_tokens": await service.count_tokens(to_chat_request(parsed, service.context_length))})


# requests ----------------------------------------------------------------------------
def _service(request: Request) -> Service:
    return request.app.state.service


def authorized(request: Request) -> Service:
    """The service, once the request carries the key (when one is set)."""
    service = _service(request)
    key = service.config.api_key
    if key is None:
        return service
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    offered = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")
    if not hmac.compare_digest(offered.encode(), key.encode()):
        raise APIError(
            401,
            "missing or wrong API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY' with the key given to --api-key",
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return service


async def read_body(request: Request, service: Service) -> bytes:
    """The body, refused with 413 beyond the size limit (before reading, when its length is declared) and 408 when it stalls."""
    limit, seconds = service.config.max_request_bytes, service.config.body_timeout_s
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(None, limit)
                chunks.append(chunk)
    except TimeoutError:
        raise body_timeout(seconds) from None
    return b"".join(chunks)


# errors ------------------------------------------------------------------------------
def _anthropic(request: Request) -> bool:
    return request.url.path.startswith("/v1/messages") or "anthropic-version" in request.headers


def error_response(request: Request, error: APIError) -> Response:
    body = error.anthropic_body() if _anthropic(request) else error.body()
    headers = dict(error.headers)
    if error.status in (408, 413):
        headers["connection"] = "close"  # the rest of the body is not read
    return JSONResponse(body, status_code=error.status, headers=headers)


async def _api_error(request: Request, error: APIError) -> Response:
    return error_response(request, error)


async def _optiq_error(request: Request, error: OptiqError) -> Response:
    return error_response(request, APIError(400, str(error)))


async def _http_error(request: Request, error: HTTPException) -> Response:
    if error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(request, APIError(405, message, code="method_not_allowed"))
    if error.status_code != 404:
        return error_response(request, APIError(error.status_code, str(error.detail)))
    message = (
        f"no route {request.method} {request.url.path}; this server answers POST /v1/chat/completions, "
        "POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models, GET /health, GET /metrics"
    )
    return error_response(request, not_found(message))


async def _client_gone(request: Request, error: ClientDisconnect) -> Response:
    return Response(status_code=CLIENT_LEFT)  # nobody reads it; counted in /metrics as the client's leaving


async def _internal_error(request: Request, error: Exception) -> Response:
    log.error("optiq serve: request %s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(request, internal_error())
