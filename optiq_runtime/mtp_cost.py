"""What MTP decoding costs and yields on one model build and one machine, measured once and cached.

The cost model holds, per depth, a round's cost in plain decode steps (median round time over
median step time, so a load spike from another process spoils a few samples, not the model)
and the tokens a round yields on the shipped held-out agent turns, rendered as the agent
renders them; their ratio (against a plain step's tokens, which also pays for the end-of-turn
token) is the predicted speed-up. Runs are greedy, plain and at each depth back to back.

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

COST_VERSION = 1
DEPTHS = (1, 2, 3)
COSTS_FILE = "mtp_costs.json"
MEASURE_TOKENS = 64  # tokens per run at most while measuring (held-out agent turns are short)
MIN_TOKENS = 12  # ... and at least, on models whose steps are slow
MEASURE_PROMPTS = 24  # held-out turns measured at most (optiq bench decode's default turns)
TIMED_PROMPTS = 6  # ... of which this many at every depth
MIN_PROMPTS = 2  # turns measured however long they take
MEASURE_BUDGET_S = 30.0  # no new turn starts after this long


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

    def best_depth(self) -> int:
        return max(self.depths, key=lambda d: (self.depths[d].speedup, -d))

    def to_json(self) -> dict:
        data = asdict(self)
        data["depths"] = {str(d): asdict(c) for d, c in self.depths.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> CostModel:
        depths = {int(d): DepthCost(c["round_cost"], c["tokens_per_round"], c["speedup"], c.get("acceptance", []))
                  for d, c in data["depths"].items()}
        return cls(data["machine"], data["model"], data["plain_step_s"], data["plain_tokens_per_step"], depths,
                   data.get("measured_s", 0.0), data.get("runs", 0))


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
    for file in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")) + sorted(folder.glob("optiq/draft_vocab.json")):
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
def heldout_prompts(tokenizer, count: int = MEASURE_PROMPTS) -> list[list[int]]:
    """Token ids of the first ``count`` assistant turns of the shipped held-out agent conversations."""
    from optiq_runtime.calibration import HELDOUT_FILE, read_samples

    prompts: list[list[int]] = []
    for sample in read_samples(HELDOUT_FILE):
        for i, message in enumerate(sample.messages):
            if message.get("role") == "assistant" and i and len(prompts) < count:
                kwargs = {"tools": list(sample.tools)} if sample.tools else {}
                prompts.append(list(tokenizer.apply_chat_template(  # as the agent renders turns: no thinking
                    list(sample.messages[:i]), add_generation_prompt=True, tokenize=True, enable_thinking=False, **kwargs)))
    return prompts


def measure(engine, depths=DEPTHS, *, prompts: list[list[int]] | None = None, tokens: int = MEASURE_TOKENS,
            budget_s: float = MEASURE_BUDGET_S, timed_prompts: int = TIMED_PROMPTS) -> CostModel:
    """Decode held-out turns plainly and with MTP (greedy, guard off) and model what each depth is worth.

    Every turn runs plainly and at the deepest depth (greedy acceptance at a position does not
    depend on the depth, so that run gives every depth's); the first ``timed_prompts`` turns
    also run at every other depth, for its round time. No turn after the first ``MIN_PROMPTS``
    starts after ``budget_s``.
    """
    policy = engine.policy
    saved = policy.mode, policy.depth, policy.guard_enabled
    prompts = prompts if prompts is not None else heldout_prompts(engine.tokenizer)
    deepest = max(depths)
    started = time.perf_counter()
    policy.guard_enabled = False
    try:
        warm = {depth: _run(engine, prompts[0], min(tokens, 16), depth) for depth in (None, *depths)}  # compiles graphs
        tokens = _affordable(tokens, warm[None].plain_step_s, len(depths), budget_s)
        runs: dict[int | None, list] = {d: [] for d in (None, *depths)}
        timed: dict[int | None, list] = {d: [] for d in (None, *depths)}
        for index, prompt in enumerate(prompts):
            if index >= MIN_PROMPTS and time.perf_counter() - started > budget_s:
                break
            order = (None, *depths) if index < timed_prompts else (None, deepest)
            for depth in order if index % 2 == 0 else order[::-1]:
                runs[depth].append(stats := _run(engine, prompt, tokens, depth))
                if index < timed_prompts:
                    timed[depth].append(stats)
    finally:
        policy.mode, policy.depth, policy.guard_enabled = saved
    return _model(engine, runs, timed, deepest, time.perf_counter() - started)


def _affordable(tokens: int, steps: list[float], depths: int, budget_s: float) -> int:
    """Fewer tokens per run (at least ``MIN_TOKENS``) where slow steps would make the first turns overrun the budget."""
    if not steps:
        return tokens
    runs = MIN_PROMPTS * (1 + depths)
    return max(MIN_TOKENS, min(tokens, int(budget_s / (runs * statistics.median(steps) * 2))))


def _run(engine, prompt: list[int], tokens: int, depth: int | None):
    """One greedy run, plain (``depth`` None) or MTP at ``depth``; its stats."""
    engine.policy.mode, engine.policy.depth = ("off", None) if depth is None else ("on", depth)
    engine.generate(prompt, Sampling(max_tokens=tokens))
    return engine.last_stats


def _model(engine, runs: dict, timed: dict, deepest: int, seconds: float) -> CostModel:
    """Medians of step and round times over the turns every depth ran (a load spike spoils a few samples, not the
    model); tokens per round from the acceptance over all turns.

    A round at depth ``d`` yields ``1 + a_1 + .. + a_d`` tokens (``a_i``: the first ``i`` drafts
    accepted), less what the run's last round loses at the end of the turn, as the deepest runs lost it.
    """
    plain = runs[None]
    plain_step = statistics.median([s for run in timed[None] for s in run.plain_step_s] or [float("inf")])
    plain_per_step = _total(plain, "decode_tokens") / max(1, _total(plain, "steps")) or 1.0
    drafted, accepted = _positions(runs[deepest])
    acceptance = [a / d if d else 0.0 for a, d in zip(accepted, drafted)]
    measured = _total(runs[deepest], "decode_tokens") / max(1, _total(runs[deepest], "steps"))
    ending = measured / (1 + sum(acceptance)) if acceptance else 1.0
    depths = {}
    for depth in (d for d in runs if d is not None):
        rounds = [s for run in timed[depth] for s in run.round_s]
        cost = statistics.median(rounds) / plain_step if rounds else float("inf")
        per_round = (1 + sum(acceptance[:depth])) * ending
        depths[depth] = DepthCost(cost, per_round, per_round / plain_per_step / cost, acceptance[:depth])
    return CostModel(machine_key(engine.blas_threads), engine.fingerprint, plain_step, plain_per_step, depths,
                     round(seconds, 2), sum(len(r) for r in runs.values()))


def _total(runs, name: str) -> float:
    return sum(getattr(r, name) for r in runs)


def _positions(runs) -> tuple[list[int], list[int]]:
    width = max((len(r.drafted) for r in runs), default=0)
    drafted = [sum(r.drafted[i] for r in runs if i < len(r.drafted)) for i in range(width)]
    accepted = [sum(r.accepted[i] for r in runs if i < len(r.accepted)) for i in range(width)]
    return drafted, accepted


def load_or_measure(engine, depths=DEPTHS, say=None) -> CostModel:
    """The engine's cached cost model for this machine, measured (and cached) first when there is none."""
    file = costs_file(engine.model_path)
    machine = machine_key(engine.blas_threads)
    costs = read_costs(file, machine, engine.fingerprint)
    if costs is not None and all(d in costs.depths for d in depths):
        return costs
    (say or log.warning)(f"optiq: measuring what MTP decoding is worth for {Path(engine.model_path).name} "
                         "on this machine (once)")
    costs = measure(engine, depths)
    try:
        write_costs(file, costs)
    except OSError as error:
        log.warning("optiq: could not cache the MTP cost model in %s (%s); it will be measured again", file, error)
    return costs
