"""Reading tool calls out of model text: Qwen XML, Hermes JSON and BFCL's pythonic calls, streamed.

One state machine serves both ``StreamParser`` and ``parse_tool_calls``, so a streamed output
and the same output parsed at once give the same result. In ``auto``, ``qwen_xml`` and
``hermes`` formats only ``<tool_call>...</tool_call>`` blocks are calls; everything else is text
or reasoning. ``pythonic`` is BFCL prompting mode: the whole answer (after any reasoning) is a
Python-like list of calls, so the stream holds it back and reports it at ``close()``.

Visible text and reasoning are trimmed: whitespace at their start and end and next to markup is
dropped, and text that resumes after a tool call is joined with a blank line.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

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
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_TEXT_TAGS = (THINK_OPEN, THINK_CLOSE, CALL_OPEN, CALL_CLOSE)
_PYTHONIC_TAGS = (THINK_OPEN, THINK_CLOSE)
_XML_NAME = re.compile(r"<function=([^>\n<]+)>")
_JSON_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
CODE_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)```", re.DOTALL)
_LOOKS_LIKE_CALL = re.compile(r"\[?\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")


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
        self.pending = text[len(body):]
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
        """Switch mode at a tag; a stray closing tag in text is markup too, and is dropped."""
        if self._mode == "text" and tag in (THINK_CLOSE, CALL_CLOSE):
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
        for item in _parse_block(body, self.fmt):
            events.append(self._event(item))
        return True

    def _event(self, item: "ReadCall") -> Event:
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
        for item, outside in _pythonic_answer(answer):
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
            merged[-1] = type(event)(text=last.text + event.text)  # type: ignore[union-attr]
        else:
            merged.append(event)
    return merged


def _unescape(text: str) -> str:
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


# ---- one <tool_call> block -------------------------------------------------------------------


@dataclass
class ReadCall:
    """One call as read from the text, or why it could not be read (``error``)."""

    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    error: str | None = None
    strings: bool = False  # values are XML text, to be coerced by schema


def _parse_block(body: str, fmt: str) -> list[ReadCall]:
    raw_block = CALL_OPEN + body + CALL_CLOSE
    stripped = body.strip()
    is_xml = stripped.startswith("<function=")
    is_json = stripped.startswith(("{", "["))
    if is_xml and fmt in ("auto", "qwen_xml"):
        return _parse_xml(body)
    if is_json and fmt in ("auto", "hermes"):
        return _parse_hermes(stripped, raw_block)
    expected = {
        "qwen_xml": "<function=NAME> with <parameter=KEY> blocks",
        "hermes": 'a JSON object {"name": ..., "arguments": {...}}',
    }.get(fmt, '<function=NAME> with <parameter=KEY> blocks, or a JSON object {"name": ..., "arguments": {...}}')
    if not stripped:
        return [ReadCall(raw=raw_block, error="the tool call is empty; " + f"write {expected} inside <tool_call>")]
    return [ReadCall(raw=raw_block, error=f"could not read the tool call: expected {expected} inside <tool_call>")]


def _parse_xml(body: str) -> list[ReadCall]:
    items, pos = [], 0
    while True:
        while pos < len(body) and body[pos].isspace():
            pos += 1
        if pos >= len(body):
            return items
        if not body.startswith("<function=", pos):
            nxt = body.find("<function=", pos)
            end = len(body) if nxt < 0 else nxt
            items.append(ReadCall(raw=body[pos:end], error=f"unexpected text {_clip(body[pos:end])!r} in the tool call; "
                                                       "each call is <function=NAME>...</function>"))
            pos = end
            continue
        item, pos = _parse_function(body, pos)
        items.append(item)


def _parse_function(body: str, pos: int) -> tuple[ReadCall, int]:
    gt = body.find(">", pos)
    name = body[pos + len("<function=") : gt] if gt >= 0 else ""
    if gt < 0 or not name.strip() or "\n" in name:
        return ReadCall(raw=body[pos:], error="could not read the function name; write <function=NAME> on its own line"), len(body)
    name = name.strip()
    end = body.find("</function>", gt)
    if end < 0:
        return ReadCall(raw=body[pos:], error=f"the call to {name} has no closing </function>"), len(body)
    after = end + len("</function>")
    raw = body[pos:after]
    arguments, error = _parse_parameters(body[gt + 1 : end], name)
    if error:
        return ReadCall(name=name, raw=raw, error=error), after
    return ReadCall(name=name, arguments=arguments, raw=raw, strings=True), after


def _parse_parameters(inner: str, name: str) -> tuple[dict[str, str], str | None]:
    arguments: dict[str, str] = {}
    pos = 0
    while True:
        while pos < len(inner) and inner[pos].isspace():
            pos += 1
        if pos >= len(inner):
            return arguments, None
        if not inner.startswith("<parameter=", pos):
            return {}, (f"{name}: unexpected text {_clip(inner[pos:])!r}; "
                        "each argument is <parameter=KEY>\nVALUE\n</parameter>")
        gt = inner.find(">", pos)
        key = inner[pos + len("<parameter=") : gt].strip() if gt >= 0 else ""
        if gt < 0 or not key or "\n" in key:
            return {}, f"{name}: could not read a parameter name; write <parameter=KEY>"
        end = inner.find("</parameter>", gt)
        if end < 0:
            return {}, f"{name}: parameter {key!r} has no closing </parameter>"
        if key in arguments:
            return {}, f"{name}: parameter {key!r} is given twice; give each argument once"
        arguments[key] = _strip_one_newline(inner[gt + 1 : end])
        pos = end + len("</parameter>")


def _strip_one_newline(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _parse_hermes(text: str, raw: str) -> list[ReadCall]:
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [ReadCall(raw=raw, error=f"the tool call is not valid JSON ({exc}); "
                                    'write {"name": ..., "arguments": {...}} inside <tool_call>')]
    objects = decoded if isinstance(decoded, list) else [decoded]
    return [_hermes_item(obj, raw) for obj in objects] or [ReadCall(raw=raw, error="the tool call list is empty")]


def _hermes_item(obj: Any, raw: str) -> ReadCall:
    shape = 'write {"name": ..., "arguments": {...}}'
    if not isinstance(obj, dict):
        return ReadCall(raw=raw, error=f"a tool call must be a JSON object; {shape}")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return ReadCall(raw=raw, error=f'the tool call has no "name" string; {shape}')
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            return ReadCall(name=name, raw=raw, error=f"{name}: the arguments string is not valid JSON ({exc})")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ReadCall(name=name, raw=raw, error=f'{name}: "arguments" must be an object of name: value pairs')
    return ReadCall(name=name, arguments=arguments, raw=raw)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- pythonic (BFCL prompting mode) ----------------------------------------------------------


def _pythonic_answer(answer: str) -> list[tuple[ReadCall | None, str]]:
    """The answer's calls in order, with any text outside a code fence as ``(None, text)``."""
    fence = CODE_FENCE.search(answer)
    if fence:
        before, code, after = answer[: fence.start()], fence.group(1), answer[fence.end() :]
    else:
        before, code, after = "", answer, ""
    if not _LOOKS_LIKE_CALL.match(code.strip()) and code.strip() != "[]":
        return [(None, answer)]
    items = [(item, "") for item in parse_pythonic(code)]
    return [(None, before), *items, (None, after)]


