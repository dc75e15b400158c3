"""Guided tool calls: while the model writes a name in a Qwen XML tool call, only offered names fit.

A small model often knows it must call a tool and copies the values right, yet writes a function
or parameter name it remembers instead of one in the ``<tools>`` block. The guide watches the
generated text; inside ``<function=`` it allows only tokens that continue the name of an offered
function up to its ``>``, and inside ``<parameter=`` only the parameters of the function being
called that the call has not named yet. Between parameters, while the schema's required ones are
not all given, the call cannot close: the next parameter to open is a missing required one.
Everywhere else (values, prose, other call formats) the model is free. The engine applies it as a mask over the logits, so greedy decoding takes
the model's best allowed token and sampling draws from its distribution renormalised on them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
FUNCTION_OPEN, PARAMETER_OPEN, PARAMETER_CLOSE = "<function=", "<parameter=", "</parameter>"
_NAMED_PARAMETER = re.compile(r"<parameter=([^>\n]+)>")


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
    def of(cls, tokenizer: Any) -> "TokenPieces":
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
    """A name being written: what is typed so far and the names that may complete it."""

    typed: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Signature:
    """A function's parameter names, and those its schema requires."""

    params: tuple[str, ...]
    required: tuple[str, ...] = ()


def tool_parameters(tools: Sequence[dict] | None) -> dict[str, Signature]:
    """Function name -> its signature, from OpenAI tool dicts or bare function docs."""
    functions: dict[str, Signature] = {}
    for tool in tools or []:
        spec = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            continue
        schema = spec.get("parameters") if isinstance(spec.get("parameters"), dict) else {}
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else []
        functions[spec["name"]] = Signature(tuple(properties), tuple(p for p in properties if p in required))
    return functions


def open_slot(text: str, functions: dict[str, Signature]) -> Slot | None:
    """The name slot ``text`` ends in, if any: a function name, a parameter name of the open call,
    or, between parameters while a required one is missing, the opening of a parameter."""
    call = text.rfind(CALL_OPEN)
    if call < 0 or text.rfind(CALL_CLOSE) > call:
        return None
    function = text.rfind(FUNCTION_OPEN, call)
    if function < 0:
        return None
    head = text[function + len(FUNCTION_OPEN):]
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
        return Slot(body[parameter + len(PARAMETER_OPEN):], left) if left else None
    return _next_parameter(body, signature, given)


def _next_parameter(body: str, signature: Signature, given: set[str]) -> Slot | None:
    """Between parameters (or right after the function's name): a missing required parameter opens next."""
    end = body.rfind(PARAMETER_CLOSE)
    if body.rfind(PARAMETER_OPEN) > end:
        return None  # inside a value
    missing = [p for p in signature.required if p not in given]
    if not missing:
        return None
    between = body[end + len(PARAMETER_CLOSE):] if end >= 0 else body
    return Slot(between, tuple("\n" + PARAMETER_OPEN + p for p in missing))


class CallGuide:
    """Allowed next tokens for a generation, given the tools it may call (see the module docstring)."""

    def __init__(self, pieces: TokenPieces, functions: dict[str, Signature], prefix: str = ""):
        self.pieces = pieces
        self.functions = functions
        self.prefix = prefix  # text the prompt already put in the answer (a forced call's opening)
        self._seen: list[int] = []
        self._text = prefix
        self._allowed: frozenset[int] | None = None

    @classmethod
    def for_tools(cls, tokenizer: Any, tools: Sequence[dict] | None, prefix: str = "") -> "CallGuide | None":
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
        if ids != self._seen or not ids:
            slot = open_slot(self._follow(ids), self.functions)
            self._allowed = self._fitting(slot) if slot is not None else None
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

    def _fitting(self, slot: Slot) -> frozenset[int] | None:
        """Tokens that keep ``slot.typed`` on the way to one of its names and the ``>`` after it."""
        rests = [name + ">" for name in slot.names]
        rests = [rest[len(slot.typed):] for rest in rests if rest.startswith(slot.typed)]
        if not rests:
            return None  # the text left every name behind (it began inside a token): do not steer
        allowed: set[int] = set()
        for rest in rests:
            for end in range(1, len(rest) + 1):
                allowed.update(self.pieces.exactly(rest[:end]))
            allowed.update(self.pieces.starting_with(rest))
        return frozenset(allowed) or None
