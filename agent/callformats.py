"""How one tool call reads in each format: a Qwen XML or Hermes JSON ``<tool_call>`` block, or BFCL's pythonic list.

The stream state machine in ``agent.toolcalls`` finds the blocks; this module reads them. Nothing is evaluated:
pythonic calls are read with ``ast`` and only literals (plus JSON ``true/false/null``) are accepted.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
CODE_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)```", re.DOTALL)
LOOKS_LIKE_CALL = re.compile(r"\[?\s*[A-Za-z_][A-Za-z0-9_.]*\s*\(")


@dataclass
class ReadCall:
    """One call as read from the text, or why it could not be read (``error``)."""

    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    error: str | None = None
    strings: bool = False  # values are XML text, to be coerced by schema


def parse_block(body: str, fmt: str) -> list[ReadCall]:
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
    items: list[ReadCall] = []
    pos = 0
    while True:
        while pos < len(body) and body[pos].isspace():
            pos += 1
        if pos >= len(body):
            return items
        if not body.startswith("<function=", pos):
            nxt = body.find("<function=", pos)
            end = len(body) if nxt < 0 else nxt
            items.append(
                ReadCall(
                    raw=body[pos:end],
                    error=f"unexpected text {_clip(body[pos:end])!r} in the tool call; "
                    "each call is <function=NAME>...</function>",
                )
            )
            pos = end
            continue
        item, pos = _parse_function(body, pos)
        items.append(item)


def _parse_function(body: str, pos: int) -> tuple[ReadCall, int]:
    gt = body.find(">", pos)
    name = body[pos + len("<function=") : gt] if gt >= 0 else ""
    if gt < 0 or not name.strip() or "\n" in name:
        return ReadCall(
            raw=body[pos:], error="could not read the function name; write <function=NAME> on its own line"
        ), len(body)
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
            return {}, (
                f"{name}: unexpected text {_clip(inner[pos:])!r}; each argument is <parameter=KEY>\nVALUE\n</parameter>"
            )
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
        return [
            ReadCall(
                raw=raw,
                error=f"the tool call is not valid JSON ({exc}); "
                'write {"name": ..., "arguments": {...}} inside <tool_call>',
            )
        ]
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


def pythonic_answer(answer: str) -> list[tuple[ReadCall | None, str]]:
    """The answer's calls in order, with any text outside a code fence as ``(None, text)``."""
    fence = CODE_FENCE.search(answer)
    if fence:
        before, code, after = answer[: fence.start()], fence.group(1), answer[fence.end() :]
    else:
        before, code, after = "", answer, ""
    if not LOOKS_LIKE_CALL.match(code.strip()) and code.strip() != "[]":
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
        return [
            ReadCall(
                raw=code,
                error=f"could not read the calls as Python ({_reason(exc)}); write [func(arg=value, ...), ...]",
            )
        ]
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
        return ReadCall(
            name=name,
            raw=raw,
            error=f"{name}: positional arguments are not allowed; name each one, as in func(arg=value)",
        )
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