def parse_pythonic(code: str, bfcl: bool = False) -> list[ReadCall]:
    """Calls written as ``[f(a=1), pkg.g(b="x")]`` (brackets optional), read with ``ast``, never run.

    bfcl: read values the way BFCL's decoder does (bare names and argument-less calls become
    strings, tuples stay tuples, constant arithmetic is folded); otherwise only literals are
    accepted, with JSON's true/false/null.
    """
    code = code.strip()
    try:
        tree = ast.parse(code, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [ReadCall(raw=code, error=f"could not read the calls as Python ({_reason(exc)}); "
                                      'write [func(arg=value, ...), ...]')]
    nodes = tree.body.elts if isinstance(tree.body, (ast.List, ast.Tuple)) else [tree.body]
    return [_pythonic_call(node, code, bfcl) for node in nodes]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.offset}"
    return type(exc).__name__


def _pythonic_call(node: ast.expr, code: str, bfcl: bool) -> ReadCall:
    raw = ast.get_source_segment(code, node) or ""
    if not isinstance(node, ast.Call):
        return ReadCall(raw=raw, error=f"{_clip(raw)!r} is not a function call; write func(arg=value, ...)")
    name = _dotted_name(node.func)
    if name is None:
        return ReadCall(raw=raw, error=f"could not read the function name in {_clip(raw)!r}; write name(arg=value)")
    if node.args:
        return ReadCall(name=name, raw=raw, error=f"{name}: positional arguments are not allowed; "
                                               "name each one, as in func(arg=value)")
    arguments: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            return ReadCall(name=name, raw=raw, error=f"{name}: **kwargs is not allowed; name each argument")
        if keyword.arg in arguments:
            return ReadCall(name=name, raw=raw, error=f"{name}: argument {keyword.arg!r} is given twice")
        try:
            arguments[keyword.arg] = _literal(keyword.value, code, bfcl)
        except (_NotLiteral, RecursionError) as exc:
            why = str(exc) if isinstance(exc, _NotLiteral) else "it is nested too deeply"
            return ReadCall(name=name, raw=raw, error=f"{name}: could not read argument {keyword.arg!r}: {why}")
    return ReadCall(name=name, arguments=arguments, raw=raw)


