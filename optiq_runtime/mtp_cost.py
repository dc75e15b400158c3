"""What MTP decoding costs and yields on one model build and one machine, measured once and cached.

The cost model predicts, per depth, the speed-up ``optiq bench decode`` measures on the shipped
held-out agent turns (rendered as the agent renders them): the median over turns of a turn's
plain decode time over its MTP decode time. A turn's time in each mode is a fixed cost per run
(a first step or round that nothing was started ahead of, the one started ahead at the end and
discarded) plus its steps or rounds times the median step or round (a load spike from another
process spoils a few samples, not the model); its steps and rounds are counted on that very turn
at that very depth (greedy: the count the benchmark's run will see). Acceptance differs with the
depth (a round starts after its last kept token, so the depth decides which positions are
drafted), so each depth is measured on its own runs. Runs are greedy. The whole measurement keeps
to one budget (``MEASURE_BUDGET_S``, every run stops when it is spent): times come from short runs
after a median-length turn cut to what a tenth of the budget prefills (a big model's long prefill
would take most of it), then the turns that fit in the rest are decoded in every mode. A depth the
budget left untimed is missing from the model (the policy does not choose it; the next load
measures again).

The result is cached beside the build (``optiq/mtp_costs.json``), or in the cache folder when
the model folder cannot be written (the embedded base), keyed by the model's files and by the
machine (CPU/GPU kind, backend, threads, MLX version): another machine measures again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx

from optiq_runtime.machine import cpu_name
from optiq_runtime.sampling import Sampling

log = logging.getLogger("optiq")

COST_VERSION = 3  # 3: per-turn times with a fixed cost per run, acceptance measured at each depth
DEPTHS = (1, 2, 3)
COSTS_FILE = "mtp_costs.json"
MEASURE_BUDGET_S = 60.0  # the whole measurement: every run stops when it is spent
BUDGET_ENV = "OPTIQ_MTP_BUDGET_S"  # ... or this many seconds
TIMING_SHARE = 0.6  # of it the timing runs may take; the rest, and what they leave, measures acceptance
TIMING_RUN = (2, 5)  # timed steps or rounds per timing run (after its untimed first): first cycle, later cycles
TIMED_WANTED = 12  # timed steps or rounds of each mode the timing runs stop at (the turns time the rest)
TIMING_PROMPT_TOKENS = 16  # timing runs continue at least the last this many tokens of a median-length turn
PREFILL_SHARE = 0.1  # ... and at most as many as this share of the budget prefills
TIMING_TOKENS = 64  # tokens per timing run at most (it stops after TIMING_RUN timed steps or rounds)
MEASURE_TOKENS = 128  # tokens per held-out turn at most (optiq bench decode's default)
MEASURE_PROMPTS = 24  # held-out turns measured at most (optiq bench decode's default turns)
MIN_ROUNDS = 10  # steps or rounds of a mode on the turns that make its times (fewer: the timing runs' times)
TURN_MIN_TOKENS = 8  # a turn is measured only when its prefill and this many tokens each way fit in the time left
HEAD_CATCH_UP = 0.25  # the MTP head's catch-up over a prompt, as a share of its prefill (one layer of many; generous)


@dataclass
class DepthCost:
    """One depth: a round's cost in plain steps, the tokens a round yields, and what that makes of the speed.

    ``speedup`` is ``tokens_per_round / plain tokens per step / round_cost``: a plain run too
    spends a step on the end-of-turn token it does not emit.
    """

    round_cost: float
    tokens_per_round: float
    speedup: float
    acceptance: list[float] = field(default_factory=list)  # per draft position, as GenerationStats counts it


@dataclass
class CostModel:
    """What MTP is worth at each measured depth on one (model build, machine)."""

    machine: dict
    model: str  # fingerprint of the model's files (see model_fingerprint)
    plain_step_s: float
    plain_tokens_per_step: float
    depths: dict[int, DepthCost]
    measured_s: float = 0.0
    runs: int = 0
    turns: int = 0  # held-out turns the acceptance was measured on (0: only the timing runs' short turn)
    turn_tokens: float = 0.0  # a typical turn's decode tokens, for the depths no whole turn was decoded at

    def best_depth(self) -> int | None:
        """The depth predicted fastest (None: no depth was measured in the budget)."""
        return max(self.depths, key=lambda d: (self.depths[d].speedup, -d)) if self.depths else None

    def to_json(self) -> dict:
        data = asdict(self)
        data["depths"] = {str(d): asdict(c) for d, c in self.depths.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> CostModel:
        depths = {
            int(d): DepthCost(c["round_cost"], c["tokens_per_round"], c["speedup"], c.get("acceptance", []))
            for d, c in data["depths"].items()
        }
        return cls(
            data["machine"],
            data["model"],
            data["plain_step_s"],
            data["plain_tokens_per_step"],
            depths,
            data.get("measured_s", 0.0),
            data.get("runs", 0),
            data.get("turns", 0),
            data.get("turn_tokens", 0.0),
        )


# -- keys ------------------------------------------------------------------------------
def machine_key(blas_threads: int | None = None) -> dict:
    """What makes another machine decode at another speed: backend, CPU/GPU kind, threads, MLX version."""
    from optiq_runtime.load import cpu_backend

    cpu = cpu_backend()
    key = {
        "backend": "cpu" if cpu else "gpu",
        "cpu": cpu_name(),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "blas_threads": blas_threads,
        "mlx": mx.__version__,
    }
    if not cpu:
        key["gpu"] = _gpu_name()
    return key


def _gpu_name() -> str:
    try:
        return str(mx.metal.device_info().get("device_name", "gpu"))
    except (AttributeError, RuntimeError):
        return "gpu"


def model_fingerprint(folder: Path, *extra) -> str:
    """The model's config and weight files (names, sizes, times) and how the engine runs them."""
    folder = Path(folder)
    digest = hashlib.sha256(f"{COST_VERSION}:{folder.resolve()}:{extra}".encode())
    for file in (
        sorted(folder.glob("*.json"))
        + sorted(folder.glob("*.safetensors"))
        + sorted(folder.glob("optiq/draft_vocab.json"))
    ):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


