"""The Anthropic Messages request (``POST /v1/messages``) as this server reads it, and its translation.

A Messages request becomes the server's chat request (``schema.ChatRequest``) before anything else
looks at it, so prompts, tool-call guiding, forced tools, validation and the prompt cache are the
OpenAI path's own:
- ``system`` (text or text blocks) is the first message;
- a user turn's ``tool_result`` blocks become tool messages (``is_error`` results say so), its text
  a user message; an assistant turn's ``tool_use`` blocks become its tool calls; thinking blocks of
  earlier turns are dropped, as the chat template drops earlier reasoning;
- ``tool_choice`` auto / any / tool / none is OpenAI's auto / required / named / none;
- ``max_tokens`` (required) is a ceiling: it is capped to the model's context rather than refused,
  since Anthropic clients send their own models' limits (32000 and more).
Fields this server does not use (``metadata``, ``cache_control`` on blocks, ``service_tier``) are
accepted and ignored. Field errors are Anthropic's 400 ``invalid_request_error``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.serve.errors import APIError
from agent.serve.schema import ChatRequest, check_request, field_error, read_json_object

_STRICT = ConfigDict(strict=True, extra="allow")


class TextBlock(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ToolUseBlock(BaseModel):
    model_config = _STRICT
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(BaseModel):
    model_config = _STRICT
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock] | None = None
    is_error: bool | None = None

    def text(self) -> str:
        body = self.content if isinstance(self.content, str) else "".join(b.text for b in self.content or [])
        return f"Error: {body}" if self.is_error else body


class ThinkingBlock(BaseModel):
    model_config = _STRICT
    type: Literal["thinking", "redacted_thinking"]


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock, Field(discriminator="type")]


class InputMessage(BaseModel):
    model_config = _STRICT
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(BaseModel):
    model_config = _STRICT
    type: Literal["custom"] | None = None
    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(BaseModel):
    model_config = _STRICT
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(BaseModel):
    model_config = _STRICT
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class MessagesRequest(BaseModel):
    """``POST /v1/messages`` (and ``/v1/messages/count_tokens``, which has no ``max_tokens``)."""

    model_config = _STRICT
    model: str
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None


def parse_messages(body: bytes, *, counting: bool = False) -> MessagesRequest:
    """The request in ``body``, checked (400 in Anthropic's terms); ``max_tokens`` is required unless ``counting``."""
    try:
        request = MessagesRequest.model_validate(read_json_object(body))
    except ValidationError as error:
        raise field_error(error, status=400) from None
    if request.max_tokens is None and not counting:
        raise APIError(400, "max_tokens: Field required", param="max_tokens")
    return request


def to_chat_request(request: MessagesRequest, context_length: int) -> ChatRequest:
    """The same request in the server's own (OpenAI) terms, checked as the OpenAI route checks it."""
    data: dict[str, Any] = {
        "model": request.model,
        "messages": _system(request.system) + [m for i, turn in enumerate(request.messages) for m in _turn(turn, i)],
        "stream": request.stream,
    }
    if request.max_tokens is not None:
        data["max_tokens"] = min(request.max_tokens, context_length)
    for name in ("temperature", "top_p", "top_k"):
        if getattr(request, name) is not None:
            data[name] = getattr(request, name)
    if request.stop_sequences:
        data["stop"] = request.stop_sequences
    if request.tools:
        data["tools"] = [_function(tool) for tool in request.tools]
    if request.tool_choice is not None:
        data["tool_choice"] = _choice(request.tool_choice)
    if request.thinking is not None and request.thinking.type != "disabled":
        data["chat_template_kwargs"] = {"enable_thinking": True}
    try:
        chat = ChatRequest.model_validate(data)
        check_request(chat, max_stops=None)
    except ValidationError as error:
        raise field_error(error, status=400) from None
    except APIError as error:
        raise _in_anthropic_terms(error) from None
    return chat


def _system(system: str | list[TextBlock] | None) -> list[dict[str, Any]]:
    text = system if isinstance(system, str) else "\n\n".join(block.text for block in system or [])
    return [{"role": "system", "content": text}] if text else []


def _turn(turn: InputMessage, index: int) -> list[dict[str, Any]]:
    if isinstance(turn.content, str):
        return [{"role": turn.role, "content": turn.content}]
    if turn.role == "assistant":
        return [_assistant(turn.content, index)]
    out: list[dict[str, Any]] = []
    for number, block in enumerate(turn.content):
        if isinstance(block, ToolResultBlock):
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": block.text()})
        elif isinstance(block, TextBlock):
            if out and out[-1]["role"] == "user":
                out[-1]["content"] += "\n\n" + block.text
            else:
                out.append({"role": "user", "content": block.text})
        elif isinstance(block, ToolUseBlock):
            raise APIError(
                400,
                f"messages.{index}.content.{number}: tool_use blocks belong to assistant turns",
                param=f"messages.{index}.content",
            )
    return out


def _assistant(blocks: list, index: int) -> dict[str, Any]:
    text = "".join(b.text for b in blocks if isinstance(b, TextBlock))
    calls = [
        {
            "id": b.id,
            "type": "function",
            "function": {"name": b.name, "arguments": json.dumps(b.input, ensure_ascii=False)},
        }
        for b in blocks
        if isinstance(b, ToolUseBlock)
    ]
    if any(isinstance(b, ToolResultBlock) for b in blocks):
        raise APIError(
            400, f"messages.{index}.content: tool_result blocks belong to user turns", param=f"messages.{index}.content"
        )
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _function(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _choice(choice: ToolChoice) -> Any:
    if choice.type == "tool":
        if not choice.name:
            raise APIError(
                400, "tool_choice: type 'tool' needs the 'name' of the tool to call", param="tool_choice.name"
            )
        return {"type": "function", "function": {"name": choice.name}}
    if choice.type == "any":
        return "required"
    return choice.type  # auto, none


def _in_anthropic_terms(error: APIError) -> APIError:
    """An error from the shared checks, with OpenAI's field paths turned into this request's."""

    def rename(text: str | None) -> str | None:
        if text is None:
            return None
        for ours, theirs in (
            (".function.parameters", ".input_schema"),
            (".function.name", ".name"),
            ("'required'", "'any'"),
        ):
            text = text.replace(ours, theirs)
        return text

    status = 400 if error.status == 422 else error.status
    return APIError(
        status,
        rename(error.message) or "",
        type=error.type,
        param=rename(error.param),
        code=error.code,
        headers=error.headers,
    )
