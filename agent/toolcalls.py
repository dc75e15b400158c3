"""Reading tool calls out of model text: Qwen XML, Hermes JSON and BFCL's pythonic calls, streamed.

One state machine serves both ``StreamParser`` and ``parse_tool_calls``, so a streamed output
and the same output parsed at once give the same result. In ``auto``, ``qwen_xml`` and
``hermes`` formats only ``<tool_call>...</tool_call>`` blocks are calls; everything else is text
or reasoning. ``pythonic`` is BFCL prompting mode: the whole answer (after any reasoning) is a
Python-like list of calls, so the stream holds it back and reports it at ``close()``.

Visible text and reasoning are trimmed: whitespace at their start and end and next to markup is
dropped, and text that resumes after a tool call is joined with a blank line. Reading one block in
each format lives in ``agent.callformats``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.callformats import CALL_CLOSE, CALL_OPEN, ReadCall, parse_block, pythonic_answer
from agent.events import (
    ErrorEvent,
    Event,
    ReasoningEvent,
    TextEvent,
    ToolCall,
    ToolCallError,
    ToolCallEvent,
    ToolCallStartEvent,
    call_id,
)
from tools.coerce import coerce_arguments

FORMATS = ("auto", "qwen_xml", "hermes", "pythonic")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# The XML call's inner tags: outside a <tool_call> block they are stray markup (a sampled reply that
# closed its call and wrote on), dropped from text so that no client shows them.
_STRAY_CALL_TAGS = ("<function=", "</function>", "<parameter=", "</parameter>")
_TEXT_TAGS = (THINK_OPEN, THINK_CLOSE, CALL_OPEN, CALL_CLOSE, *_STRAY_CALL_TAGS)
_PYTHONIC_TAGS = (THINK_OPEN, THINK_CLOSE)
_DROPPED_IN_TEXT = (THINK_CLOSE, CALL_CLOSE, *_STRAY_CALL_TAGS)  # closing or call tags with no block open
_XML_NAME = re.compile(r"<function=([^>\n<]+)>")
_JSON_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Parsed:
    """What one model output said: visible text, reasoning, tool calls, and calls that failed."""

    content: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[ToolCallError] = field(default_factory=list)


def parse_tool_calls(
    text: str, tools: list[dict] | None = None, fmt: str = "auto", in_reasoning: bool = False
) -> Parsed:
    """Parse a whole model output.

    tools: OpenAI tool dicts; when given, XML parameter text is coerced by each tool's schema.
    in_reasoning: the prompt ended with ``<think>``, so the output begins inside reasoning.
    """
    parser = StreamParser(tools, fmt, in_reasoning)
    return collect(parser.feed(text) + parser.close())


def collect(events: Iterable[Event]) -> Parsed:
    """Fold a stream's events into a ``Parsed``."""
    parsed = Parsed()
    for event in events:
        if isinstance(event, TextEvent):
            parsed.content += event.text
        elif isinstance(event, ReasoningEvent):
            parsed.reasoning += event.text
        elif isinstance(event, ToolCallEvent):
            parsed.calls.append(event.call)
        elif isinstance(event, ErrorEvent):
            parsed.errors.append(ToolCallError(message=event.message, raw=event.raw))
    return parsed


class _Trimmed:
    """A text channel that drops whitespace at its ends and next to markup, chunk by chunk."""

    def __init__(self) -> None:
        self.emitted = False
        self.pending = ""
        self.at_start = True

    def push(self, text: str) -> str:
        prefix = ""
        if self.at_start:
            text = text.lstrip()
            if not text:
                return ""
            self.at_start = False
            prefix = "\n\n" if self.emitted else ""
        text = self.pending + text
        body = text.rstrip()
        self.pending = text[len(body) :]
        self.emitted = self.emitted or bool(body)
        return prefix + body

    def boundary(self) -> None:
        self.pending = ""
        self.at_start = True