# -- the cache file --------------------------------------------------------------------
def costs_file(folder: Path) -> Path:
    """``<folder>/optiq/mtp_costs.json``, or one in the cache folder when the model folder is read-only or shipped."""
    from optiq_runtime.home import cache_home

    folder = Path(folder).resolve()
    package = Path(__file__).resolve().parent
    own = folder / "optiq"
    writable = os.access(own if own.is_dir() else folder, os.W_OK)
    if writable and package not in folder.parents:
        return own / COSTS_FILE
    name = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return cache_home() / "mtp_costs" / f"{folder.name}-{name}.json"


def read_costs(file: Path, machine: dict, model: str) -> CostModel | None:
    """The cached cost model for this machine and model, or None (none, another machine's, unreadable)."""
    for entry in _entries(file):
        if entry.get("machine") == machine and entry.get("model") == model:
            try:
                return CostModel.from_json(entry)
            except (KeyError, TypeError, ValueError):
                return None
    return None


def write_costs(file: Path, costs: CostModel) -> None:
    """Add (or replace) this machine's entry; written to a temporary file and renamed, so never half-written."""
    kept = [e for e in _entries(file) if not (e.get("machine") == costs.machine and e.get("model") == costs.model)]
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(f".{file.name}.{os.getpid()}")
    partial.write_text(json.dumps({"version": COST_VERSION, "entries": kept + [costs.to_json()]}, indent=1))
    partial.replace(file)


def _entries(file: Path) -> list[dict]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("version") != COST_VERSION:
        return []
    return [e for e in data.get("entries", []) if isinstance(e, dict)]


# -- measuring -------------------------------------------------------------------------
class Deadline:
    """A point in time the measurement must not run past; ``passed`` is what runs stop on."""

    def __init__(self, seconds: float, within: Deadline | None = None):
        end = time.perf_counter() + seconds
        self.end: float = min(end, within.end) if within is not None else end

    def left(self) -> float:
        return self.end - time.perf_counter()

    def passed(self) -> bool:
        return self.left() <= 0


def heldout_prompts(tokenizer, count: int = MEASURE_PROMPTS) -> list[list[int]]:
    """Token ids of the first ``count`` assistant turns of the shipped held-out agent conversations."""
    from optiq_runtime.calibration import HELDOUT_FILE, read_samples

    prompts: list[list[int]] = []
    for sample in read_samples(HELDOUT_FILE):
        for i, message in enumerate(sample.messages):
            if message.get("role") == "assistant" and i and len(prompts) < count:
                kwargs = {"tools": list(sample.tools)} if sample.tools else {}
                prompts.append(
                    list(
                        tokenizer.apply_chat_template(  # as the agent renders turns: no thinking
                            list(sample.messages[:i]),
                            add_generation_prompt=True,
                            tokenize=True,
                            enable_thinking=False,
                            **kwargs,
                        )
                    )
                )
    return prompts


