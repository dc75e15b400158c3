"""Whether MTP decoding is on, at which depth, and why: the policy that decides it for every run.

``--mtp auto`` (the default) decides from a ``CostModel`` measured once per model build and
machine (see ``optiq_runtime.mtp_cost``): MTP is on, at the best depth, only where the predicted
speed-up is at least ``MIN_SPEEDUP``. ``--mtp on|off`` force it. Within a run the speed guard
still turns MTP off when it loses, and a history of such losses skips MTP in later runs.

``MtpPolicy`` owns that state (the plain step times, the history); ``RunMode`` is one run's use
of it, made by ``MtpPolicy.start_run``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from optiq_runtime.errors import BadInputError
from optiq_runtime.mtp_cost import CostModel
from optiq_runtime.stats import GenerationStats, MtpHistory, SpeedGuard, StepTimes

log = logging.getLogger("optiq")

MODES = ("auto", "on", "off")
DEFAULT_DEPTH = 2
MAX_DEPTH = 8
MIN_SPEEDUP = 1.05  # auto turns MTP on only when predicted at least this much faster
# Plain steps run first in an MTP run while the policy has too few plain step times (the first is not timed).
PROBE_STEPS = 4


@dataclass(frozen=True)
class Decision:
    """What the policy decided for the next runs: MTP on or off, the depth, why, and the predicted speed-up."""

    mtp: bool
    depth: int
    reason: str
    predicted: float | None = None  # the cost model's speed-up for this choice (None: no cost model)

    def to_dict(self) -> dict:
        return {"mtp": self.mtp, "depth": self.depth, "reason": self.reason, "predicted_speedup": self.predicted}


def parse_mode(value) -> str:
    """``auto``/``on``/``off`` from a flag value or a bool (True: on, False: off)."""
    if value is True or value is False:
        return "on" if value else "off"
    if value not in MODES:
        raise BadInputError(f"--mtp must be one of {', '.join(MODES)}; got {value!r}")
    return value


def check_depth(depth: int | None) -> int | None:
    if depth is not None and not 1 <= depth <= MAX_DEPTH:
        raise BadInputError(f"--mtp-depth must be between 1 and {MAX_DEPTH}; got {depth}")
    return depth


class MtpPolicy:
    """Decides MTP per run from the mode, the depth asked for and the cost model; owns the guard's memory."""

    def __init__(
        self, mode="auto", depth: int | None = None, *, available: bool = True, costs: CostModel | None = None
    ):
        self.mode = parse_mode(mode)
        self.depth = check_depth(depth)  # None: the cost model's best (DEFAULT_DEPTH when forced on)
        self.available = available
        self.costs = costs
        self.guard_enabled = True  # the in-run speed guard and the history of losses
        self.plain_times = StepTimes()
        self.history = MtpHistory()

    @property
    def decision(self) -> Decision:
        if not self.available:
            return Decision(False, 0, "MTP off: the model has no MTP head")
        if self.mode == "off":
            return Decision(False, 0, "MTP off (--mtp off)", self._predicted(1.0))
        if self.mode == "on":
            depth = self.depth or DEFAULT_DEPTH
            return Decision(True, depth, f"MTP on at depth {depth} (--mtp on)", self._predicted_at(depth))
        return self._auto()

    def _auto(self) -> Decision:
        if self.costs is None:
            return Decision(False, 0, "MTP off: not measured on this machine yet")
        depth = self.depth or self.costs.best_depth()
        if depth is None:
            return Decision(False, 0, "MTP off: no depth could be measured on this machine in the time allowed")
        if depth not in self.costs.depths:
            return Decision(False, 0, f"MTP off: depth {depth} was not measured on this machine")
        cost = self.costs.depths[depth]
        summary = f"a round costs {cost.round_cost:.2f} steps for {cost.tokens_per_round:.2f} tokens"
        if cost.speedup >= MIN_SPEEDUP:
            return Decision(True, depth, f"MTP on at depth {depth}: {summary} ({cost.speedup:.2f}x)", cost.speedup)
        return Decision(False, 0, f"MTP off: {summary} ({cost.speedup:.2f}x)", 1.0)

    def _predicted_at(self, depth: int) -> float | None:
        if self.costs is None or depth not in self.costs.depths:
            return None
        return self.costs.depths[depth].speedup

    def _predicted(self, value: float) -> float | None:
        return value if self.costs is not None else None

    def forget_history(self) -> None:
        """Forget what MTP was worth in past runs (not the plain step times)."""
        self.history = MtpHistory()

    def start_run(self, stats: GenerationStats) -> RunMode:
        return RunMode(self, stats)


