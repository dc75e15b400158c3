"""Errors the server answers with: OpenAI's ``{"error": {message, type, param, code}}`` on its routes,
Anthropic's ``{"type": "error", "error": {type, message}}`` on ``/v1/messages``."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, the rest goes into the error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def anthropic_body(self) -> dict[str, Any]:
        kind = ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}


# Anthropic names its error types by HTTP status (https://docs.anthropic.com/en/api/errors).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unprocessable(message: str, param: str | None = None) -> APIError:
    return APIError(422, message, param=param, code="invalid_value")


def not_found(message: str, code: str = "not_found", param: str | None = None) -> APIError:
    return APIError(404, message, param=param, code=code)


def queue_full(waiting: int) -> APIError:
    return APIError(
        429,
        f"the server is busy: one generation is running and {waiting} request(s) are already waiting, "
        "which is the queue's limit; retry in a few seconds",
        type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": "2"},
    )


def too_large(length: int | None, limit: int) -> APIError:
    size = f"{length} bytes" if length is not None else f"over {limit} bytes"
    return APIError(413, f"the request body is {size}; this server accepts at most {limit}", code="request_too_large")


def body_timeout(seconds: float) -> APIError:
    return APIError(408, f"the request body did not arrive within {seconds:g} s", code="request_timeout")


def internal_error() -> APIError:
    return APIError(
        500, "the server failed on this request; see the server log", type="server_error", code="internal_error"
    )
