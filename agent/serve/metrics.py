"""What ``GET /metrics`` reports, in Prometheus' text format: answers by status, queue, tokens/s, MTP acceptance.

Counters only grow while the server runs. Speeds are totals over totals (tokens over seconds of
all generations), so a long answer weighs more than a short one, as it does for the machine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from optiq_runtime.stats import GenerationStats


@dataclass
class Metrics:
    """Counters of one server; updated on its event loop."""

    statuses: Counter = field(default_factory=Counter)
    generations: int = 0
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_tokens: int = 0
    decode_s: float = 0.0
    prefill_s: float = 0.0
    drafted: int = 0
    accepted: int = 0
    interrupted: int = 0

    def answered(self, status: int) -> None:
        self.statuses[status] += 1

    def generated(self, stats: GenerationStats | None) -> None:
        """Add one finished (or stopped) generation."""
        if stats is None:
            return
        self.generations += 1
        self.prompt_tokens += stats.prompt_tokens
        self.reused_prompt_tokens += stats.reused_prompt_tokens
        self.generated_tokens += stats.tokens
        self.decode_tokens += stats.decode_tokens
        self.decode_s += stats.decode_s
        self.prefill_s += stats.prefill_s
        self.drafted += sum(stats.drafted)
        self.accepted += sum(stats.accepted)
        self.interrupted += stats.finish_reason == "interrupted"

    def render(self, *, waiting: int, generating: bool, model: str) -> str:
        lines: list[str] = []
        gauge = _family(lines)
        gauge("optiq_queue_waiting", "gauge", "requests waiting for the model", waiting)
        gauge("optiq_generating", "gauge", "1 while a generation runs", int(generating))
        lines.append(
            "# HELP optiq_requests_total HTTP answers by status (499: the client left before its answer began)"
        )
        lines.append("# TYPE optiq_requests_total counter")
        lines += [
            f'optiq_requests_total{{status="{status}"}} {count}' for status, count in sorted(self.statuses.items())
        ]
        gauge("optiq_generations_total", "counter", "generations run (stopped ones included)", self.generations)
        gauge(
            "optiq_generations_interrupted_total",
            "counter",
            "generations stopped because the client left",
            self.interrupted,
        )
        gauge("optiq_prompt_tokens_total", "counter", "prompt tokens of all generations", self.prompt_tokens)
        gauge(
            "optiq_reused_prompt_tokens_total",
            "counter",
            "prompt tokens taken from the cache",
            self.reused_prompt_tokens,
        )
        gauge("optiq_generated_tokens_total", "counter", "tokens generated", self.generated_tokens)
        gauge(
            "optiq_decode_tokens_per_second",
            "gauge",
            "decode speed over all generations",
            _ratio(self.decode_tokens, self.decode_s),
        )
        gauge(
            "optiq_prefill_tokens_per_second",
            "gauge",
            "prefill speed over all generations",
            _ratio(self.prompt_tokens - self.reused_prompt_tokens, self.prefill_s),
        )
        gauge("optiq_mtp_drafted_tokens_total", "counter", "tokens the MTP head drafted", self.drafted)
        gauge("optiq_mtp_accepted_tokens_total", "counter", "drafted tokens the model accepted", self.accepted)
        gauge(
            "optiq_mtp_acceptance",
            "gauge",
            "accepted over drafted tokens (NaN before any draft)",
            _ratio(self.accepted, self.drafted, empty=float("nan")),
        )
        lines.append(f'optiq_model_info{{model="{model}"}} 1')
        return "\n".join(lines) + "\n"


def _family(lines: list[str]):
    def add(name: str, kind: str, help_text: str, value: Any) -> None:
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"))

    return add


def _ratio(part: float, whole: float, empty: float = 0.0) -> float:
    return part / whole if whole else empty


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "NaN" if value != value else f"{value:.6g}"
    return str(value)
