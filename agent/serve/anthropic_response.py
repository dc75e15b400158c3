"""Anthropic Messages response shapes: the ``message`` object and its stream of events.

Streamed, an answer is ``message_start``, then per content block ``content_block_start``, its
deltas (``text_delta``, ``thinking_delta``, ``input_json_delta``) and ``content_block_stop``, then
``message_delta`` (``stop_reason``, ``stop_sequence``, usage) and ``message_stop``. A tool call
arrives whole (see ``completion``), so its block carries its JSON input in one delta.

As on the OpenAI route, a call that failed schema validation is still returned as the model made
it, and the reasons are in this server's own ``optiq`` field (``tool_call_errors``), beside the
MTP report; both are optional for clients.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from agent.serve.completion import Answering, Call, CallError, Content, Piece, Reasoning
from agent.serve.errors import APIError
from agent.serve.response import call_error_dict, engine_headers, engine_report, sse


def message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


def tool_use_id(call: Call) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def stop_reason(completion: Answering) -> str:
    outcome = completion.outcome
    if outcome.finish_reason == "length":
        return "max_tokens"
    if outcome.finish_reason == "tool_calls":
        return "tool_use"
    return "stop_sequence" if outcome.stop_sequence else "end_turn"


def tool_use_block(call: Call) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": json.loads(call.arguments)}


def call_error(piece: Call | CallError) -> dict[str, Any]:
    report = call_error_dict(piece)
    if isinstance(piece, Call):
        report["id"] = tool_use_id(piece)
    return report


def report(completion: Answering, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``optiq`` field: what MTP did, and the tool calls that failed validation."""
    return {**engine_report(completion), "tool_call_errors": errors} if errors else engine_report(completion)


class Blocks:
    """Collects the content blocks of a whole answer."""

    def __init__(self) -> None:
        self.content: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []

    def add(self, piece: Piece) -> None:
        if isinstance(piece, Content) and piece.text:
            self._extend("text", "text", piece.text)
        elif isinstance(piece, Reasoning) and piece.text:
            self._extend("thinking", "thinking", piece.text, signature="")
        elif isinstance(piece, Call):
            self.content.append(tool_use_block(piece))
            if piece.errors:
                self.errors.append(call_error(piece))
        elif isinstance(piece, CallError):
            self.errors.append(call_error(piece))

    def _extend(self, kind: str, key: str, text: str, **extra: Any) -> None:
        if self.content and self.content[-1]["type"] == kind:
            self.content[-1][key] += text
        else:
            self.content.append({"type": kind, key: text, **extra})


class AnthropicDialect:
    """How one Messages request is answered: a whole ``message``, or its events."""

    def __init__(self, model: str):
        self.model = model
        self.id = message_id()
        self._index = -1
        self._open: str | None = None  # the type of the content block being streamed
        self._errors: list[dict[str, Any]] = []

    def error_body(self, error: APIError) -> dict[str, Any]:
        return error.anthropic_body()

    def collector(self) -> Blocks:
        return Blocks()

    def whole(self, completion: Answering, blocks: Blocks) -> tuple[dict[str, Any], dict[str, str]]:
        body = {
            **self._message(blocks.content),
            "stop_reason": stop_reason(completion),
            "stop_sequence": completion.outcome.stop_sequence,
            "usage": {"input_tokens": len(completion.plan.tokens), "output_tokens": len(completion.outcome.generated)},
            "optiq": report(completion, blocks.errors),
        }
        return body, {**engine_headers(completion), "x-optiq-tool-call-errors": str(len(blocks.errors))}

    def stream_headers(self, completion: Answering) -> dict[str, str]:
        return {"x-optiq-mtp": "on" if completion.engine.mtp_enabled else "off"}

    def opening(self, completion: Answering) -> list[bytes]:
        message = {
            **self._message([]),
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": len(completion.plan.tokens), "output_tokens": 0},
        }
        return [_event({"type": "message_start", "message": message}), _event({"type": "ping"})]

    def piece(self, piece: Piece) -> list[bytes]:
        if isinstance(piece, Content) and piece.text:
            return self._open_block("text", {"text": ""}) + [self._delta({"type": "text_delta", "text": piece.text})]
        if isinstance(piece, Reasoning) and piece.text:
            opened = self._open_block("thinking", {"thinking": "", "signature": ""})
            return opened + [self._delta({"type": "thinking_delta", "thinking": piece.text})]
        if isinstance(piece, Call):
            if piece.errors:
                self._errors.append(call_error(piece))
            block = {**tool_use_block(piece), "input": {}}
            events = self._close_block() + self._start(block)
            return (
                events
                + [self._delta({"type": "input_json_delta", "partial_json": piece.arguments})]
                + self._close_block()
            )
        if isinstance(piece, CallError):
            self._errors.append(call_error(piece))
        return []

    def closing(self, completion: Answering) -> list[bytes]:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(completion), "stop_sequence": completion.outcome.stop_sequence},
            "usage": {"input_tokens": len(completion.plan.tokens), "output_tokens": len(completion.outcome.generated)},
            "optiq": report(completion, self._errors),
        }
        return self._close_block() + [_event(delta), _event({"type": "message_stop"})]

    def stream_error(self, error: APIError) -> list[bytes]:
        return [_event(error.anthropic_body())]

    def _message(self, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": content}

    def _open_block(self, kind: str, empty: dict[str, Any]) -> list[bytes]:
        if self._open == kind:
            return []
        return self._close_block() + self._start({"type": kind, **empty})

    def _start(self, block: dict[str, Any]) -> list[bytes]:
        self._index += 1
        self._open = block["type"]
        return [_event({"type": "content_block_start", "index": self._index, "content_block": block})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event({"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [_event({"type": "content_block_stop", "index": self._index})]


def _event(body: dict[str, Any]) -> bytes:
    return sse(body, event=body["type"])