class RunMode:
    """Plain steps or MTP rounds for one run: probes the plain step time when unknown, falls back when MTP loses."""

    def __init__(self, policy: MtpPolicy, stats: GenerationStats):
        self.policy, self.stats = policy, stats
        decision = policy.decision
        self.mtp, self.depth = decision.mtp, decision.depth
        stats.mtp_reason, stats.mtp_predicted = decision.reason, decision.predicted
        if self.mtp and policy.guard_enabled and (reason := policy.history.skip_reason()):
            self.mtp, stats.fallback_reason = False, reason
        stats.mtp_used, stats.depth = self.mtp, self.depth if self.mtp else 0
        known = len(policy.plain_times) >= PROBE_STEPS - 1
        self.probe = PROBE_STEPS if self.mtp and policy.guard_enabled and not known else 0
        self.guard: SpeedGuard | None = None
        self.plain_steps = 0
        self.rounds = 0
        self._open: tuple[list[float], float] | None = None  # a timed iteration's list and its start

    def advance(self, decoder, last: int, allowed=None):
        """The next tokens after ``last`` and how to commit a prefix of them (None: nothing to undo).

        A limited next token (``allowed``) is always a plain step: a round's drafts would be unguided.
        """
        started = time.perf_counter()
        self._close_iteration(started)
        self.stats.steps += 1
        if allowed is not None:
            return [decoder.plain_step(last, allowed)], None
        if not self.mtp or self.probe:
            token = decoder.plain_step(last)
            self.probe = max(0, self.probe - 1)
            self.plain_steps += 1
            if self.plain_steps > 1:  # the first also starts the pipeline
                self.policy.plain_times.add(spent := time.perf_counter() - started)
                self.stats.plain_step_s.append(spent)
                self._open = (self.stats.plain_iteration_s, started)
            return [token], None
        proposal = decoder.mtp_round(last, self.depth)
        self.stats.record_round(proposal.accepted, proposal.drafted)
        spent = time.perf_counter() - started
        self.rounds += 1
        if self.rounds > 1:  # the first was not started ahead, as a run's first plain step is not
            self.stats.round_s.append(spent)
            self._open = (self.stats.round_iteration_s, started)
        self._check(spent, len(proposal.tokens))
        return proposal.tokens, proposal.commit

    def _close_iteration(self, now: float) -> None:
        """The last timed step's or round's whole iteration, now that the next one starts."""
        if self._open is not None:
            times, start = self._open
            times.append(now - start)
            self._open = None

    def finish(self) -> None:
        """Say what an MTP round cost, and remember what MTP was worth, once the run was long enough to tell."""
        if self.guard is None or len(self.guard.rounds) < self.guard.min_rounds:
            return
        self.stats.round_cost = self.guard.rounds.median / self.guard.plain_step_s
        if self.policy.guard_enabled:
            self.policy.history.record(self.guard.speedup)

    def _check(self, spent: float, tokens: int) -> None:
        if self.guard is None:
            if not len(self.policy.plain_times):
                return  # no plain step time to compare with (no probe without the guard)
            self.guard = SpeedGuard(self.policy.plain_times.median)
        self.guard.record(spent, tokens)
        if not self.policy.guard_enabled:
            return
        reason = self.guard.verdict(self.stats.acceptance)
        if reason:
            self.stats.fallback_reason, self.mtp = reason, False
            log.info("optiq: %s", reason)