def _dotted_name(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


class _NotLiteral(Exception):
    """An argument value that is code, not data."""


_JSON_NAMES = {"true": True, "false": False, "null": None}
_FOLD = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


def _literal(node: ast.expr, code: str, bfcl: bool) -> Any:
    """The data an argument expression spells, built from its syntax tree alone."""
    if isinstance(node, ast.Constant):
        return _constant(node.value, bfcl)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, code, bfcl)
        if not _is_number(value):
            raise _NotLiteral("a sign only goes before a number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List):
        return [_literal(e, code, bfcl) for e in node.elts]
    if isinstance(node, ast.Tuple):
        items = [_literal(e, code, bfcl) for e in node.elts]
        return tuple(items) if bfcl else items
    if isinstance(node, ast.Dict):
        return _dict(node, code, bfcl)
    if isinstance(node, ast.Name):
        if node.id in _JSON_NAMES and not bfcl:
            return _JSON_NAMES[node.id]
        if bfcl:
            return node.id
        raise _NotLiteral(f"{node.id} is a bare name; quote text as a string")
    if bfcl:
        return _bfcl_expression(node, code)
    raise _NotLiteral(f"{_clip(ast.get_source_segment(code, node) or '')!r} is an expression; write the value itself")


def _constant(value: Any, bfcl: bool) -> Any:
    if value is Ellipsis and bfcl:
        return "..."
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise _NotLiteral(f"{type(value).__name__} values are not allowed")


def _dict(node: ast.Dict, code: str, bfcl: bool) -> dict[Any, Any]:
    result = {}
    for key_node, value_node in zip(node.keys, node.values):
        if key_node is None:
            raise _NotLiteral("** inside a dict is not allowed")
        key = _literal(key_node, code, bfcl)
        if not bfcl and not isinstance(key, str):
            raise _NotLiteral(f"dict keys must be strings, got {key!r}")
        if isinstance(key, (list, dict)):
            raise _NotLiteral("a dict key cannot be a list or dict")
        result[key] = _literal(value_node, code, bfcl)
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bfcl_expression(node: ast.expr, code: str) -> Any:
    """What BFCL's decoder makes of calls and arithmetic, without running anything."""
    if isinstance(node, ast.Call):
        if not node.keywords:
            return ast.get_source_segment(code, node)
        item = _pythonic_call(node, code, True)
        if item.error:
            raise _NotLiteral(item.error)
        return {item.name: item.arguments}
    if isinstance(node, ast.Subscript):
        return ast.get_source_segment(code, node)
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        return _fold(node, code)
    raise _NotLiteral(f"{_clip(ast.get_source_segment(code, node) or '')!r} is not a value BFCL can read")


def _fold(node: ast.BinOp, code: str) -> Any:
    left, right = _literal(node.left, code, True), _literal(node.right, code, True)
    numbers = _is_number(left) and _is_number(right)
    strings = isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str)
    if not (numbers or strings):
        raise _NotLiteral("only arithmetic on numbers (or joining strings) is folded")
    if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
        raise _NotLiteral("the power is too large to fold")
    if isinstance(node.op, ast.Mult) and numbers and abs(left) * abs(right) > 1e300:
        raise _NotLiteral("the product is too large to fold")
    try:
        return _FOLD[type(node.op)](left, right)
    except (ArithmeticError, ValueError) as exc:
        raise _NotLiteral(f"cannot fold: {exc}") from exc
