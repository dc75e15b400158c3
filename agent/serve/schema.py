"""The chat completions request as this server reads it: OpenAI's fields, strictly typed.

Known fields are checked strictly (a string where a number belongs is an error, not coerced);
fields this server does not know are accepted and ignored, as OpenAI-compatible servers do, and
named back to the client in the ``x-optiq-ignored-fields`` header.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.serve.errors import APIError, bad_request, unprocessable

_STRICT = ConfigDict(strict=True, extra="allow")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_STOPS = 4


class FunctionCall(BaseModel):
    model_config = _STRICT
    name: str
    arguments: str = "{}"


class ToolCallIn(BaseModel):
    """A tool call of an earlier assistant turn, as the client sends it back."""

    model_config = _STRICT
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(BaseModel):
    model_config = _STRICT
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    def text(self) -> str:
        """The content as one string (text parts joined)."""
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content or ""


class FunctionSpec(BaseModel):
    model_config = _STRICT
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(BaseModel):
    model_config = _STRICT
    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(BaseModel):
    model_config = _STRICT
    name: str


class NamedToolChoice(BaseModel):
    model_config = _STRICT
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; ``chat_template_kwargs`` (vLLM's extension) can turn thinking on."""

    model_config = _STRICT
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    chat_template_kwargs: dict[str, Any] | None = None

    @property
    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def enable_thinking(self) -> bool:
        return bool((self.chat_template_kwargs or {}).get("enable_thinking", False))

    def tool_dicts(self) -> list[dict[str, Any]] | None:
        """The tools as OpenAI dicts, in the form the chat template takes."""
        if not self.tools:
            return None
        return [tool.model_dump(exclude_none=True, exclude={"function": {"strict"}}) for tool in self.tools]

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


def parse_request(body: bytes) -> ChatRequest:
    """The request in ``body``, checked; raises ``APIError`` (400 bad JSON, 422 bad fields, 400 bad tools)."""
    data = read_json_object(body)
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as error:
        raise field_error(error) from None
    check_request(request)
    return request


def read_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; raises 400 when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object; got {type(data).__name__}", code="invalid_json")
    return data


def check_request(request: ChatRequest, max_stops: int | None = MAX_STOPS) -> None:
    """What field types cannot say: message roles and their fields, tool schemas and names, the number of stops."""
    _check_messages(request)
    _check_tools(request)
    if max_stops is not None and len(request.stops) > max_stops:
        raise unprocessable(f"'stop' takes at most {max_stops} sequences; got {len(request.stops)}", "stop")


def field_error(error: ValidationError, status: int = 422) -> APIError:
    """The first problem pydantic found, as an error naming the field, what it expects and what came."""
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    got = json.dumps(first.get("input"), default=str)[:80]
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    return APIError(
        status, f"{param or 'the request'}: {first['msg']}; got {got}{more}", param=param, code="invalid_value"
    )


def _check_messages(request: ChatRequest) -> None:
    for index, message in enumerate(request.messages):
        where = f"messages.{index}"
        if isinstance(message.content, list):
            kinds = {part.type for part in message.content} - {"text"}
            if kinds:
                raise unprocessable(
                    f"{where}.content: only text parts are supported; got {sorted(kinds)}", f"{where}.content"
                )
        if message.tool_calls and message.role != "assistant":
            raise unprocessable(
                f"{where}: only assistant messages carry tool_calls; this one is {message.role!r}",
                f"{where}.tool_calls",
            )
        if message.role == "tool" and not message.tool_call_id:
            raise unprocessable(
                f"{where}: a tool message needs the 'tool_call_id' of the call it answers", f"{where}.tool_call_id"
            )
        for number, call in enumerate(message.tool_calls or []):
            arguments_object(call.function.arguments, f"{where}.tool_calls.{number}.function.arguments")


def arguments_object(text: str, param: str) -> dict[str, Any]:
    """A tool call's JSON ``arguments`` string as a dict; raises 400 when it is not a JSON object."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise bad_request(
            f"{param}: not valid JSON ({error}); send the arguments as a JSON object string", param
        ) from None
    if not isinstance(value, dict):
        raise bad_request(f"{param}: the arguments must be a JSON object; got {type(value).__name__}", param)
    return value


def _check_tools(request: ChatRequest) -> None:
    names = []
    for index, tool in enumerate(request.tools or []):
        where = f"tools.{index}.function"
        name = tool.function.name
        if not _TOOL_NAME.match(name):
            raise bad_request(
                f"{where}.name: {name!r} is not a valid function name (letters, digits, _ . -, at most 64)",
                f"{where}.name",
            )
        names.append(name)
        _check_schema(tool.function.parameters, f"{where}.parameters")
    if len(set(names)) != len(names):
        raise bad_request(f"tools: each function name must be unique; got {names}", "tools")
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        offered = ", ".join(names) or "none"
        raise bad_request(
            f"tool_choice names {choice.function.name!r}, which is not among the tools ({offered})", "tool_choice"
        )
    if choice == "required" and not names:
        raise bad_request("tool_choice 'required' needs at least one tool in 'tools'", "tool_choice")


def _check_schema(schema: dict[str, Any] | None, param: str) -> None:
    if schema is None:
        return
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise bad_request(
            f"{param}: not a valid JSON Schema at {path}: {error.message}", param, "invalid_tool_schema"
        ) from None
    if schema.get("type", "object") != "object":
        raise bad_request(
            f"{param}: a function's parameters must be an object schema; got type {schema.get('type')!r}",
            param,
            "invalid_tool_schema",
        )
