"""What a fused MTP round costs in plain decode steps, by backbone depth: ``python bench/mtp_rounds.py``.

MTP pays when a round yields more tokens than it costs plain steps. The head is one layer, so
that cost falls as the backbone deepens. In one run this decodes the embedded tiny-agent
(4 layers) and random checkpoints of its shapes with 12 and 24 layers, plain and with MTP at
depths 1 and 2 (greedy, end of turn ignored, speed guard off), and prints each round's cost in
plain steps and the tokens per round MTP needs to break even and to be 1.4x faster. Random
weights have no useful drafts: this measures cost, not acceptance.

``--draft-vocab`` measures instead what the reduced draft vocabulary (optiq_runtime.draft_vocab)
saves at Qwen3.5-0.8B's shape: a depth-1 round's cost in plain steps with the head drafting over
the whole 248,320-token vocabulary and over the K most frequent calibration tokens, alternating
in one run. ``--model DIR`` takes a built model of that shape (default: a random 0.8B-shaped
checkpoint written and uniformly quantized to 4 bits in a temporary folder, which takes minutes).
Beside the measured cut it prints the bound (optiq_runtime.round_bytes): the bytes each part of a
depth-1 round reads, counted from the loaded arrays, and the largest cut the draft vocabulary could
give if every pass ran at the memory-read limit; and the measured times against that limit's times,
at this machine's read bandwidth measured in the same run (optiq_runtime.roofline, as
bench/cpu_real_shape.py's read limit).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from optiq_runtime.fastcpu import reexec_with_openblas

TEXT_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "linear_num_key_heads",
    "linear_num_value_heads",
    "linear_key_head_dim",
    "linear_value_head_dim",
    "linear_conv_kernel_dim",
    "full_attention_interval",
)


def deep_copy_of_shapes(base: Path, layers: int, folder: Path) -> Path:
    """A random Qwen3.5 checkpoint with ``base``'s shapes and ``layers`` layers (tests/checkpoints.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from checkpoints import write_random_checkpoint

    text = json.loads((base / "config.json").read_text())["text_config"]
    shapes = {k: text[k] for k in TEXT_FIELDS if k in text}
    return write_random_checkpoint(folder, seed=layers, num_hidden_layers=layers, **shapes)


def round_costs(model: Path, tokens: int) -> dict[int, float | None]:
    from agent.cli.bench import measure_decode, read_prompts
    from optiq_runtime.engine import Engine

    costs = {}
    for depth in (1, 2):
        engine = Engine.load(model, mtp_depth=depth)
        engine.auto_fallback = False
        result = measure_decode(engine, read_prompts(None)[:6], tokens, repeat=1, ignore_eos=True)
        costs[depth] = result.round_cost
    return costs


def draft_vocab_costs(model: Path, tokens: int, repeat: int) -> dict:
    """Depth-1 round costs (plain steps) drafting over the whole vocabulary and over the draft vocabulary, alternating."""
    from optiq_runtime.calibration import CALIBRATION_FILE, read_samples
    from optiq_runtime.draft_vocab import DEFAULT_K, frequent_tokens, read_draft_vocab
    from optiq_runtime.engine import Engine
    from optiq_runtime.sampling import Sampling

    engine = Engine.load(model, mtp="on", mtp_depth=1)
    engine.auto_fallback = False
    engine.tokenizer.eos_token_ids = set()  # every run decodes ``tokens`` tokens
    vocab = engine.backbone.args.vocab_size
    top = read_draft_vocab(model) or frequent_tokens(engine.tokenizer, read_samples(CALIBRATION_FILE), DEFAULT_K, vocab)
    prompt = engine.tokenizer.encode("Count from one to twenty.")
    steps: list[float] = []
    rounds: dict[str, list[float]] = {"full": [], "draft": []}
    identical = True
    for index in range(repeat + 1):  # the first pass compiles the graphs and is not counted
        for name, ids in (("full", None), ("draft", top)):
            # runs reuse the prompt's cache (no prefill); plain and MTP alternate so both see the same load
            engine.mtp_enabled = False
            plain = engine.generate(prompt, Sampling(max_tokens=tokens))
            plain_steps = engine.last_stats.plain_step_s
            engine.use_draft_vocab(ids)
            engine.mtp_enabled = True
            identical = identical and engine.generate(prompt, Sampling(max_tokens=tokens)) == plain
            if index:
                steps += plain_steps
                rounds[name] += engine.last_stats.round_s
    step = statistics.median(steps)
    costs = {name: [r / step for r in times] for name, times in rounds.items()}
    full, draft = (statistics.median(costs[n]) if costs[n] else None for n in ("full", "draft"))
    full_s, draft_s = (statistics.median(rounds[n]) if rounds[n] else None for n in ("full", "draft"))
    return {
        "vocab_size": vocab,
        "k": len(top),
        "round_s_full": full_s,
        "round_s_draft_vocab": draft_s,
        "round_cost_full": full,
        "round_cost_draft_vocab": draft,
        "cut": 1 - draft / full if full and draft else None,
        "identical": identical,
        "plain_step_s": step,
        "rounds": {n: len(v) for n, v in costs.items()},
    }


