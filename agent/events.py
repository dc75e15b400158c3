"""What the agent reports as it runs: pydantic events, each tagged by a string ``type``."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, model_validator


class ToolCall(BaseModel):
    """One tool call read from model output.

    ``id`` is derived from the call's position and raw text when not given, so parsing the same
    output twice (streamed or at once) yields the same ids.
    """

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    id: str = ""

    @model_validator(mode="after")
    def _default_id(self) -> "ToolCall":
        if not self.id:
            self.id = call_id(0, self.raw or json.dumps([self.name, self.arguments], default=str))
        return self


def call_id(index: int, raw: str) -> str:
    """A stable ``call_<8 hex>`` id for the ``index``-th call of an output."""
    return "call_" + hashlib.sha256(f"{index}:{raw}".encode()).hexdigest()[:8]


class ToolCallError(BaseModel):
    """A tool call that could not be read; ``message`` is written for the model to fix it."""

    message: str
    raw: str


class TextEvent(BaseModel):
    """Visible text, outside tool calls and reasoning."""

    type: Literal["text"] = "text"
    text: str


class ReasoningEvent(BaseModel):
    """Text inside ``<think>...</think>``."""

    type: Literal["reasoning"] = "reasoning"
    text: str


class ToolCallStartEvent(BaseModel):
    """A tool call has begun and its name is known; its arguments are still arriving."""

    type: Literal["tool_call_start"] = "tool_call_start"
    name: str


class ToolCallEvent(BaseModel):
    """A complete tool call."""

    type: Literal["tool_call"] = "tool_call"
    call: ToolCall


class ErrorEvent(BaseModel):
    """A malformed tool call: what is wrong, and the raw text it came from."""

    type: Literal["error"] = "error"
    message: str
    raw: str


Event = Annotated[
    Union[TextEvent, ReasoningEvent, ToolCallStartEvent, ToolCallEvent, ErrorEvent],
    Field(discriminator="type"),
]
