"""What one generation measured, and the rule that turns MTP off when it stops paying."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import asdict, dataclass, field


@dataclass
class GenerationStats:
    """Counts and speeds of one ``Engine.stream`` call."""

    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_cpu_s: float = 0.0  # CPU time of this process while decoding: steadier than wall time on a shared machine
    decode_tokens: int = 0  # tokens after the first (which the prefill produces)
    depth: int = 0
    # Per draft position i: rounds that drafted it, and rounds that accepted it (and so every
    # draft before it): acceptance_per_position[1] is P(first two accepted), not conditional.
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    steps: int = 0  # main-model forward passes while decoding (verifications and plain steps)
    mtp_used: bool = False
    round_cost: float | None = None  # median MTP round time in plain steps: MTP pays above this many tokens per round
    fallback_reason: str | None = None
    mtp_reason: str = ""  # the policy's decision for this run ("MTP off: a round costs 3.50 steps for 1.60 tokens")
    mtp_predicted: float | None = None  # the cost model's speed-up for that decision
    # Durations of the timed plain steps (all but a run's first) and of the MTP rounds, for the cost model.
    plain_step_s: list[float] = field(default_factory=list)
    round_s: list[float] = field(default_factory=list)
    # From the start of each timed step or round to the start of the next: the decode loop's whole iteration
    # (what the caller does with the tokens, the waits for a busy CPU), as the cost model measures them.
    plain_iteration_s: list[float] = field(default_factory=list)
    round_iteration_s: list[float] = field(default_factory=list)
    finish_reason: str = ""

    @property
    def prefill_tok_s(self) -> float:
        new = self.prompt_tokens - self.reused_prompt_tokens
        return new / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def decode_cpu_tok_s(self) -> float:
        return self.decode_tokens / self.decode_cpu_s if self.decode_cpu_s > 0 else 0.0

    @property
    def acceptance(self) -> float:
        drafted = sum(self.drafted)
        return sum(self.accepted) / drafted if drafted else 0.0

    @property
    def acceptance_per_position(self) -> list[float]:
        return [a / d if d else 0.0 for a, d in zip(self.accepted, self.drafted)]

    @property
    def tokens_per_step(self) -> float:
        return self.decode_tokens / self.steps if self.steps else 0.0

    def record_round(self, accepted: int, drafted: int) -> None:
        if len(self.drafted) < drafted:
            self.drafted += [0] * (drafted - len(self.drafted))
            self.accepted += [0] * (drafted - len(self.accepted))
        for position in range(drafted):
            self.drafted[position] += 1
            self.accepted[position] += position < accepted

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in (
            "prefill_tok_s",
            "decode_tok_s",
            "decode_cpu_tok_s",
            "acceptance",
            "acceptance_per_position",
            "tokens_per_step",
        ):
            data[name] = getattr(self, name)
        return data


class StepTimes:
    """Recent step durations; their median shrugs off the odd slow step (a graph compiling, a busy CPU)."""

    def __init__(self, keep: int = 64):
        self._times: deque[float] = deque(maxlen=keep)

    def __len__(self) -> int:
        return len(self._times)

    def add(self, seconds: float) -> None:
        self._times.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self._times)


@dataclass
class SpeedGuard:
    """Compares a run's MTP rounds with the plain step time; says when MTP became a loss.

    Speed is tokens per round over the median round time, so a round that compiled a graph
    does not count. ``min_rounds`` rounds come before any verdict.
    """

    plain_step_s: float
    min_rounds: int = 3
    tokens: int = 0
    count: int = 0
    rounds: StepTimes = field(default_factory=StepTimes)

    def record(self, seconds: float, tokens: int) -> None:
        self.rounds.add(seconds)
        self.tokens += tokens
        self.count += 1

    @property
    def speedup(self) -> float:
        if not len(self.rounds):
            return 1.0
        return self.tokens / self.count * self.plain_step_s / self.rounds.median

    def verdict(self, acceptance: float) -> str | None:
        """A reason to fall back to plain decoding, or None to keep MTP."""
        if len(self.rounds) < self.min_rounds or self.speedup >= 1.0:
            return None
        mtp_tok_s = self.speedup / self.plain_step_s
        return (
            f"MTP off for this run: acceptance {acceptance:.0%} made it {self.speedup:.2f}x "
            f"plain speed ({mtp_tok_s:.1f} vs {1 / self.plain_step_s:.1f} tok/s)"
        )


@dataclass
class MtpHistory:
    """The speedups the guard measured in recent runs: while all of them say MTP loses, runs skip it.

    Every ``retry_every`` skipped runs, one run tries MTP again (the text may have changed).
    """

    keep: int = 3
    retry_every: int = 8
    speedups: deque = field(default_factory=deque)
    skipped: int = 0

    def record(self, speedup: float) -> None:
        self.speedups.append(speedup)
        while len(self.speedups) > self.keep:
            self.speedups.popleft()

    def skip_reason(self) -> str | None:
        """Why this run should decode plainly from the start, or None to try MTP."""
        if len(self.speedups) < self.keep or max(self.speedups) >= 1.0:
            return None
        if self.skipped >= self.retry_every:
            self.skipped = 0
            return None
        self.skipped += 1
        return (
            f"MTP off for this run: the last {self.keep} runs measured it at {max(self.speedups):.2f}x "
            f"plain speed or less (tried again every {self.retry_every + 1} runs)"
        )
