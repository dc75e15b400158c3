"""OpenAI response shapes: the ``chat.completion`` object, ``chat.completion.chunk`` deltas, usage.

Beyond OpenAI's fields, two are this server's own, both optional for clients:
- ``tool_call_errors`` on the message (or on a chunk's delta): for each call that failed schema
  validation, its ``index``, ``id``, ``name`` and ``errors``; for markup that was no readable call,
  ``index`` null, the ``raw`` text and the reason. The calls themselves are returned unchanged.
- ``optiq`` at the top level (on the last chunk when streaming): MTP on/off, its acceptance rate,
  decode speed and how many prompt tokens came from the cache.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.serve.completion import Answering, Call, CallError, Content, Piece, Reasoning
from agent.serve.errors import APIError
from agent.serve.schema import ChatRequest
from optiq_runtime.stats import GenerationStats


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One Server-Sent Event (``event:`` line only when named)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def call_dict(call: Call) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def call_error_dict(piece: Call | CallError) -> dict[str, Any]:
    if isinstance(piece, Call):
        return {"index": piece.index, "id": piece.id, "name": piece.name, "errors": piece.errors}
    return {"index": None, "id": None, "name": None, "errors": [piece.message], "raw": piece.raw}


def usage(completion: Answering) -> dict[str, Any]:
    stats = completion.outcome.stats
    prompt = len(completion.plan.tokens)
    generated = len(completion.outcome.generated)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
        "prompt_tokens_details": {"cached_tokens": stats.reused_prompt_tokens if stats else 0},
    }


def engine_report(completion: Answering) -> dict[str, Any]:
    """The ``optiq`` field: what MTP did for this answer."""
    stats = completion.outcome.stats or GenerationStats()  # no stats: nothing was generated
    return {
        "mtp": bool(stats.mtp_used),
        "mtp_depth": stats.depth,
        "mtp_acceptance": round(stats.acceptance, 4) if stats.mtp_used else None,
        "mtp_fallback": stats.fallback_reason,
        "tokens_per_step": round(stats.tokens_per_step, 3),
        "decode_tok_s": round(stats.decode_tok_s, 2),
        "prefill_tok_s": round(stats.prefill_tok_s, 2),
        "reused_prompt_tokens": stats.reused_prompt_tokens,
    }


def engine_headers(completion: Answering) -> dict[str, str]:
    report = engine_report(completion)
    acceptance = report["mtp_acceptance"]
    return {
        "x-optiq-mtp": "on" if report["mtp"] else "off",
        "x-optiq-mtp-acceptance": "" if acceptance is None else f"{acceptance:.4f}",
        "x-optiq-reused-prompt-tokens": str(report["reused_prompt_tokens"]),
    }


@dataclass
class MessageBuilder:
    """Collects the pieces of a non-streamed answer."""

    content: str = ""
    reasoning: str = ""
    calls: list[Call] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, piece: Piece) -> None:
        if isinstance(piece, Content):
            self.content += piece.text
        elif isinstance(piece, Reasoning):
            self.reasoning += piece.text
        elif isinstance(piece, Call):
            self.calls.append(piece)
            if piece.errors:
                self.errors.append(call_error_dict(piece))
        elif isinstance(piece, CallError):
            self.errors.append(call_error_dict(piece))

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content or (None if self.calls else "")}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.calls:
            message["tool_calls"] = [call_dict(c) for c in self.calls]
        if self.errors:
            message["tool_call_errors"] = self.errors
        return message


def completion_body(cid: str, model: str, completion: Answering, builder: MessageBuilder) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": builder.message(),
                "finish_reason": completion.outcome.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(completion),
        "optiq": engine_report(completion),
    }


class ChunkMaker:
    """``chat.completion.chunk`` objects for one streamed answer."""

    def __init__(self, cid: str, model: str, include_usage: bool):
        self.cid = cid
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        body = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if self.include_usage:
            body["usage"] = None
        body.update(extra)
        return body

    def first(self) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": ""})

    def piece(self, piece: Piece) -> dict[str, Any]:
        if isinstance(piece, Content):
            return self.chunk({"content": piece.text})
        if isinstance(piece, Reasoning):
            return self.chunk({"reasoning_content": piece.text})
        if isinstance(piece, Call):
            delta: dict[str, Any] = {"tool_calls": [{"index": piece.index, **call_dict(piece)}]}
            if piece.errors:
                delta["tool_call_errors"] = [call_error_dict(piece)]
            return self.chunk(delta)
        return self.chunk({"tool_call_errors": [call_error_dict(piece)]})

    def last(self, completion: Answering) -> list[dict[str, Any]]:
        chunks = [self.chunk({}, completion.outcome.finish_reason, optiq=engine_report(completion))]
        if self.include_usage:
            chunks.append({**self.chunk({}), "choices": [], "usage": usage(completion)})
        return chunks


class OpenAIDialect:
    """How one chat completions request is answered: whole (``chat.completion``) or as chunks, then ``[DONE]``."""

    def __init__(self, model: str, request: ChatRequest):
        self.model = model
        ignored = request.ignored_fields()
        self.headers = {"x-optiq-ignored-fields": ",".join(ignored)} if ignored else {}
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        self.chunks = ChunkMaker(completion_id(), model, include_usage)

    def error_body(self, error: APIError) -> dict[str, Any]:
        return error.body()

    def collector(self) -> MessageBuilder:
        return MessageBuilder()

    def whole(self, completion: Answering, builder: MessageBuilder) -> tuple[dict[str, Any], dict[str, str]]:
        body = completion_body(completion_id(), self.model, completion, builder)
        headers = {**self.headers, **engine_headers(completion), "x-optiq-tool-call-errors": str(len(builder.errors))}
        return body, headers

    def stream_headers(self, completion: Answering) -> dict[str, str]:
        return {"x-optiq-mtp": "on" if completion.engine.mtp_enabled else "off", **self.headers}

    def opening(self, completion: Answering) -> list[bytes]:
        return [sse(self.chunks.first())]

    def piece(self, piece: Piece) -> list[bytes]:
        return [sse(self.chunks.piece(piece))]

    def closing(self, completion: Answering) -> list[bytes]:
        return [sse(chunk) for chunk in self.chunks.last(completion)] + [sse("[DONE]")]

    def stream_error(self, error: APIError) -> list[bytes]:
        return [sse(error.body()), sse("[DONE]")]
