"""A scripted engine for TUI tests that must not depend on what a model writes.

It streams fixed replies through the real agent loop (parser, validation, approval, sandbox),
so the screens see exactly the events a model run produces, with stats that do not vary.
The tokenizer is one token per character with a ChatML template: enough for the agent's
prompt bookkeeping, which is all the agent asks of it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from optiq_runtime.engine import Step
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import GenerationStats


class CharTokenizer:
    """One token per character; ChatML rendering of messages and tool calls."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def apply_chat_template(
        self, messages, tools=None, add_generation_prompt=True, enable_thinking=False, tokenize=False
    ):
        parts = []
        if tools:
            parts.append("<|im_start|>system\n# Tools\n" + "\n".join(json.dumps(t) for t in tools) + "<|im_end|>\n")
        for message in messages:
            content = message.get("content") or ""
            for call in message.get("tool_calls", []):
                content += "\n<tool_call>" + json.dumps(call["function"], default=str) + "</tool_call>"
            parts.append(f"<|im_start|>{message['role']}\n{content}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)


def fixed_stats(prompt_tokens: int, tokens: int, finish: str) -> GenerationStats:
    """Stats that read 42.5 tok/s and 75 % acceptance whatever the machine's speed."""
    return GenerationStats(
        prompt_tokens=prompt_tokens,
        tokens=tokens,
        prefill_s=prompt_tokens / 250,
        decode_s=2.0,
        decode_tokens=85,
        drafted=[4, 4],
        accepted=[3, 3],
        mtp_used=True,
        finish_reason=finish,
    )


def python_call(code: str) -> str:
    return f"<tool_call>\n<function=run_python>\n<parameter=code>\n{code}\n</parameter>\n</function>\n</tool_call>"


def call(name: str, **arguments: str) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in arguments.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


class ScriptedEngine:
    """Replies in order, streamed a few characters per step; ``delay`` slows each step."""

    def __init__(self, replies: list[str], delay: float = 0.0, chunk: int = 4):
        self.replies = list(replies)
        self.delay = delay
        self.chunk = chunk
        self.tokenizer = CharTokenizer()
        self.model_path = Path("/models/tiny-agent-optiq")
        self.mtp_available = True
        self.mtp_enabled = True
        self.mtp_depth = 2
        self.mtp_decision = None
        self.context_length = None
        self.last_stats = GenerationStats()
        self.prompts: list[list[int]] = []
        self.started = threading.Event()

    def stream(self, prompt_tokens, sampling=Sampling(), *, stop=None, should_stop=None, guide=None):
        self.prompts.append(list(prompt_tokens))
        reply = self.replies.pop(0) if self.replies else "(no more scripted replies)"
        self.started.set()
        self.last_stats = fixed_stats(len(prompt_tokens), len(reply), "stop")
        for start in range(0, len(reply), self.chunk):
            if should_stop is not None and should_stop():
                self.last_stats.finish_reason = "interrupted"
                return
            if self.delay:
                time.sleep(self.delay)
            piece = reply[start : start + self.chunk]
            yield Step(tokens=[ord(c) for c in piece], text=piece)
