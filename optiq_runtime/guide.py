"""Guided tool calls: while the model writes a name in a Qwen XML tool call, only offered names fit.

A small model often knows it must call a tool and copies the values right, yet writes a function
or parameter name it remembers instead of one in the ``<tools>`` block. The guide watches the
generated text; inside ``<function=`` it allows only tokens that continue the name of an offered
function up to its ``>``, and inside ``<parameter=`` only the parameters of the function being
called that the call has not named yet; a parameter whose schema closes its values (an enum, a
boolean) takes one of them. Between parameters, while the schema's required ones are
not all given, the call cannot close: the next parameter to open is a missing required one; once
every parameter is given, the call closes (no parameter the function lacks can open), and after
``</function>`` only ``</tool_call>`` follows (a sampled call cannot trail off into prose unclosed).
In a Hermes JSON call only the function's name is guided. Everywhere else (values, prose,
pythonic calls) the model is free. The engine applies it as a mask over the logits, so greedy decoding takes
the model's best allowed token and sampling draws from its distribution renormalised on them.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
FUNCTION_OPEN, PARAMETER_OPEN, PARAMETER_CLOSE = "<function=", "<parameter=", "</parameter>"
FUNCTION_CLOSE = "</function>"
_NAMED_PARAMETER = re.compile(r"<parameter=([^>\n]+)>")
# A Hermes JSON call (Qwen2.5, Qwen3) whose name is being written: <tool_call>\n{"name": "get_we
_HERMES_NAME = re.compile(r'\s*\{\s*"name"\s*:\s*"([^"\\]*)\Z')


class TokenPieces:
    """Each token id's text, with lookups by exact text and by prefix."""

    def __init__(self, pieces: Sequence[str]):
        self.pieces = list(pieces)
        self._by_text: dict[str, list[int]] = {}
        for token, piece in enumerate(self.pieces):
            if piece:
                self._by_text.setdefault(piece, []).append(token)
        self._sorted = sorted(self._by_text)

    @classmethod
    def of(cls, tokenizer: Any) -> TokenPieces:
        """The pieces of ``tokenizer``'s vocabulary (built once per tokenizer object)."""
        cached = _PIECES.get(id(tokenizer))
        if cached is not None and cached[0] is tokenizer:
            return cached[1]
        size = max(tokenizer.get_vocab().values()) + 1
        ids = [[i] for i in range(size)]
        if hasattr(tokenizer, "batch_decode"):  # keep each piece as written (no space clean-up)
            pieces = cls(tokenizer.batch_decode(ids, clean_up_tokenization_spaces=False))
        else:
            pieces = cls([tokenizer.decode(i) for i in ids])
        _PIECES[id(tokenizer)] = (tokenizer, pieces)
        return pieces

    def text(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces[i] if 0 <= i < len(self.pieces) else "" for i in ids)

    def exactly(self, text: str) -> list[int]:
        return self._by_text.get(text, [])

    def starting_with(self, text: str) -> list[int]:
        start = bisect.bisect_left(self._sorted, text)
        found: list[int] = []
        for piece in self._sorted[start:]:
            if not piece.startswith(text):
                break
            found += self._by_text[piece]
        return found


_PIECES: dict[int, tuple[Any, TokenPieces]] = {}


@dataclass(frozen=True)
class Slot:
    """A name (or a value from a closed set) being written: what is typed so far, the names that may
    complete it, and the text that ends each of them."""

    typed: str
    names: tuple[str, ...]
    end: str = ">"


