"""Turning a chat request into prompt tokens, and keeping the tokens of the last exchange for the next one.

Clients send the whole conversation every time. Re-rendering it does not give back the tokens the
engine saw (the template drops earlier think blocks; generated text can re-tokenize differently),
so the engine could reuse only the previous prompt, not the answer after it. When a request is the
previous one plus the answer this server gave plus new messages, the prompt is built from the exact
tokens seen so far and the template's rendering of the new messages (``agent.chat``), and the
engine's cache covers all of it.

``tool_choice`` is enforced in the prompt: ``required`` and a named function prefill the opening of
a call (``<tool_call>\\n<function=NAME>\\n`` for Qwen XML templates, the Hermes JSON head otherwise),
so the model can only continue a call; ``none`` is enforced while decoding (see ``completion``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError

from agent.chat import ChatRenderer
from agent.serve.errors import bad_request
from agent.serve.schema import ChatRequest, NamedToolChoice, arguments_object

# ChatML control tokens a model may emit instead of its end-of-turn token; never shown as content.
END_MARKERS = ("<|im_start|>", "<|endoftext|>")


@dataclass
class Plan:
    """What to generate for one request."""

    tokens: list[int]
    tools: list[dict[str, Any]] | None
    prefill: str = ""  # call markup already in the prompt, fed to the parser before the output
    in_reasoning: bool = False
    allow_calls: bool = True
    end_markers: tuple[str, ...] = ()  # control tokens that can only mean the turn is over
    key: tuple = ()
    messages: list[tuple] = field(default_factory=list)  # the request's messages, in comparable form


@dataclass
class _Seen:
    key: tuple
    messages: list[tuple]
    tokens: list[int]


class PromptBuilder:
    """Builds prompts for one tokenizer; remembers the last clean exchange to extend it token for token."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.xml_calls = "<function=" in str(getattr(tokenizer, "chat_template", "") or "")
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        self.end_markers = tuple(m for m in END_MARKERS if m in vocab)
        self._seen: _Seen | None = None

    def build(self, request: ChatRequest) -> Plan:
        tools = request.tool_dicts()
        renderer = ChatRenderer(self.tokenizer, tools, request.enable_thinking)
        messages = [template_message(m, i) for i, m in enumerate(request.messages)]
        key = (json.dumps(tools, sort_keys=True), request.enable_thinking)
        comparable = [comparable_message(m) for m in messages]
        in_reasoning = _ending_thinking(renderer)
        tokens = self._extension(key, comparable, messages, renderer)
        if tokens is None:
            tokens = _render(renderer, messages)
        choice = request.tool_choice
        allow_calls = bool(tools) and choice != "none"
        prefill = self._prefill(choice, tools, in_reasoning) if allow_calls else ""
        if prefill:
            tokens = tokens + renderer.encode(prefill)
            in_reasoning = False
        return Plan(tokens, tools, prefill, in_reasoning, allow_calls, self.end_markers, key, comparable)

    def remember(self, plan: Plan, reply: dict[str, Any] | None, generated: list[int]) -> None:
        """Record the exchange (``reply`` None: it ended uncleanly, e.g. at a stop string; forget it)."""
        if reply is None:
            self._seen = None
            return
        self._seen = _Seen(plan.key, plan.messages + [comparable_message(reply)], plan.tokens + list(generated))

    def _extension(self, key, comparable, messages, renderer: ChatRenderer) -> list[int] | None:
        seen = self._seen
        if seen is None or seen.key != key or len(comparable) <= len(seen.messages):
            return None
        if comparable[: len(seen.messages)] != seen.messages:
            return None
        new = messages[len(seen.messages) :]
        if any(m["role"] == "assistant" for m in new):
            return None
        close = renderer.close_ids()
        ending = close[1:] if close and seen.tokens[-1] == close[0] else close
        try:
            return seen.tokens + ending + renderer.continuation(new)
        except (ValueError, TemplateError):
            return None  # a template that does not split cleanly at turns: render it whole

    def _prefill(self, choice, tools, in_reasoning: bool) -> str:
        name: str | None
        if isinstance(choice, NamedToolChoice):
            name = choice.function.name
        elif choice == "required":
            name = tools[0]["function"]["name"] if len(tools) == 1 else None
        else:
            return ""
        think = "</think>\n\n" if in_reasoning else ""
        if self.xml_calls:
            return think + ("<tool_call>\n<function=" + (f"{name}>\n" if name else ""))
        return think + ('<tool_call>\n{"name": "' + (f'{name}", "arguments": ' if name else ""))


def _render(renderer: ChatRenderer, messages: list[dict[str, Any]]) -> list[int]:
    try:
        return renderer.full(messages)
    except TemplateError as error:
        raise bad_request(f"the model's chat template refused these messages: {error}", "messages") from None


def _ending_thinking(renderer: ChatRenderer) -> bool:
    try:
        return renderer.ending_thinking()
    except TemplateError:
        return False


def template_message(message, index: int) -> dict[str, Any]:
    """A request message in the form chat templates take (arguments as objects, developer as system)."""
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.text()}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": arguments_object(
                        call.function.arguments, f"messages.{index}.tool_calls.{n}.function.arguments"
                    ),
                },
            }
            for n, call in enumerate(message.tool_calls)
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def comparable_message(message: dict[str, Any]) -> tuple:
    """What must match for a sent-back message to be the one seen: role, text, calls (ids aside)."""
    calls = tuple(
        (c["function"]["name"], json.dumps(c["function"]["arguments"], sort_keys=True))
        for c in message.get("tool_calls") or []
    )
    return (message["role"], (message.get("content") or "").strip(), calls)