def measure(
    engine,
    depths=DEPTHS,
    *,
    prompts: list[list[int]] | None = None,
    tokens: int = MEASURE_TOKENS,
    budget_s: float = MEASURE_BUDGET_S,
) -> CostModel:
    """Time plain steps and rounds at each depth after a typical turn, then measure acceptance on held-out turns
    (greedy, guard off), all within ``budget_s`` seconds.

    Timing runs continue the end of a median-length turn (``_timing_prompt``) past the end of the
    turn (a step's or a round's time depends on the context's length, hardly on its text), a few
    steps per run, the modes in alternating order; they may take
    ``TIMING_SHARE`` of the budget. Then held-out turns are decoded plainly and at every depth (what a
    round yields depends on the depth); a turn whose prefill would not fit in the time left is
    skipped. Every run stops at the deadline.
    """
    policy = engine.policy
    saved = policy.mode, policy.depth, policy.guard_enabled
    prompts = prompts if prompts is not None else heldout_prompts(engine.tokenizer)
    started, clock = time.perf_counter(), Deadline(budget_s)
    policy.guard_enabled = False
    try:
        context, prefill = _timing_prompt(engine, prompts, budget_s) if not clock.passed() else ([], float("inf"))
        timing = _time_modes(engine, context, depths, Deadline(budget_s * TIMING_SHARE, clock))
        turns = _run_turns(engine, prompts, tokens, depths, clock, _Rates.of(timing, prefill))
    finally:
        policy.mode, policy.depth, policy.guard_enabled = saved
    return _model(engine, timing, turns, tokens, time.perf_counter() - started)


