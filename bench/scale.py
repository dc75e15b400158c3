"""Scale-out on MLX's own distributed engine, two local ranks against one process: ``python bench/scale.py``.

In one run:

1. Sharded evaluation: ``optiq eval`` on the shipped suite with the embedded tiny-agent, as one
   process, as two ranks started by ``--ranks 2`` and, for reference, as two ``mlx.launch --backend
   ring`` ranks; wall time of each (start to table, model loading included), the ratios to one
   process (goal for ``--ranks 2``: at most 0.6), and whether the results are set-equal.
2. Tensor parallelism on a random checkpoint of Qwen3.5-0.8B's shape (written to a temporary
   folder, or ``--checkpoint DIR``): greedy tokens with MTP off, on with the head replicated and on
   with the head split, as one process and as two ranks; whether they are identical, the weights
   resident per rank against one process (goal: at most 0.6x), and seconds per token.

Two local ranks share this machine's cores with each other (and with whatever else runs): the
eval ratio is what two processes on these cores give, not what two Macs give.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SAME = ("model", "id", "passed", "error", "detail", "calls", "invalid_calls", "steps", "tokens")


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, result


def verdicts(folder: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    return sorted(tuple(json.dumps(r[k]) for k in SAME) for r in rows)


def bench_eval(work: Path, limit: int | None) -> None:
    from ranks import launch_argv

    from optiq_runtime.embedded import embedded_base_path

    argv = [
        "-m",
        "agent.cli",
        "eval",
        "--model",
        str(embedded_base_path()),
        *(["--limit", str(limit)] if limit else []),
    ]
    load_before = _load()
    one_s, _ = timed([sys.executable, *argv, "--out", str(work / "one")])
    ranks_s, _ = timed([sys.executable, *argv, "--out", str(work / "ranks"), "--ranks", "2"])
    launch_s, _ = timed(launch_argv(*argv, "--out", str(work / "launch")))
    entries = len((work / "one" / "results.jsonl").read_text().splitlines())
    same = {name: verdicts(work / "one") == verdicts(work / name) for name in ("ranks", "launch")}
    print(
        f"sharded eval, shipped suite ({entries} tasks, tiny-agent), wall time from start to table "
        f"(load averages {load_before} before, {_load()} after):"
    )
    print(
        f"  one process {one_s:.1f} s; two ranks with --ranks 2 {ranks_s:.1f} s, ratio {ranks_s / one_s:.2f} "
        f"(goal <= 0.60); results set-equal: {same['ranks']}"
    )
    print(
        f"  for reference, two ranks under mlx.launch {launch_s:.1f} s, ratio {launch_s / one_s:.2f} "
        f"(its relay threads spin on the ranks' stdin pipes); results set-equal: {same['launch']}"
    )
    print("  (two local ranks share this machine's cores, with each other and with other work)")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tp_job(model: str, tokens: int) -> None:
    """Run under mlx.launch (or alone for the reference): rank 0 prints one JSON line."""
    from optiq_runtime.engine import Engine
    from optiq_runtime.ranks import world
    from optiq_runtime.tensor_parallel import load_sharded, resident_bytes, shard_head

    group = world()
    if group.size() > 1:
        engine = load_sharded(model, group)
    else:
        engine = Engine.load(model, dequantize=False)
        engine.auto_fallback = False
    prompt = engine.tokenizer.encode(
        "Scale-out runs one model over several machines, each holding a slice of every layer."
    )
    out = {"weights": resident_bytes(engine.model, engine.head)}
    modes = [("plain", False), ("mtp", True)]
    for name, mtp in modes:
        out[name], out[f"{name}_s"] = _decode(engine, prompt, tokens, mtp)
    if group.size() > 1 and engine.head is not None:
        split = Engine(engine.model, engine.tokenizer, engine.model_path, shard_head(engine.head, group), mtp=True)
        split.auto_fallback = False
        out["mtp_split_head"], out["mtp_split_head_s"] = _decode(split, prompt, tokens, True)
        out["weights_split_head"] = resident_bytes(engine.model, split.head)
    if group.rank() == 0:
        print(json.dumps(out), flush=True)


def _decode(engine, prompt: list[int], tokens: int, mtp: bool) -> tuple[list[int], float]:
    from optiq_runtime.sampling import Sampling

    engine.mtp_enabled = mtp
    engine.reset()
    engine.generate(prompt, Sampling(max_tokens=4))  # compiles the graphs
    engine.reset()
    started = time.perf_counter()
    generated = engine.generate(prompt, Sampling(max_tokens=tokens))
    return generated, (time.perf_counter() - started) / max(1, len(generated))


def bench_tp(work: Path, checkpoint: str | None, tokens: int) -> None:
    from ranks import launch_argv

    if checkpoint is None:
        from checkpoints import write_real_shape_checkpoint

        checkpoint = str(write_real_shape_checkpoint(work / "qwen35-0.8b-random", "0.8B"))
    job = [str(Path(__file__).resolve()), "--tp-job", checkpoint, "--tokens", str(tokens)]
    _, alone = timed([sys.executable, *job])
    _, ranked = timed(launch_argv(*job))
    one, two = json.loads(alone.stdout), json.loads(ranked.stdout.splitlines()[-1])
    print(f"tensor parallel, Qwen3.5-0.8B shape (random), {tokens} greedy tokens, two ranks vs one process:")
    for mode in ("plain", "mtp"):
        print(
            f"  {mode:<5} tokens identical: {two[mode] == one[mode]}; s/token {two[f'{mode}_s']:.3f} vs {one[f'{mode}_s']:.3f}"
        )
    if "mtp_split_head" in two:
        print(
            f"  mtp, head split: tokens identical: {two['mtp_split_head'] == one['mtp']}; "
            f"s/token {two['mtp_split_head_s']:.3f}; weights {two['weights_split_head'] / one['weights']:.3f}x"
        )
    print(
        f"  weights resident per rank {two['weights'] / 2**20:.0f} MiB vs one process {one['weights'] / 2**20:.0f} MiB: "
        f"{two['weights'] / one['weights']:.3f}x (goal <= 0.60, head replicated)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", help="a Qwen3.5-0.8B-shaped folder (default: write a random one to a temporary folder)"
    )
    parser.add_argument("--tokens", type=int, default=32, help="greedy tokens per tensor-parallel run (default 32)")
    parser.add_argument("--limit", type=int, help="only the first N tasks of the suite (default: all)")
    parser.add_argument("--only", choices=["eval", "tp"], help="run one half")
    parser.add_argument("--tp-job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tp_job:
        tp_job(args.tp_job, args.tokens)
        return 0
    with tempfile.TemporaryDirectory(prefix="optiq-bench-scale-") as work:
        if args.only in (None, "eval"):
            bench_eval(Path(work), args.limit)
        if args.only in (None, "tp"):
            bench_tp(Path(work), args.checkpoint, args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