def byte_bound(model: Path, k: int, measured: dict, limits) -> dict:
    """The bytes each part of a depth-1 round reads, the cut they bound, and the read-limit times beside the measured ones.

    ``limits``: this machine's limits measured before the rounds; the better of them and a second
    measurement now is taken (one measurement on a shared machine can read low).
    """
    from optiq_runtime.backbone import text_args
    from optiq_runtime.load import load_model
    from optiq_runtime.mtp import load_mtp_head
    from optiq_runtime.roofline import measure_limits
    from optiq_runtime.round_bytes import round_bytes

    loaded = load_model(model)  # as loaded, no CPU plan: lazily, its arrays are never read here
    parts = round_bytes(loaded.model, load_mtp_head(loaded.path, text_args(loaded.model)))
    read = limits.best(measure_limits()).read_bytes_s
    limit = {
        "plain_step_s": parts.verify / read,
        "round_s_full": parts.round() / read,
        "round_s_draft_vocab": parts.round(k) / read,
    }
    return {
        "bytes": parts.report(k),
        "read_gb_s": round(read / 1e9, 2),
        "read_limit_s": limit,
        "share_of_read_limit": {n: limit[n] / measured[n] if measured.get(n) else None for n in limit},
    }


def quantized_real_shape(folder: Path) -> Path:
    """A random Qwen3.5-0.8B-shaped checkpoint, uniformly quantized to 4 bits (as ``optiq quantize --method uniform``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from checkpoints import write_real_shape_checkpoint

    from optiq_runtime.build import BuildOptions, build

    base = write_real_shape_checkpoint(folder / "base", "0.8B")
    return build(BuildOptions(out=folder / "u4", base=str(base), method="uniform")).path


def main_draft_vocab(args) -> int:
    from optiq_runtime.roofline import measure_limits

    with tempfile.TemporaryDirectory() as work:
        model = Path(args.model) if args.model else quantized_real_shape(Path(work))
        limits = measure_limits()
        result = draft_vocab_costs(model, args.tokens, args.repeat)
        result["bound"] = byte_bound(model, result["k"], result, limits)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"vocabulary {result['vocab_size']}, draft vocabulary K={result['k']}")
    print(
        f"depth-1 round: {result['round_cost_full']:.2f} plain steps drafting over the whole vocabulary, "
        f"{result['round_cost_draft_vocab']:.2f} over the draft vocabulary: {result['cut']:.0%} cheaper"
    )
    print(f"greedy outputs identical to plain decoding: {'yes' if result['identical'] else 'NO'}")
    print(bound_text(result["bound"], result["cut"]))
    return 0


def bound_text(bound: dict, measured_cut: float | None) -> str:
    b, mb = bound["bytes"], 1e6
    limit, share = bound["read_limit_s"], bound["share_of_read_limit"]
    lines = [
        f"bytes read: verification {b['verify'] / mb:.1f} MB (backbone {b['backbone'] / mb:.1f}, "
        f"output layer {b['output'] / mb:.1f}); draft {b['draft_full'] / mb:.1f} MB over the whole vocabulary "
        f"(MTP layer {b['mtp_layer'] / mb:.1f}, fc {b['fc'] / mb:.1f}, output {b['output'] / mb:.1f}), "
        f"{b['draft_k'] / mb:.1f} MB over K rows (output {b['draft_output_k'] / mb:.1f})",
        f"depth-1 round: {b['round_full'] / mb:.1f} MB whole vocabulary, {b['round_k'] / mb:.1f} MB K rows: "
        f"at the read limit the draft vocabulary cuts a round by at most {b['bound_cut']:.1%} "
        f"(measured {measured_cut:.1%}; goal a third)",
        f"at the read limit ({bound['read_gb_s']} GB/s) / measured: "
        + ", ".join(
            f"{label} {limit[name] * 1e3:.1f} / {limit[name] / share[name] * 1e3:.1f} ms ({share[name]:.0%})"
            for name, label in (
                ("plain_step_s", "plain step"),
                ("round_s_full", "round, whole vocabulary"),
                ("round_s_draft_vocab", "round, K rows"),
            )
            if share[name]
        ),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens per run (default 64)")
    parser.add_argument(
        "--draft-vocab", action="store_true", help="measure the reduced draft vocabulary at the 0.8B shape"
    )
    parser.add_argument("--model", help="with --draft-vocab: a built model folder of that shape")
    parser.add_argument(
        "--repeat", type=int, default=2, help="with --draft-vocab: full/reduced alternations (default 2)"
    )
    parser.add_argument("--json", action="store_true", help="with --draft-vocab: one JSON object")
    args = parser.parse_args()
    if args.draft_vocab:
        return main_draft_vocab(args)
    from optiq_runtime.embedded import embedded_base_path

    base = embedded_base_path()
    print("layers  depth  round cost (plain steps)  tokens/round to break even  for 1.4x")
    with tempfile.TemporaryDirectory() as work:
        for layers in (4, 12, 24):
            model = base if layers == 4 else deep_copy_of_shapes(base, layers, Path(work) / f"deep{layers}")
            for depth, cost in round_costs(model, args.tokens).items():
                if cost is None:
                    print(f"{layers:>6}  {depth:>5}  not measured")
                    continue
                print(f"{layers:>6}  {depth:>5}  {cost:>24.2f}  {cost:>26.2f}  {1.4 * cost:>8.2f}")
    print("tokens per round = 1 + accepted drafts (at most 1 + depth)")
    return 0


if __name__ == "__main__":
    reexec_with_openblas(sys.argv)
    sys.exit(main())
