"""`optiq bench`: benchmarks: decode speed with and without MTP."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the command line's --help stays fast
    from optiq_runtime.mtp_cost import CostModel
    from optiq_runtime.mtp_policy import Decision
    from optiq_runtime.roofline import Limits, ModelSize

HELP = "Benchmarks: decode speed with and without MTP."

# The default prompts: the assistant turns of the shipped held-out agent conversations (tool
# calls with arguments copied from the request, answers from tool results), what optiq decodes.
DEFAULT_TURNS = 24


@dataclass(frozen=True)
class Prompt:
    """A conversation up to the assistant turn to generate, with the tools it offers."""

    messages: tuple
    tools: tuple | None = None

    def tokens(self, tokenizer) -> list[int]:
        kwargs = {"tools": list(self.tools)} if self.tools else {}
        # Rendered as the agent renders its turns (agent.chat.ChatRenderer: no thinking block).
        return list(
            tokenizer.apply_chat_template(
                list(self.messages), add_generation_prompt=True, tokenize=True, enable_thinking=False, **kwargs
            )
        )


def add_arguments(parser):
    parser.add_argument("what", choices=["decode"])
    parser.add_argument("--model", help="a model folder (default: the built default model, else the embedded base)")
    parser.add_argument(
        "--mtp",
        choices=["auto", "on", "off"],
        default="auto",
        help="the MTP policy measured against plain decoding (default auto, what optiq runs with)",
    )
    parser.add_argument(
        "--mtp-depth", type=int, default=None, help="tokens drafted per verification (default: the policy's choice)"
    )
    parser.add_argument(
        "--depths",
        default="1,2,3",
        help="MTP depths also measured forced on, beside the cost model's prediction (default 1,2,3; 'none' skips)",
    )
    parser.add_argument(
        "--turns",
        type=int,
        default=DEFAULT_TURNS,
        help=f"default prompts: the first N held-out turns (default {DEFAULT_TURNS})",
    )
    parser.add_argument("--tokens", type=int, default=128, help="at most this many tokens per run (default 128)")
    parser.add_argument(
        "--ignore-eos", action="store_true", help="decode exactly --tokens tokens, past the end of the turn"
    )
    parser.add_argument(
        "--prompts",
        help="JSONL chat samples (each assistant turn is a prompt) or text samples, "
        "else a text file with one user prompt per line (default: the shipped held-out agent conversations)",
    )
    parser.add_argument("--repeat", type=int, default=2, help="plain/MTP pairs per prompt (default 2)")
    parser.add_argument(
        "--no-fallback", action="store_true", help="keep MTP on for whole runs even when it loses (measures MTP itself)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    import json

    from optiq_runtime.errors import BadInputError

    if args.tokens < 1 or args.repeat < 1 or args.turns < 1:
        raise BadInputError(
            f"--tokens, --repeat and --turns must be at least 1; got {args.tokens}, {args.repeat} and {args.turns}"
        )
    depths = parse_depths(args.depths)
    prompts = read_prompts(args.prompts, args.turns)
    engine = _load_engine(args.model, args.mtp, args.mtp_depth)
    if not engine.mtp_available:
        raise BadInputError(f"{engine.model_path} has no MTP head; there is nothing to compare")
    decision = engine.mtp_decision
    settings = {"policy": Setting(args.mtp, args.mtp_depth, guard=not args.no_fallback)}
    settings.update({str(d): Setting("on", d, guard=False) for d in depths})
    from optiq_runtime.roofline import measure_limits, model_size

    before = measure_limits()
    results = measure_settings(engine, prompts, args.tokens, args.repeat, settings, ignore_eos=args.ignore_eos)
    # The better of two measurements, either side of the decoding: a busy moment lowers one.
    # MLX's freed buffers go back first, so the numpy arrays do not add to the run's peak memory.
    import mlx.core as mx

    mx.clear_cache()
    chosen = results.pop("policy")
    chosen.roofline = Roofline(before.best(measure_limits()), model_size(engine.model_path))
    chosen.plan = engine.cpu_plan
    report = BenchReport(chosen, decision, results, engine.policy.costs)
    print(json.dumps(report.to_json()) if args.json else report.text())
    return 0


def parse_depths(text: str) -> list[int]:
    """``1,2,3`` as depths; ``none`` as none."""
    from optiq_runtime.errors import BadInputError
    from optiq_runtime.mtp_policy import check_depth

    if text.strip().lower() in ("", "none"):
        return []
    try:
        depths = [int(part) for part in text.split(",")]
    except ValueError:
        raise BadInputError(f"--depths takes depths separated by commas (1,2,3) or 'none'; got {text!r}") from None
    for depth in depths:
        check_depth(depth)
    return depths


def read_prompts(path: str | None, turns: int = DEFAULT_TURNS) -> list[Prompt]:
    """The prompts of ``path``, or the first ``DEFAULT_TURNS`` assistant turns of the held-out agent conversations.

    A ``.jsonl`` file holds samples (``{"messages": [...], "tools": [...]}``: every assistant turn
    is a prompt; ``{"text": ...}``: a user prompt); any other file one user prompt per line.
    """
    from pathlib import Path

    from optiq_runtime.calibration import HELDOUT_FILE, read_samples
    from optiq_runtime.errors import BadInputError

    if path is None:
        chats = [s for s in read_samples(HELDOUT_FILE) if s.messages]
        return [p for s in chats for p in assistant_turns(s.messages, s.tools)][:turns]
    file = Path(path).expanduser()
    if not file.is_file():
        raise BadInputError(f"--prompts {path} is not a file")
    if file.suffix == ".jsonl":
        samples = read_samples(file)
        prompts = [
            p for s in samples for p in (assistant_turns(s.messages, s.tools) if s.messages else [_user(s.text or "")])
        ]
    else:
        prompts = [_user(line.strip()) for line in file.read_text().splitlines() if line.strip()]
    if not prompts:
        raise BadInputError(f"--prompts {path} has no prompts (expected one per line, or chats with assistant turns)")
    return prompts


def assistant_turns(messages: list, tools: list | None) -> list[Prompt]:
    """One prompt per assistant message: the conversation before it."""
    frozen = tuple(tools) if tools else None
    return [Prompt(tuple(messages[:i]), frozen) for i, m in enumerate(messages) if m.get("role") == "assistant" and i]


def _user(text: str) -> Prompt:
    return Prompt(({"role": "user", "content": text},))


def _load_engine(model: str | None, mtp: str, depth: int | None):
    from optiq_runtime.engine import Engine

    if model is None:
        from optiq_runtime.firstrun import ensure_model

        model = str(ensure_model(None))
    return Engine.load(model, mtp=mtp, mtp_depth=depth)


@dataclass(frozen=True)
class Setting:
    """How the engine decodes in one column of the benchmark: the MTP mode, the depth, the speed guard."""

    mode: str
    depth: int | None = None
    guard: bool = True

    def apply(self, engine) -> None:
        engine.policy.mode, engine.policy.depth, engine.policy.guard_enabled = self.mode, self.depth, self.guard


PLAIN = Setting("off")


def measure_decode(engine, prompts: list, tokens: int, repeat: int, *, ignore_eos: bool = False) -> DecodeResult:
    """Plain and MTP decoding (forced on at the engine's depth) of the same prompts; see ``measure_settings``."""
    setting = Setting("on", engine.mtp_depth, guard=engine.auto_fallback)
    return measure_settings(engine, prompts, tokens, repeat, {"mtp": setting}, ignore_eos=ignore_eos)["mtp"]


def measure_settings(
    engine, prompts: list, tokens: int, repeat: int, settings: dict[str, Setting], *, ignore_eos: bool = False
) -> dict[str, DecodeResult]:
    """Plain decoding and each setting over the same prompts, run by run in a rotating order so all see the same load.

    ``prompts`` are ``Prompt``s or user messages; runs end at the end of the turn or after
    ``tokens`` tokens (exactly ``tokens`` with ``ignore_eos``). Each result compares a setting
    with the plain runs of the same prompts. The engine's policy is restored afterwards.
    """
    encoded = [(p if isinstance(p, Prompt) else _user(p)).tokens(engine.tokenizer) for p in prompts]
    results = {
        name: DecodeResult(depth=s.depth or engine.mtp_depth, tokens=tokens, prompts=len(prompts))
        for name, s in settings.items()
    }
    policy = engine.policy
    saved, eos = (policy.mode, policy.depth, policy.guard_enabled), engine.tokenizer.eos_token_ids
    if ignore_eos:
        engine.tokenizer.eos_token_ids = set()
    try:
        _alternate(engine, encoded, tokens, repeat, settings, results)
    finally:
        engine.tokenizer.eos_token_ids = eos
        policy.mode, policy.depth, policy.guard_enabled = saved
    return results


def _alternate(
    engine,
    encoded: list[list[int]],
    tokens: int,
    repeat: int,
    settings: dict[str, Setting],
    results: dict[str, DecodeResult],
) -> None:
    columns = [None, *settings]  # None: plain
    for name in columns:  # warm-up: the first passes of each shape compile their graphs
        _generate(engine, encoded[0], min(tokens, 32), (PLAIN if name is None else settings[name]))
    for round_ in range(repeat):
        for index, prompt in enumerate(encoded):
            shift = (round_ + index) % len(columns)
            order = columns[shift:] + columns[:shift]
            outputs: dict[str | None, list[int]] = {}
            stats: dict[str | None, Any] = {}
            for name in order:
                outputs[name] = _generate(engine, prompt, tokens, (PLAIN if name is None else settings[name]))
                stats[name] = engine.last_stats
            for name, result in results.items():
                result.add(stats[None], False)
                result.add(stats[name], True)
                result.identical = result.identical and outputs[None] == outputs[name]
                result.add_pair(stats[None], stats[name])


def _generate(engine, prompt: list[int], tokens: int, setting: Setting) -> list[int]:
    from optiq_runtime.sampling import Sampling

    setting.apply(engine)
    # Each run prefills on its own (no run reuses the other's cache), and every MTP run tries
    # MTP (its in-run speed guard still applies).
    engine.reset(mtp_history=True)
    return engine.generate(prompt, Sampling(max_tokens=tokens))


@dataclass
class Roofline:
    """This machine's limits measured in the benchmark's run, and the model's size against them."""

    limits: Limits
    size: ModelSize

    def fractions(self, prefill_tok_s: float, decode_tok_s: float) -> dict:
        from optiq_runtime.roofline import fractions

        return fractions(self.limits, self.size, prefill_tok_s, decode_tok_s)


@dataclass
class DecodeResult:
    """Decode totals of each mode over one benchmark run.

    ``speedup`` is the median over back-to-back plain/MTP pairs of their speed ratio: a load
    spike from another process then spoils one pair, not the result.
    """

    depth: int
    tokens: int
    prompts: int
    plain_tokens: int = 0
    plain_s: float = 0.0
    prompt_tokens: dict = field(default_factory=lambda: {False: 0, True: 0})
    prefill_s: dict = field(default_factory=lambda: {False: 0.0, True: 0.0})
    mtp_tokens: int = 0
    mtp_s: float = 0.0
    mtp_steps: int = 0
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    pair_speedups: list[float] = field(default_factory=list)
    pair_cpu_speedups: list[float] = field(default_factory=list)
    round_costs: list[float] = field(default_factory=list)
    identical: bool = True
    roofline: Roofline | None = None
    plan: object = None  # the engine's optiq_runtime.cpuplan.CpuPlan, when it has one

    def add(self, stats, mtp: bool) -> None:
        self.prompt_tokens[mtp] += stats.prompt_tokens - stats.reused_prompt_tokens
        self.prefill_s[mtp] += stats.prefill_s
        if not mtp:
            self.plain_tokens += stats.decode_tokens
            self.plain_s += stats.decode_s
            return
        self.mtp_tokens += stats.decode_tokens
        self.mtp_s += stats.decode_s
        self.mtp_steps += stats.steps
        self.drafted = _sum(self.drafted, stats.drafted)
        self.accepted = _sum(self.accepted, stats.accepted)
        if stats.fallback_reason:
            self.fallbacks.append(stats.fallback_reason)
        if stats.round_cost is not None:
            self.round_costs.append(stats.round_cost)

    def add_pair(self, plain, mtp) -> None:
        if plain.decode_tok_s > 0 and plain.decode_cpu_tok_s > 0:
            self.pair_speedups.append(mtp.decode_tok_s / plain.decode_tok_s)
            self.pair_cpu_speedups.append(mtp.decode_cpu_tok_s / plain.decode_cpu_tok_s)

    @property
    def round_cost(self) -> float | None:
        """A draft-verify round's time in plain steps (median over runs)."""
        return statistics.median(self.round_costs) if self.round_costs else None

    @property
    def cpu_speedup(self) -> float:
        return statistics.median(self.pair_cpu_speedups) if self.pair_cpu_speedups else 0.0

    @property
    def plain_tok_s(self) -> float:
        return self.plain_tokens / self.plain_s if self.plain_s else 0.0

    @property
    def mtp_tok_s(self) -> float:
        return self.mtp_tokens / self.mtp_s if self.mtp_s else 0.0

    def prefill_tok_s(self, mtp: bool) -> float:
        """Prompt tokens per second; with MTP the head also runs over the prompt."""
        return self.prompt_tokens[mtp] / self.prefill_s[mtp] if self.prefill_s[mtp] else 0.0

    @property
    def speedup(self) -> float:
        return statistics.median(self.pair_speedups) if self.pair_speedups else 0.0

    @property
    def acceptance(self) -> list[float]:
        return [a / d if d else 0.0 for a, d in zip(self.accepted, self.drafted)]

    @property
    def tokens_per_step(self) -> float:
        return self.mtp_tokens / self.mtp_steps if self.mtp_steps else 0.0

    def to_json(self) -> dict:
        return {
            "plain_tok_s": round(self.plain_tok_s, 2),
            "mtp_tok_s": round(self.mtp_tok_s, 2),
            "speedup": round(self.speedup, 3),
            "speedup_pairs": [round(r, 3) for r in self.pair_speedups],
            "cpu_time_speedup": round(self.cpu_speedup, 3),
            "round_cost": round(self.round_cost, 3) if self.round_cost else None,
            "acceptance": [round(a, 3) for a in self.acceptance],
            "identical": self.identical,
            "depth": self.depth,
            "tokens_per_step": round(self.tokens_per_step, 3),
            "decoded_tokens": self.plain_tokens,
            "prefill_tok_s": {"plain": round(self.prefill_tok_s(False), 1), "mtp": round(self.prefill_tok_s(True), 1)},
            "tokens": self.tokens,
            "prompts": self.prompts,
            "fallbacks": len(self.fallbacks),
            "roofline": self._fractions(),
            "cpu_plan": _plan_summary(self.plan),
        }

    def _fractions(self) -> dict | None:
        return self.roofline.fractions(self.prefill_tok_s(False), self.plain_tok_s) if self.roofline else None

    def report(self) -> str:
        acceptance = "  ".join(f"{i + 1}: {a:.0%}" for i, a in enumerate(self.acceptance)) or "-"
        lines = [
            f"plain  {self.plain_tok_s:8.1f} tok/s",
            f"MTP    {self.mtp_tok_s:8.1f} tok/s  (depth {self.depth}, {self.tokens_per_step:.2f} tokens per verification)",
            f"speedup {self.speedup:.2f}x  (median of {len(self.pair_speedups)} back-to-back pairs; "
            f"range {min(self.pair_speedups, default=0):.2f}-{max(self.pair_speedups, default=0):.2f})",
            f"speedup in CPU time {self.cpu_speedup:.2f}x  (steadier when other processes share the CPU)",
            f"acceptance per draft position  {acceptance}",
            f"one draft-verify round costs {self.round_cost:.2f} plain steps: MTP pays above that many tokens per round"
            if self.round_cost
            else "round cost: not measured (too few rounds)",
            f"greedy outputs identical: {'yes' if self.identical else 'NO'}",
            f"prefill {self.prefill_tok_s(False):.0f} tok/s plain, {self.prefill_tok_s(True):.0f} tok/s with MTP "
            f"(its head runs over the prompt too); {self.plain_tokens} tokens decoded per mode over {self.prompts} prompts",
        ]
        if self.fallbacks:
            lines.append(f"MTP fell back to plain decoding in {len(self.fallbacks)} run(s): {self.fallbacks[0]}")
        if (roof := self._fractions()) is not None:
            lines += [
                f"this machine now: float32 GEMM {roof['gemm_gflops']:.0f} GFLOP/s, memory reads {roof['read_gb_s']:.1f} GB/s "
                f"(numpy, measured in this run); the model: {roof['params'] / 1e9:.3f}B parameters, "
                f"{roof['weight_bytes'] / 1e9:.3f} GB of weights",
                f"prefill {roof['prefill_fraction']:.1%} of the GEMM limit ({roof['prefill_limit_tok_s']:.0f} tok/s at 2 flops "
                f"per parameter); plain decode {roof['decode_fraction']:.1%} of the read limit "
                f"({roof['decode_limit_tok_s']:.1f} tok/s reading every weight once)",
            ]
        if self.plan is not None:
            lines.append(f"CPU plan: {_plan_summary(self.plan)}")
        return "\n".join(lines)


def _plan_summary(plan) -> str | None:
    if plan is None:
        return None
    return (
        f"decode {plan.decode} weights on {plan.decode_threads} thread(s), "
        f"prefill {plan.prefill} weights on {plan.prefill_threads}"
    )


def _sum(totals: list[int], counts: list[int]) -> list[int]:
    width = max(len(totals), len(counts))
    return [(totals[i] if i < len(totals) else 0) + (counts[i] if i < len(counts) else 0) for i in range(width)]


@dataclass
class BenchReport:
    """The default policy against plain decoding, and each forced depth's measured speed-up beside its prediction."""

    policy: DecodeResult
    decision: Decision
    depths: dict[str, DecodeResult]
    costs: CostModel | None  # when the policy has one

    def predicted(self, depth: int) -> float | None:
        cost = self.costs.depths.get(depth) if self.costs is not None else None
        return round(cost.speedup, 3) if cost is not None else None

    @property
    def identical(self) -> bool:
        return self.policy.identical and all(r.identical for r in self.depths.values())

    def to_json(self) -> dict:
        data = self.policy.to_json()
        data["identical"] = self.identical
        data["policy"] = self.decision.to_dict()
        data["depths"] = {
            name: {
                "predicted_speedup": self.predicted(int(name)),
                "speedup": round(r.speedup, 3),
                "cpu_time_speedup": round(r.cpu_speedup, 3),
                "prediction_error": _error(self.predicted(int(name)), r.speedup),
                "acceptance": [round(a, 3) for a in r.acceptance],
                "tokens_per_step": round(r.tokens_per_step, 3),
                "round_cost": round(r.round_cost, 3) if r.round_cost else None,
                "identical": r.identical,
            }
            for name, r in self.depths.items()
        }
        if self.costs is not None:
            data["cost_model"] = {
                "plain_step_s": round(self.costs.plain_step_s, 5),
                "measured_s": self.costs.measured_s,
                "turns": self.costs.turns,
                "turn_tokens": self.costs.turn_tokens,
            }
        return data

    def text(self) -> str:
        lines = [f"policy: {self.decision.reason}", self.policy.report()]
        for name, r in self.depths.items():
            predicted = self.predicted(int(name))
            guess = f"predicted {predicted:.2f}x" if predicted is not None else "not predicted"
            acceptance = " ".join(f"{a:.0%}" for a in r.acceptance) or "-"
            lines.append(
                f"depth {name} forced on: {r.speedup:.2f}x measured, {guess}; acceptance {acceptance}; "
                f"identical {'yes' if r.identical else 'NO'}"
            )
        return "\n".join(lines)


def _error(predicted: float | None, measured: float) -> float | None:
    """The prediction's relative error against the measured speed-up."""
    return round(predicted / measured - 1, 3) if predicted is not None and measured > 0 else None