class StreamParser:
    """Turns model output, chunk by chunk, into events; ``close()`` reports what the end left open."""

    def __init__(self, tools: list[dict] | None = None, fmt: str = "auto", in_reasoning: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown tool-call format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self._schemas = _schemas(tools)
        self._mode = "reasoning" if in_reasoning else "text"
        self._buf = ""
        self._call = _CallBuffer()
        self._count = 0
        self._answer = ""
        self._text, self._reasoning = _Trimmed(), _Trimmed()

    def feed(self, chunk: str) -> list[Event]:
        self._buf += chunk
        events: list[Event] = []
        while self._step(events):
            pass
        return _merge(events)

    def close(self) -> list[Event]:
        events: list[Event] = []
        rest, self._buf = self._buf, ""
        if self._mode == "call":
            raw = CALL_OPEN + self._call.text() + rest
            events.append(ErrorEvent(message=_TRUNCATED, raw=raw))
        elif self._mode == "reasoning":
            self._emit_reasoning(rest, events)
        else:
            self._emit_text(rest, events)
        if self.fmt == "pythonic":
            self._emit_pythonic(events)
        self._mode = "text"
        return _merge(events)

    # One step consumes the buffer up to the next tag (or holds back a partial tag) and says
    # whether another step could make progress.
    def _step(self, events: list[Event]) -> bool:
        if self._mode == "call":
            return self._step_call(events)
        tags = (THINK_CLOSE,) if self._mode == "reasoning" else self._text_tags()
        index, tag = _find_first(self._buf, tags)
        if tag is None:
            keep = _partial_tag_length(self._buf, tags)
            ready, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            self._emit(ready, events)
            return False
        self._emit(self._buf[:index], events)
        self._buf = self._buf[index + len(tag) :]
        self._enter(tag)
        return True

    def _text_tags(self) -> tuple[str, ...]:
        return _PYTHONIC_TAGS if self.fmt == "pythonic" else _TEXT_TAGS

    def _emit(self, text: str, events: list[Event]) -> None:
        if self._mode == "reasoning":
            self._emit_reasoning(text, events)
        else:
            self._emit_text(text, events)

    def _emit_text(self, text: str, events: list[Event]) -> None:
        if self.fmt == "pythonic":
            self._answer += text
            return
        visible = self._text.push(text)
        if visible:
            events.append(TextEvent(text=visible))

    def _emit_reasoning(self, text: str, events: list[Event]) -> None:
        visible = self._reasoning.push(text)
        if visible:
            events.append(ReasoningEvent(text=visible))

    def _enter(self, tag: str) -> None:
        """Switch mode at a tag; a stray closing tag or call tag in text is markup too, and is dropped."""
        if self._mode == "text" and tag in _DROPPED_IN_TEXT:
            return
        self._text.boundary()
        self._reasoning.boundary()
        if tag == THINK_OPEN:
            self._mode = "reasoning"
        elif tag == CALL_OPEN:
            self._mode, self._call = "call", _CallBuffer()
        else:
            self._mode = "text"

    def _step_call(self, events: list[Event]) -> bool:
        chunk, self._buf = self._buf, ""
        end = self._call.add(chunk)
        for name in self._call.new_names():
            events.append(ToolCallStartEvent(name=name))
        if end is None:
            return False
        body, self._buf = self._call.split(end)
        self._mode = "text"
        for item in parse_block(body, self.fmt):
            events.append(self._event(item))
        return True

    def _event(self, item: ReadCall) -> Event:
        if item.error is not None:
            return ErrorEvent(message=item.error, raw=item.raw)
        arguments = item.arguments
        if item.strings and item.name in self._schemas:
            arguments = coerce_arguments(arguments, self._schemas[item.name])
        self._count += 1
        call = ToolCall(name=item.name, arguments=arguments, raw=item.raw, id=call_id(self._count, item.raw))
        return ToolCallEvent(call=call)

    def _emit_pythonic(self, events: list[Event]) -> None:
        answer, self._answer = self._answer, ""
        for item, outside in pythonic_answer(answer):
            if outside:
                self._emit_text_now(outside, events)
            elif isinstance(item, ReadCall):
                if item.error is None:
                    events.append(ToolCallStartEvent(name=item.name))
                events.append(self._event(item))

    def _emit_text_now(self, text: str, events: list[Event]) -> None:
        visible = self._text.push(text)
        if visible:
            events.append(TextEvent(text=visible))


class _CallBuffer:
    """The text of an open ``<tool_call>`` block, kept so that a long call streams in linear time.

    Names are reported as soon as they are complete: each XML ``<function=NAME>``, or the first
    ``"name"`` of a JSON call within its first ``_JSON_NAME_WINDOW`` characters.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.tail = ""  # the last characters, where a split closing tag may start
        self.kind = ""  # "xml", "json" or "other" once the first characters tell
        self.window = ""  # XML text not yet ruled out as the start of a name
        self.head = ""  # the start of the block, for telling the kind and finding a JSON name
        self.named = False

    def add(self, chunk: str) -> int | None:
        """Append ``chunk``; the offset of ``</tool_call>`` in the block once it has arrived."""
        joined = self.tail + chunk
        found = joined.find(CALL_CLOSE)
        start = self.length - len(self.tail)
        end = None if found < 0 else start + found
        body_part = chunk if end is None else chunk[: max(0, end - self.length)]
        self.parts.append(chunk)
        self.length += len(chunk)
        self.tail = joined[-(len(CALL_CLOSE) - 1) :]
        if len(self.head) < _JSON_NAME_WINDOW:
            self.head = (self.head + body_part)[:_JSON_NAME_WINDOW]
        self.window += body_part
        return end

    def text(self) -> str:
        return "".join(self.parts)

    def split(self, end: int) -> tuple[str, str]:
        """The block's body before ``</tool_call>`` and the text after it."""
        text = self.text()
        return text[:end], text[end + len(CALL_CLOSE) :]

    def new_names(self) -> list[str]:
        if not self.kind:
            self.kind = _kind(self.head)
        if self.kind == "xml":
            return self._xml_names()
        if self.kind == "json" and not self.named:
            match = _JSON_NAME.search(self.head)
            self.named = match is not None
            return [_unescape(match.group(1))] if match else []
        return []

    def _xml_names(self) -> list[str]:
        names, last_end = [], 0
        for match in _XML_NAME.finditer(self.window):
            names.append(match.group(1))
            last_end = match.end()
        tail = self.window.rfind("<", last_end)
        self.window = self.window[tail:] if tail >= 0 else ""
        return names


_JSON_NAME_WINDOW = 4096


def _kind(head: str) -> str:
    """What a block holds, judged from its start; empty while it is too short to tell."""
    stripped = head.lstrip()
    if stripped.startswith("<function="):
        return "xml"
    if stripped.startswith(("{", "[")):
        return "json"
    if not stripped or "<function=".startswith(stripped):
        return ""
    return "other"


_TRUNCATED = "the tool call was cut off: the output ended before </tool_call>; send the whole call again"


def _schemas(tools: list[dict] | None) -> dict[str, dict]:
    schemas = {}
    for tool in tools or []:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(function.get("name"), str) and isinstance(function.get("parameters"), dict):
            schemas[function["name"]] = function["parameters"]
    return schemas


def _find_first(text: str, tags: tuple[str, ...]) -> tuple[int, str | None]:
    best, found = len(text), None
    for tag in tags:
        index = text.find(tag)
        if 0 <= index < best:
            best, found = index, tag
    return best, found


def _partial_tag_length(text: str, tags: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` could be the start of a tag."""
    start = text.rfind("<", max(0, len(text) - max(map(len, tags))))
    if start < 0:
        return 0
    tail = text[start:]
    return len(tail) if any(tag.startswith(tail) for tag in tags) else 0


def _merge(events: list[Event]) -> list[Event]:
    """Join neighbouring text (or reasoning) events into one."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, (TextEvent, ReasoningEvent)) and type(last) is type(event):
            merged[-1] = type(event)(text=last.text + event.text)
        else:
            merged.append(event)
    return merged


def _unescape(text: str) -> str:
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text
