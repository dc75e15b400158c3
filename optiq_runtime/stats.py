"""What one generation measured, and the rule that turns MTP off when it stops paying."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class GenerationStats:
    """Counts and speeds of one ``Engine.stream`` call."""

    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0
    tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_tokens: int = 0  # tokens after the first (which the prefill produces)
    depth: int = 0
    drafted: list[int] = field(default_factory=list)  # per draft position
    accepted: list[int] = field(default_factory=list)
    steps: int = 0  # main-model forward passes while decoding (verifications and plain steps)
    mtp_used: bool = False
    fallback_reason: str | None = None
    finish_reason: str = ""

    @property
    def prefill_tok_s(self) -> float:
        new = self.prompt_tokens - self.reused_prompt_tokens
        return new / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0

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
        for name in ("prefill_tok_s", "decode_tok_s", "acceptance", "acceptance_per_position", "tokens_per_step"):
            data[name] = getattr(self, name)
        return data


@dataclass
class SpeedGuard:
    """Compares MTP rounds of a run with the plain step time; says when MTP became a loss.

    The first round is left out (first-call allocations). ``min_rounds`` rounds are timed
    before any verdict, so a few unlucky drafts do not turn MTP off.
    """

    plain_step_s: float
    min_rounds: int = 4
    rounds: int = 0
    seconds: float = 0.0
    tokens: int = 0

    def record(self, seconds: float, tokens: int) -> None:
        self.rounds += 1
        if self.rounds > 1:
            self.seconds += seconds
            self.tokens += tokens

    @property
    def speedup(self) -> float:
        return self.tokens * self.plain_step_s / self.seconds if self.seconds > 0 else 1.0

    def verdict(self, acceptance: float) -> str | None:
        """A reason to fall back to plain decoding, or None to keep MTP."""
        if self.rounds <= self.min_rounds or self.speedup >= 1.0:
            return None
        return (
            f"MTP off for this run: acceptance {acceptance:.0%} made it {self.speedup:.2f}x "
            f"plain speed ({self.tokens / self.seconds:.1f} vs {1 / self.plain_step_s:.1f} tok/s)"
        )
