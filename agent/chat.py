"""Rendering the conversation into prompt tokens with the tokenizer's chat template.

The engine reuses its prompt cache only when a new prompt extends the previous prompt plus
generation, token for token. Re-rendering the whole history does not give that: Qwen3.5's template
drops earlier turns' think blocks, and re-tokenizing generated text can split it differently. So a
``Transcript`` keeps the exact tokens the engine has seen and appends to them only the template's
rendering of the new messages (tool results, the next user message) and the generation prompt.
That rendering is cut out of a probe conversation at a sentinel, which works for any template.
"""

from __future__ import annotations

from typing import Any

_SENTINEL = "\u2063optiq-sentinel\u2063"


class ChatRenderer:
    """The tokenizer's chat template with a fixed tool list and thinking setting."""

    def __init__(self, tokenizer: Any, tools: list[dict[str, Any]] | None, enable_thinking: bool = False):
        self.tokenizer = tokenizer
        self.tools = tools or None
        self.enable_thinking = enable_thinking
        self._close_ids: list[int] | None = None

    def text(self, messages: list[dict[str, Any]], generation_prompt: bool = True) -> str:
        """The template's text for ``messages``."""
        return self.tokenizer.apply_chat_template(
            messages,
            tools=self.tools,
            add_generation_prompt=generation_prompt,
            enable_thinking=self.enable_thinking,
            tokenize=False,
        )

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def full(self, messages: list[dict[str, Any]]) -> list[int]:
        """The whole conversation and the generation prompt."""
        return self.encode(self.text(messages))

    def close_ids(self) -> list[int]:
        """The tokens that end an assistant turn (``<|im_end|>\\n`` for Qwen)."""
        if self._close_ids is None:
            text = self.text(_probe([]), generation_prompt=False)
            self._close_ids = self.encode(text[text.index(_SENTINEL) + len(_SENTINEL) :])
        return self._close_ids

    def continuation(self, new_messages: list[dict[str, Any]]) -> list[int]:
        """The tokens that follow a closed assistant turn: ``new_messages`` and the generation prompt."""
        text = self.text(_probe(new_messages))
        after = self.encode(text[text.index(_SENTINEL) + len(_SENTINEL) :])
        close = self.close_ids()
        if after[: len(close)] != close:
            raise ValueError("the chat template does not end an assistant turn the same way twice")
        return after[len(close) :]

    def ending_thinking(self) -> bool:
        """Whether the generation prompt leaves the model inside a think block (output starts as reasoning)."""
        prompt = self.text([{"role": "user", "content": "x"}]).rstrip()
        return prompt.endswith("<think>")


def _probe(new_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}, *new_messages]


class Transcript:
    """The exact token sequence the engine has seen, extended turn by turn.

    ``prompt(messages, new)`` gives the next prompt: the seen tokens, the end of the last assistant
    turn, and the rendering of ``new``; or the full rendering of ``messages`` when nothing has been
    seen yet (first turn, after ``reset``, after the history was trimmed).
    """

    def __init__(self, renderer: ChatRenderer):
        self.renderer = renderer
        self.tokens: list[int] = []

    def reset(self) -> None:
        self.tokens = []

    def prompt(self, messages: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[int]:
        if not self.tokens:
            self.tokens = self.renderer.full(messages)
            return list(self.tokens)
        close = self.renderer.close_ids()
        # The engine may or may not report the end-of-turn token it stopped on.
        ending = close[1:] if close and self.tokens[-1] == close[0] else close
        self.tokens += ending + self.renderer.continuation(new)
        return list(self.tokens)

    def generated(self, token_ids: list[int]) -> None:
        """Record the tokens the model produced after the last prompt."""
        self.tokens += token_ids
