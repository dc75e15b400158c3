"""A scripted engine for the server's tests: plays the model's side, token by token, at a chosen pace."""

from __future__ import annotations

import threading
import time

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Step
from optiq_runtime.load import load_tokenizer
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import GenerationStats


class ScriptedEngine:
    """Plays the model's side: each ``stream`` call emits the next scripted output token by token."""

    def __init__(self, outputs: list[str], step_s: float = 0.0):
        self.tokenizer = load_tokenizer(embedded_base_path())
        self.model_path = embedded_base_path()
        self.mtp_enabled, self.mtp_depth, self.mtp_available, self.mtp_decision = False, 2, False, None
        self.context_length = self.tokenizer.model_max_length  # as the real engine reports tiny-agent's
        self.outputs = list(outputs)
        self.step_s = step_s
        self.last_stats = GenerationStats()
        self.started = threading.Event()
        self.stopped_early = threading.Event()
        self.prompts: list[list[int]] = []

    def stream(self, prompt_tokens, sampling=Sampling(), *, stop=None, should_stop=None, guide=None):
        prompt, max_tokens = prompt_tokens, sampling.max_tokens
        self.prompts.append(list(prompt))
        ids = self.tokenizer.encode(self.outputs.pop(0), add_special_tokens=False)
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), finish_reason="eos")
        self.started.set()
        try:
            for index, token in enumerate(ids[:max_tokens]):
                if should_stop and should_stop():
                    self.last_stats.finish_reason = "interrupted"
                    self.stopped_early.set()
                    return
                time.sleep(self.step_s)
                self.last_stats.tokens = index + 1
                yield Step([token], self.tokenizer.decode([token]))
        except GeneratorExit:
            self.stopped_early.set()
            raise
        if len(ids) >= max_tokens:
            self.last_stats.finish_reason = "length"


def call_text(name: str, **arguments) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in arguments.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"
