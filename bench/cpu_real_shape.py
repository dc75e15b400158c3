"""Decoding at Qwen3.5-0.8B's shape on the CPU backend, with the project's quantized matmul and without it, in one run.

Run: python bench/cpu_real_shape.py [--shape 0.8B] [--tokens 16] [--json]

Writes a random Hugging Face-layout checkpoint of the shape to a temporary folder
(``tests/checkpoints.py``), builds it uniform 4-bit (``optiq quantize --method uniform``), then
runs ``optiq bench decode`` over it twice in fresh processes sharing one cache folder: once as
``optiq`` runs (the CPU plan may pick the kernel, ``optiq_runtime.qmatmul``) and once with
``OPTIQ_NO_KERNEL=1`` (the plan from MLX's kernels and float32 copies only). Each prints prefill and
plain decoding as shares of this machine's GEMM and read limits, measured in that process; this
script adds each process's peak resident memory against the bf16 checkpoint's size, and the
ratio of the two decode speeds. Issue #18's goals: prefill >= 25% of the GEMM limit, plain
decode >= 25% of the read limit, peak RSS <= 2.5x the bf16 checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from quantize_scale import run_measured  # noqa: E402  (bench/, beside this file)

from optiq_runtime.fastcpu import preload_env  # noqa: E402

WRITE = """
import sys
from checkpoints import write_real_shape_checkpoint
write_real_shape_checkpoint(sys.argv[1], sys.argv[2])
"""
GOAL_SHARE = 0.25
GOAL_RSS = 2.5


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = preload_env() or dict(os.environ)
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OPTIQ_HOME": str(home), **extra})
    return env


def decode_run(model: Path, home: Path, tokens: int, **extra: str) -> dict:
    """One ``optiq bench decode`` process: its JSON report and its peak resident bytes."""
    argv = [
        sys.executable,
        "-m",
        "agent.cli",
        "bench",
        "decode",
        "--model",
        str(model),
        "--json",
        "--no-fallback",
        "--mtp-depth",
        "1",
        "--depths",
        "none",
        "--turns",
        "1",
        "--repeat",
        "1",
        "--tokens",
        str(tokens),
        "--ignore-eos",
    ]
    out, _, rss = run_measured(argv, _env(home, **extra))
    return {"report": json.loads(out), "peak_rss": rss}


def measure(shape: str, tokens: int, work: Path) -> dict:
    base, model, home = work / f"qwen35-{shape}", work / f"{shape}-u4", work / "home"
    run_measured([sys.executable, "-c", WRITE, str(base), shape], _env(home))
    checkpoint_bytes = sum(f.stat().st_size for f in base.glob("*.safetensors"))
    run_measured(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "quantize",
            "--base",
            str(base),
            "--out",
            str(model),
            "--method",
            "uniform",
            "--json",
        ],
        _env(home),
    )
    runs = {"kernel": decode_run(model, home, tokens), "mlx": decode_run(model, home, tokens, OPTIQ_NO_KERNEL="1")}
    return {
        "shape": shape,
        "checkpoint_bytes": checkpoint_bytes,
        "runs": {name: _summary(run, checkpoint_bytes) for name, run in runs.items()},
    }


def _summary(run: dict, checkpoint_bytes: int) -> dict:
    report = run["report"]
    return {
        "plain_tok_s": _find(report, "plain_tok_s"),
        "prefill_tok_s": _find(report, "prefill_tok_s")["plain"],
        "roofline": _find(report, "roofline"),
        "cpu_plan": _find(report, "cpu_plan"),
        "peak_rss_gb": run["peak_rss"] / 1e9,
        "rss_x_checkpoint": run["peak_rss"] / checkpoint_bytes,
    }


def _find(tree, key: str):
    """The first value under ``key`` anywhere in a JSON tree (the report nests per setting)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            if (found := _find(item, key)) is not None:
                return found
    return None


def text(result: dict) -> str:
    lines = [
        f"Qwen3.5-{result['shape']} shape, uniform 4-bit, bf16 checkpoint {result['checkpoint_bytes'] / 1e9:.2f} GB"
    ]
    for name, run in result["runs"].items():
        label = "with the kernel" if name == "kernel" else "MLX kernels only (OPTIQ_NO_KERNEL=1)"
        lines.append(f"{label}: plan {run['cpu_plan']}")
        lines.append(
            f"  plain decode {run['plain_tok_s']:.2f} tok/s, prefill {run['prefill_tok_s']:.1f} tok/s; "
            f"roofline {json.dumps(run['roofline'])}"
        )
        lines.append(
            f"  peak RSS {run['peak_rss_gb']:.2f} GB = {run['rss_x_checkpoint']:.2f}x the checkpoint "
            f"(goal <= {GOAL_RSS}x)"
        )
    kernel, mlx = result["runs"]["kernel"], result["runs"]["mlx"]
    lines.append(
        f"plain decode with the kernel / without: {kernel['plain_tok_s'] / mlx['plain_tok_s']:.2f}x "
        f"(goal: decode >= {GOAL_SHARE:.0%} of the read limit, prefill >= {GOAL_SHARE:.0%} of GEMM)"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="0.8B", choices=["0.8B", "2B"])
    parser.add_argument("--tokens", type=int, default=16, help="tokens decoded per run (default 16)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="optiq-cpu-real-") as work:
        result = measure(args.shape, args.tokens, Path(work))
    print(json.dumps(result) if args.json else text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
