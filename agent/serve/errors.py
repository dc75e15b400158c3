"""Errors the server answers with, as OpenAI-style error objects: ``{"error": {message, type, param, code}}``."""

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


def internal_error() -> APIError:
    return APIError(500, "the server failed on this request; see the server log", type="server_error", code="internal_error")
