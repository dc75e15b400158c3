"""What the agent reports as it runs: pydantic events, each tagged by a string ``type``."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

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
    def _default_id(self) -> ToolCall:
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
    TextEvent | ReasoningEvent | ToolCallStartEvent | ToolCallEvent | ErrorEvent,
    Field(discriminator="type"),
]


# --- The agent loop's events (agent/agent.py); the parser's events above are passed through as they are.


class UserEvent(BaseModel):
    """The user's request that starts a turn (recorded so a trace replays the whole conversation)."""

    type: Literal["user"] = "user"
    text: str


class ToolValidatedEvent(BaseModel):
    """A call passed schema validation; ``call.arguments`` are after coercion."""

    type: Literal["tool_validated"] = "tool_validated"
    call: ToolCall


class ToolRejectedEvent(BaseModel):
    """A call that will not run: invalid, unknown tool, denied by the user, or repeated after failing."""

    type: Literal["tool_rejected"] = "tool_rejected"
    call: ToolCall
    reason: Literal["invalid", "denied", "repeated"]
    errors: list[str]


class ApprovalRequestEvent(BaseModel):
    """A side-effecting call waits for the user's decision."""

    type: Literal["approval_request"] = "approval_request"
    call: ToolCall
    preview: str


class ApprovalEvent(BaseModel):
    """The user's decision on a call: ``once``, ``session`` (this tool, for the rest of the session) or ``deny``."""

    type: Literal["approval"] = "approval"
    call_id: str
    decision: Literal["once", "session", "deny"]


class ToolResultEvent(BaseModel):
    """What a tool call gave back to the model; ``ok`` is false for failures and rejections."""

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str
    content: str
    ok: bool
    seconds: float = 0.0


class StatsEvent(BaseModel):
    """One generation's numbers, as the engine measured them."""

    type: Literal["stats"] = "stats"
    step: int
    prompt_tokens: int
    reused_prompt_tokens: int = 0
    tokens: int
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    acceptance: float | None = None
    seconds: float
    mtp: bool = False  # whether this generation decoded with MTP rounds
    mtp_reason: str = ""  # why MTP was on or off ("MTP off: a round costs 3.50 steps for 1.60 tokens (0.46x)")


class NoticeEvent(BaseModel):
    """Something the user should know that is not an error (old tool output trimmed, MTP off, ...)."""

    type: Literal["notice"] = "notice"
    message: str


StopReason = Literal["answered", "max_steps", "length", "repeated_failure", "interrupted", "error"]


class DoneEvent(BaseModel):
    """The turn is over: the final answer (partial when interrupted), why it stopped, and its cost."""

    type: Literal["done"] = "done"
    answer: str
    stop_reason: StopReason
    message: str = ""
    steps: int
    tokens: int
    seconds: float

    @property
    def answered(self) -> bool:
        return self.stop_reason == "answered"


AgentEvent = Annotated[
    TextEvent
    | ReasoningEvent
    | ToolCallStartEvent
    | ToolCallEvent
    | ErrorEvent
    | UserEvent
    | ToolValidatedEvent
    | ToolRejectedEvent
    | ApprovalRequestEvent
    | ApprovalEvent
    | ToolResultEvent
    | StatsEvent
    | NoticeEvent
    | DoneEvent,
    Field(discriminator="type"),
]
