"""One generation for one request: engine steps → stop strings → tool-call parser → validated output pieces.

The pieces (``Content``, ``Reasoning``, ``Call``, ``CallError``) are what both the JSON answer and
the SSE stream are made of, so a streamed answer and a whole one always agree.

Tool calls are emitted whole, when their closing tag arrives: the name and the arguments (a JSON
string, after schema coercion) in one piece. A call that fails validation is still returned as the
model made it, with ``errors`` saying why; markup that is not a readable call becomes a ``CallError``
(no call, the raw text and the reason). Neither ever reaches ``content``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.engine import Engine
from agent.events import ErrorEvent, Event, ReasoningEvent, TextEvent, ToolCallEvent
from agent.serve.prompt import Plan
from agent.toolcalls import CALL_OPEN, StreamParser
from optiq_runtime.guide import CallGuide
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import GenerationStats
from tools.validate import validate_call


@dataclass
class Content:
    text: str


@dataclass
class Reasoning:
    text: str


@dataclass
class Call:
    index: int
    id: str
    name: str
    arguments: str  # JSON object text
    errors: list[str] = field(default_factory=list)


@dataclass
class CallError:
    message: str
    raw: str


Piece = Content | Reasoning | Call | CallError


@dataclass
class Outcome:
    """How a generation ended and what it cost; filled in as it runs."""

    finish_reason: str = "stop"
    generated: list[int] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    content: str = ""
    clean: bool = False  # the tokens seen are what the client got: the next request can extend them
    stop_sequence: str | None = None  # the request's stop string that ended the output, if one did
    stats: GenerationStats | None = None


class StopScanner:
    """Finds stop strings in streamed text, holding back a tail that may be the start of one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.matched: str | None = None  # the stop string found (the earliest in the text)

    def feed(self, text: str) -> tuple[str, bool]:
        """The text safe to pass on, and whether a stop string was reached (the text ends before it)."""
        buffer = self.held + text
        if any(s in buffer for s in self.stops):
            self.held = ""
            end, self.matched = min((buffer.find(s), s) for s in self.stops if s in buffer)
            return buffer[:end], True
        keep = max((_overlap(buffer, s) for s in self.stops), default=0)
        self.held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop``."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


class Answering(Protocol):
    """What the HTTP layer reads of an answer being generated: a ``Completion``, or a ``ServerToolLoop`` of several."""

    @property
    def engine(self) -> Any: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def outcome(self) -> Outcome: ...

    def pieces(self, should_stop: Callable[[], bool] | None = None) -> Iterator[Piece]: ...

    def reply_message(self) -> dict[str, Any]: ...


class Completion:
    """Runs ``plan`` on ``engine``; iterate ``pieces()`` once, then read ``outcome``."""

    def __init__(self, engine: Engine, plan: Plan, sampling: Sampling):
        self.engine = engine
        self.plan = plan
        self.sampling = sampling
        self.outcome = Outcome()
        self._parser = StreamParser(plan.tools, in_reasoning=plan.in_reasoning)
        # With calls not allowed the output ends where the model opens one.
        internal = list(plan.end_markers) + ([] if plan.allow_calls else [CALL_OPEN])
        self._scanner = StopScanner([*sampling.stops, *internal])

    def pieces(self, should_stop: Callable[[], bool] | None = None) -> Iterator[Piece]:
        yield from self._translate(self._parser.feed(self.plan.prefill))
        guided = self.sampling.guide_calls and self.plan.allow_calls
        guide = CallGuide.for_tools(self.engine.tokenizer, self.plan.tools, self.plan.prefill) if guided else None
        steps = self.engine.stream(self.plan.tokens, self.sampling, should_stop=should_stop, guide=guide)
        stopped = False
        try:
            for step in steps:
                self.outcome.generated += step.tokens
                text, stopped = self._scanner.feed(step.text)
                yield from self._translate(self._parser.feed(text))
                if stopped:
                    break
        finally:
            steps.close()  # between steps the engine's caches stay consistent
        tail = "" if stopped else self._scanner.flush()
        yield from self._translate(self._parser.feed(tail) + self._parser.close())
        self._finish(stopped)

    def _finish(self, stopped: bool) -> None:
        stats = self.outcome.stats = self.engine.last_stats
        reason = "stop" if stopped else stats.finish_reason
        if stopped and self._scanner.matched in self.sampling.stops:
            self.outcome.stop_sequence = self._scanner.matched
        # Ended at end-of-turn or at the length limit, the tokens seen are exactly what the client got.
        self.outcome.clean = reason in ("eos", "length")
        if reason == "length":
            self.outcome.finish_reason = "length"
        elif self.outcome.calls:
            self.outcome.finish_reason = "tool_calls"
        else:
            self.outcome.finish_reason = "stop"

    def _translate(self, events: list[Event]) -> Iterator[Piece]:
        for event in events:
            if isinstance(event, TextEvent):
                self.outcome.content += event.text
                yield Content(event.text)
            elif isinstance(event, ReasoningEvent):
                yield Reasoning(event.text)
            elif isinstance(event, ToolCallEvent):
                yield self._call(event)
            elif isinstance(event, ErrorEvent):
                yield CallError(event.message, event.raw)

    def _call(self, event: ToolCallEvent) -> Call:
        validation = validate_call(event.call, self.plan.tools or [])
        arguments = validation.arguments or event.call.arguments  # unreadable by the schema: as the model made it
        call = Call(
            index=len(self.outcome.calls),
            id=new_call_id(),
            name=event.call.name,
            arguments=json.dumps(arguments, ensure_ascii=False),
            errors=list(validation.errors),
        )
        self.outcome.calls.append(call)
        return call

    def reply_message(self) -> dict[str, Any]:
        """The answer as a template message, for the next request's prompt (see ``prompt``)."""
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
            for c in self.outcome.calls
        ]
        return {"role": "assistant", "content": self.outcome.content, "tool_calls": calls}