@dataclass(frozen=True)
class Signature:
    """A function's parameter names, those its schema requires, and the values of closed-set ones."""

    params: tuple[str, ...]
    required: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _dict_or_empty(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list_or_empty(value: Any) -> list:
    return value if isinstance(value, list) else []


def tool_parameters(tools: Sequence[dict] | None) -> dict[str, Signature]:
    """Function name -> its signature, from OpenAI tool dicts or bare function docs."""
    functions: dict[str, Signature] = {}
    for tool in tools or []:
        spec = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            continue
        schema = _dict_or_empty(spec.get("parameters"))
        properties = _dict_or_empty(schema.get("properties"))
        required = _list_or_empty(schema.get("required"))
        choices = {p: c for p, prop in properties.items() if (c := value_choices(prop))}
        functions[spec["name"]] = Signature(tuple(properties), tuple(p for p in properties if p in required), choices)
    return functions


def value_choices(prop: Any) -> tuple[str, ...]:
    """The texts an XML call may give a parameter with a closed set of values (enum, boolean); () if open."""
    if not isinstance(prop, dict):
        return ()
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        return tuple(v if isinstance(v, str) else json.dumps(v) for v in prop["enum"])
    return ("true", "false") if prop.get("type") in ("boolean", "bool") else ()


def open_slot(text: str, functions: dict[str, Signature]) -> Slot | None:
    """The name slot ``text`` ends in, if any: a function name, a parameter name of the open call,
    or, between parameters while a required one is missing, the opening of a parameter."""
    call = text.rfind(CALL_OPEN)
    if call < 0 or text.rfind(CALL_CLOSE) > call:
        return None
    function = text.rfind(FUNCTION_OPEN, call)
    if function < 0:
        hermes = _HERMES_NAME.match(text, call + len(CALL_OPEN))
        return Slot(hermes.group(1), tuple(functions), '"') if hermes else None
    head = text[function + len(FUNCTION_OPEN) :]
    if ">" not in head:
        return Slot(head, tuple(functions))
    name, body = head.split(">", 1)
    signature = functions.get(name.strip())
    if signature is None:
        return None
    given = set(_NAMED_PARAMETER.findall(body))
    parameter = body.rfind(PARAMETER_OPEN)
    if parameter >= 0 and ">" not in body[parameter:]:
        left = tuple(p for p in signature.params if p not in given)
        return Slot(body[parameter + len(PARAMETER_OPEN) :], left) if left else None
    if parameter > body.rfind(PARAMETER_CLOSE):
        return _value(body[parameter + len(PARAMETER_OPEN) :], signature)
    return _next_parameter(body, signature, given)


def _value(opened: str, signature: Signature) -> Slot | None:
    """Inside a value (``opened`` is ``NAME>`` and the value so far): steered only for a closed set."""
    name, value = opened.split(">", 1)
    choices = signature.choices.get(name.strip())
    return Slot(value, tuple("\n" + c for c in choices), "\n" + PARAMETER_CLOSE) if choices else None


def _next_parameter(body: str, signature: Signature, given: set[str]) -> Slot | None:
    """Between parameters (or right after the function's name): a missing required parameter opens next,
    with every parameter given the function closes, and once it has closed only the call's end follows."""
    end = body.rfind(PARAMETER_CLOSE)
    between = body[end + len(PARAMETER_CLOSE) :] if end >= 0 else body
    if FUNCTION_CLOSE in between:
        return Slot(between.split(FUNCTION_CLOSE, 1)[1], ("\n" + CALL_CLOSE,), end="")
    missing = [p for p in signature.required if p not in given]
    if missing:
        return Slot(between, tuple("\n" + PARAMETER_OPEN + p for p in missing))
    if signature.params and set(signature.params) <= given:
        return Slot(between, ("\n" + FUNCTION_CLOSE,), end="")
    return None


class CallGuide:
    """Allowed next tokens for a generation, given the tools it may call (see the module docstring)."""

    def __init__(self, pieces: TokenPieces, functions: dict[str, Signature], prefix: str = ""):
        self.pieces = pieces
        self.functions = functions
        self.prefix = prefix  # text the prompt already put in the answer (a forced call's opening)
        self._seen: list[int] = []
        self._text = prefix
        self._allowed = self._tokens_after(prefix)

    @classmethod
    def for_tools(cls, tokenizer: Any, tools: Sequence[dict] | None, prefix: str = "") -> CallGuide | None:
        """A guide over ``tools``; ``prefix`` is answer text the prompt holds.

        None when no tool is offered, or when the tokenizer lists no vocabulary to guide with.
        """
        functions = tool_parameters(tools)
        if not functions or not hasattr(tokenizer, "get_vocab"):
            return None
        return cls(TokenPieces.of(tokenizer), functions, prefix)

    def allowed(self, ids: Sequence[int]) -> frozenset[int] | None:
        """The token ids that may follow ``ids`` (the generation so far); None when any may."""
        ids = list(ids)
        if ids != self._seen:
            self._allowed = self._tokens_after(self._follow(ids))
        return self._allowed

    def permits(self, ids: Sequence[int], token: int) -> bool:
        allowed = self.allowed(ids)
        return allowed is None or token in allowed

    def _follow(self, ids: list[int]) -> str:
        """The text of ``ids``, extending the previous text when ``ids`` extends the previous ids."""
        n = len(self._seen)
        if ids[:n] != self._seen:
            self._text, n = self.prefix, 0
        self._text += self.pieces.text(ids[n:])
        self._seen = ids
        return self._text

    def _tokens_after(self, text: str) -> frozenset[int] | None:
        slot = open_slot(text, self.functions)
        return self._fitting(slot) if slot is not None else None

    def _fitting(self, slot: Slot) -> frozenset[int] | None:
        """Tokens that keep ``slot.typed`` on the way to one of its names and the end after it."""
        rests = [name + slot.end for name in slot.names]
        rests = [rest[len(slot.typed) :] for rest in rests if rest.startswith(slot.typed)]
        if not rests:
            return None  # the text left every name behind (it began inside a token): do not steer
        allowed: set[int] = set()
        for rest in rests:
            for end in range(1, len(rest) + 1):
                allowed.update(self.pieces.exactly(rest[:end]))
            allowed.update(self.pieces.starting_with(rest))
        return frozenset(allowed) or None