def _timing_prompt(engine, prompts: list[list[int]], budget_s: float) -> tuple[list[int], float]:
    """The end of a median-length turn, as much of it as ``PREFILL_SHARE`` of the budget prefills, and the
    seconds per token the probe's prefill took.

    A step's time depends on the context's length on a small model (attention is much of its
    work), so the context is a typical turn's; a big model's long prefill would eat the budget,
    so it is cut to what the prefill of a ``TIMING_PROMPT_TOKENS`` probe says it affords.
    """
    turn = sorted(prompts, key=len)[len(prompts) // 2]
    probe = turn[-TIMING_PROMPT_TOKENS:]
    stats = _run(engine, probe, 1, None, lambda: True)  # the prefill only (and the first compile)
    per_token = stats.prefill_s / max(1, len(probe))
    affordable = int(budget_s * PREFILL_SHARE / per_token) if per_token > 0 else len(turn)
    return turn[-max(len(probe), affordable) :], per_token


def _time_modes(engine, prompt: list[int], depths, clock: Deadline) -> dict[int | None, list]:
    """Runs of ``prompt`` past its end, ``TIMING_RUN`` timed steps or rounds each (after an untimed first, which also
    compiles), plain and at every depth in alternating order, until each has ``TIMED_WANTED`` or the time is up.

    The first cycle's runs are the shortest, so that every depth is timed before a slow model spends the time.
    """
    modes = [None, *depths]
    runs: dict[int | None, list] = {mode: [] for mode in modes}
    tokenizer = engine.tokenizer
    eos, tokenizer.eos_token_ids = tokenizer.eos_token_ids, set()
    try:
        cycle = 0
        while not clock.passed() and any(_timed(runs[m]) < TIMED_WANTED for m in modes):
            for mode in modes if cycle % 2 == 0 else modes[::-1]:
                if clock.passed():
                    break
                wanted = TIMING_RUN[min(cycle, 1)]
                stop = lambda wanted=wanted: clock.passed() or _timed([engine.last_stats]) >= wanted  # noqa: E731
                runs[mode].append(_run(engine, prompt, TIMING_TOKENS, mode, stop))
            cycle += 1
    finally:
        tokenizer.eos_token_ids = eos
    return runs


def _timed(runs) -> int:
    return sum(len(r.plain_step_s) + len(r.round_s) for r in runs)


@dataclass
class _Rates:
    """Seconds per prompt token prefilled (the probe's), per plain step and per round at the deepest depth (the
    timing runs')."""

    prefill: float
    step: float
    round: float

    @classmethod
    def of(cls, timing: dict, prefill: float) -> _Rates:
        steps = [s for r in timing.get(None, []) for s in r.plain_step_s]
        rounds = [s for r in timing[max(timing, key=lambda d: d or 0)] for s in r.round_s]
        median = lambda xs: statistics.median(xs) if xs else float("inf")  # noqa: E731
        return cls(prefill, median(steps), median(rounds))

    def saw_prefill(self, stats) -> None:
        """Keep the slowest prefill seen (per token, with the head's catch-up): a turn's prefill cannot be stopped."""
        if stats.prompt_tokens:
            self.prefill = max(self.prefill, stats.prefill_s / stats.prompt_tokens / (1 + HEAD_CATCH_UP))

    def turn_s(self, tokens: int, runs: int) -> float:
        """A held-out turn's least cost over ``runs`` runs: a prefill each (and the head's catch-up in the MTP runs)
        and ``TURN_MIN_TOKENS`` tokens each."""
        return runs * (tokens * self.prefill * (1 + HEAD_CATCH_UP) + TURN_MIN_TOKENS * max(self.step, self.round))


def _run_turns(engine, prompts: list[list[int]], tokens: int, depths, clock: Deadline, rates: _Rates) -> list[dict]:
    """Each held-out turn whose prefill fits in the time left, plainly and at every depth, in alternating order:
    one ``{mode: stats}`` per turn (mode None: plain).

    Every run starts from empty caches, as ``optiq bench decode`` runs them: on a small model a
    plain step after a fresh prefill is measurably slower than after a reused one. A run may take
    its share of the time left (the time left over the turn's runs still to go), so that a slow
    model decodes some of a turn in every mode rather than the whole turn in one.
    """
    modes = (None, *depths)
    turns: list[dict] = []
    for index, prompt in enumerate(prompts):
        if rates.turn_s(len(prompt), len(modes)) > clock.left():
            continue
        turn: dict = {}
        order = modes if index % 2 == 0 else modes[::-1]
        for position, mode in enumerate(order):
            if clock.passed():  # a prefill cannot be stopped: none starts after the deadline
                break
            share = Deadline(clock.left() / (len(order) - position), clock)
            engine.reset()
            turn[mode] = stats = _run(engine, prompt, tokens, mode, share.passed)
            rates.saw_prefill(stats)
        turns.append(turn)
        if clock.passed():
            break
    return turns


def _run(engine, prompt: list[int], tokens: int, depth: int | None, should_stop):
    """One greedy run, plain (``depth`` None) or MTP at ``depth``, until ``should_stop()``; its stats."""
    engine.policy.mode, engine.policy.depth = ("off", None) if depth is None else ("on", depth)
    engine.generate(prompt, Sampling(max_tokens=tokens), should_stop=should_stop)
    return engine.last_stats


@dataclass
class _Mode:
    """How long a run of one mode (plain, or MTP at one depth) takes: a fixed cost, then each step or round.

    ``iteration_s`` is the median step's or round's whole loop iteration (the step or round,
    then the detokenizing and the caller's work until the next): on a small model that work is a
    good part of a plain step, and on a busy machine so is waiting for the CPU after each step.
    ``fixed_s`` is the median over runs of what a run took beyond its steps at that time: its
    first step or round (started after the prefill, not ahead) and the one started ahead at the
    end and discarded.
    """

    iteration_s: float
    fixed_s: float
    tokens_per_step: float

    @classmethod
    def of(cls, runs: list, plain: bool) -> _Mode | None:
        times = [s for r in runs for s in (r.plain_iteration_s if plain else r.round_iteration_s)]
        if not times:
            return None
        iteration = statistics.median(times)
        fixed = statistics.median(r.decode_s - r.steps * iteration for r in runs if r.steps)
        steps = _total(runs, "steps")
        return cls(iteration, fixed, _total(runs, "decode_tokens") / steps if steps else 1.0)

    def run_s(self, steps: float) -> float:
        return max(self.fixed_s + steps * self.iteration_s, self.iteration_s)


def _modes(timing: dict, turns: list[dict], depth: int) -> tuple[_Mode, _Mode] | None:
    """Plain and ``depth``'s times, from the held-out turns when they hold ``MIN_ROUNDS`` steps and rounds
    (the contexts the agent decodes in), else from the timing runs (None: no round was timed)."""
    for runs in (_by_mode(turns), timing):
        plain, rounds = runs.get(None, []), runs.get(depth, [])
        if runs is not timing and min(_timed(plain), _timed(rounds)) < MIN_ROUNDS:
            continue
        plain_mode, round_mode = _Mode.of(plain, True), _Mode.of(rounds, False)
        if plain_mode is not None and round_mode is not None:
            return plain_mode, round_mode
    return None


def _by_mode(turns: list[dict]) -> dict:
    runs: dict = {}
    for turn in turns:
        for mode, stats in turn.items():
            runs.setdefault(mode, []).append(stats)
    return runs


def _whole(stats) -> bool:
    """Whether a run decoded its turn to the end (or to the token limit), not stopped by the deadline."""
    return stats.finish_reason in ("eos", "length")


def _speedup(plain: _Mode, mtp: _Mode, turns: list[dict], depth: int, typical: float) -> float:
    """The median over turns decoded whole in both modes of the plain run's predicted time over the MTP run's,
    with each run's own steps and rounds; with none, a typical turn's at the measured tokens per step and round."""
    ratios = [
        plain.run_s(t[None].steps) / mtp.run_s(t[depth].steps) * t[depth].decode_tokens / max(1, t[None].decode_tokens)
        for t in turns
        if None in t and depth in t and _whole(t[None]) and _whole(t[depth]) and t[None].decode_tokens
    ]
    if ratios:
        return statistics.median(ratios)
    return plain.run_s(typical / plain.tokens_per_step) / mtp.run_s(typical / mtp.tokens_per_step)


def _model(engine, timing: dict, turns: list[dict], tokens: int, seconds: float) -> CostModel:
    """Each timed depth's round cost (median round over median step), the tokens a round yields (on the held-out
    turns at that depth, else on its timing runs), and the predicted speed-up (``_speedup``).

    A depth with no timed round is left out (the policy then does not choose it).
    """
    by_mode = _by_mode(turns)
    steps = [s for run in timing[None] for s in run.plain_step_s] or [
        s for run in by_mode.get(None, []) for s in run.plain_step_s
    ]
    plain_turns = by_mode.get(None, [])
    plain_per_step = (_total(plain_turns, "decode_tokens") / max(1, _total(plain_turns, "steps"))) or 1.0
    whole = [r.decode_tokens for r in plain_turns if _whole(r)]
    typical = statistics.median(whole) if whole else float(tokens)
    depths = {}
    for depth in (d for d in timing if d is not None):
        modes = _modes(timing, turns, depth)
        if modes is None:
            continue
        plain, mtp = modes
        runs = by_mode.get(depth) or timing[depth]
        drafted, accepted = _positions(runs)
        per_round = _total(runs, "decode_tokens") / max(1, _total(runs, "steps")) or 1.0
        plain.tokens_per_step, mtp.tokens_per_step = plain_per_step, per_round
        depths[depth] = DepthCost(
            mtp.iteration_s / plain.iteration_s,
            per_round,
            _speedup(plain, mtp, turns, depth, typical),
            [a / d if d else 0.0 for a, d in zip(accepted, drafted)],
        )
    return CostModel(
        machine_key(engine.blas_threads),
        engine.fingerprint,
        statistics.median(steps or [float("inf")]),
        plain_per_step,
        depths,
        round(seconds, 2),
        sum(len(r) for r in timing.values()) + sum(len(t) for t in turns),
        len(plain_turns),
        typical,
    )


def _total(runs, name: str) -> float:
    return sum(getattr(r, name) for r in runs)


def _positions(runs) -> tuple[list[int], list[int]]:
    width = max((len(r.drafted) for r in runs), default=0)
    drafted = [sum(r.drafted[i] for r in runs if i < len(r.drafted)) for i in range(width)]
    accepted = [sum(r.accepted[i] for r in runs if i < len(r.accepted)) for i in range(width)]
    return drafted, accepted


def measure_budget() -> float:
    """Seconds the measurement may take: ``OPTIQ_MTP_BUDGET_S`` when set (a slow machine's big model), else the default."""
    from optiq_runtime.errors import BadInputError

    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return MEASURE_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise BadInputError(f"{BUDGET_ENV} must be a positive number of seconds; got {text!r}")
    return value


def load_or_measure(engine, depths=DEPTHS, say=None) -> CostModel:
    """The engine's cached cost model for this machine, measured (and cached) first when there is none."""
    file = costs_file(engine.model_path)
    machine = machine_key(engine.blas_threads)
    costs = read_costs(file, machine, engine.fingerprint)
    if costs is not None and all(d in costs.depths for d in depths):
        return costs
    budget = measure_budget()
    (say or log.warning)(
        f"optiq: measuring what MTP decoding is worth for {Path(engine.model_path).name} "
        f"on this machine (once, {budget:.0f} s at most)"
    )
    costs = measure(engine, depths, budget_s=budget)
    if missing := [d for d in depths if d not in costs.depths]:
        log.warning(
            "optiq: depth(s) %s could not be timed in %.0f s (a slow or busy machine); MTP will not use them, "
            "and the next load measures again (OPTIQ_MTP_BUDGET_S sets the budget)",
            missing,
            budget,
        )
    try:
        write_costs(file, costs)
    except OSError as error:
        log.warning("optiq: could not cache the MTP cost model in %s (%s); it will be measured again", file, error)
    return costs
