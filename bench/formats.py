"""Candidate sets of bit widths for the default build, compared on what users get, in one run.

Run: python bench/formats.py [--candidates 4/8,3/4/8,3/4/5/6/8] [--json]

Each candidate is a set of bit widths, each offered at group size 64 and 32 (``4/8`` is the recipe
before issue #17's follow-up; ``3/4/5/6/8`` is ``--widths 3,5,6``). Every candidate is built from
tiny-agent at --budget 1.05 with the first run's calibration settings (the sensitivity measured once,
reused by the others), as ``optiq`` builds it on first run. Then, beside uniform 4-bit:

- held-out KL from the bf16 base, and bytes x uniform 4-bit;
- ``optiq eval`` on the shipped generated suite and on the people suite (guided call names, as the
  agent runs), every build in one invocation;
- first call right over unseen tool schemas, over the built-in tools, and no-tool restraint, guided
  (``training.quality``'s sets);
- MTP depth-1 acceptance on the held-out agent turns (``bench/mtp_acceptance.py``);
- plain decode tok/s (``optiq bench decode --mtp off``), the builds taken in turn, then in reverse,
  so a change of load falls on all;
- at Qwen3.5-0.8B's matrix shapes, one token's quantized matmuls for the whole model at each bit
  width, against 4-bit: what a 3-, 5- or 6-bit layer costs on this backend at real size.

"Beyond noise": a score below the first candidate's by more than one binomial standard error of
that score over its tasks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from mtp_acceptance import acceptance  # noqa: E402  (bench/, beside this file)

from optiq_runtime.build import BuildOptions, build  # noqa: E402
from optiq_runtime.calibration import heldout_tokens  # noqa: E402
from optiq_runtime.checkpoint import resolve_base  # noqa: E402
from optiq_runtime.fastcpu import preload_env  # noqa: E402
from optiq_runtime.firstrun import FIRST_RUN_SETTINGS  # noqa: E402
from optiq_runtime.kl import per_token_kl_many, summarize  # noqa: E402
from optiq_runtime.load import load_network, load_tokenizer  # noqa: E402

DEFAULT_CANDIDATES = "4/8,3/4/8,3/4/5/6/8"
BUDGET = 1.05
MATMUL_BITS = (3, 4, 5, 6, 8)


def quiet(_line: str) -> None:
    pass


def parse_candidate(text: str) -> tuple[int, ...]:
    """``3/4/5/6/8`` -> the extra widths besides BuildOptions' bits and high_bits (4 and 8): (3, 5, 6)."""
    bits = {int(part) for part in text.split("/")}
    if not {4, 8} <= bits:
        raise SystemExit(f"a candidate must include 4 and 8 (the default and high bits): {text!r}")
    return tuple(sorted(bits - {4, 8}))


def candidate_label(widths: tuple[int, ...] | None) -> str:
    """(3, 5, 6) -> ``3/4/5/6/8``: a candidate's name from its extra widths."""
    return "/".join(str(bits) for bits in sorted(set(widths or ()) | {4, 8}))


def folder_name(candidate: str) -> str:
    return "optiq-" + candidate.replace("/", "-")


def build_all(candidates: list[str], work: Path) -> dict[str, Path]:
    """Uniform 4-bit, then each candidate as the first run builds it (one sensitivity, reused)."""
    base = resolve_base(None)
    folders = {"uniform": build(BuildOptions(out=work / "uniform", base=base, method="uniform"), log=quiet).path}
    probes = None
    for candidate in candidates:
        out = work / folder_name(candidate)
        result = build(
            BuildOptions(
                out=out,
                base=base,
                budget=BUDGET,
                widths=parse_candidate(candidate) or None,
                probes=probes,
                **FIRST_RUN_SETTINGS,
            ),
            log=quiet,
        )
        probes = probes or result.path / "optiq" / "sensitivity.json"
        folders[candidate] = result.path
    return folders


def heldout_kl(folders: dict[str, Path], with_kl: bool) -> dict[str, dict]:
    """Bytes x uniform, the formats chosen, and (``with_kl``) the mean held-out KL from the bf16 base."""
    found = {}
    for name, folder in folders.items():
        meta = json.loads((folder / "optiq" / "metadata.json").read_text())
        found[name] = {
            "kl": None,
            "bytes_ratio": meta["bytes"]["ratio"],
            "format_counts": {k: v for k, v in meta["format_counts"].items() if v},
        }
    if with_kl:
        base = resolve_base(None)
        reference, _ = load_network(base, upcast=True)
        models = {name: load_network(path, upcast=True)[0] for name, path in folders.items()}
        rows = heldout_tokens(load_tokenizer(base)).rows
        for name, values in per_token_kl_many(models, reference, rows).items():
            found[name]["kl"] = summarize(values).mean
    return found


def _env() -> dict[str, str]:
    env = preload_env() or dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def _optiq(argv: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv], env=_env(), cwd=REPO, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"optiq {' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return done.stdout


def agent_eval(suite: str, folders: dict[str, Path], work: Path, limit: int | None) -> dict[str, dict]:
    """``optiq eval SUITE`` (guided) over every build in one run: {name: {overall, categories}}."""
    argv = ["eval", suite, "--json", "--out", str(work / f"eval-{suite}")] + (["--limit", str(limit)] if limit else [])
    for path in folders.values():
        argv += ["--model", str(path)]
    summary = json.loads(_optiq(argv))["models"]
    return {
        name: {
            "passed": summary[path.name]["overall"]["passed"],
            "n": summary[path.name]["overall"]["n"],
            "categories": {c: f"{s['passed']}/{s['n']}" for c, s in summary[path.name]["categories"].items()},
        }
        for name, path in folders.items()
    }


def first_calls(folder: Path, count: int) -> dict[str, float]:
    from training.quality import guided_first_calls

    return guided_first_calls(folder, count)


def plain_decode(folders: dict[str, Path], tokens: int) -> dict[str, float]:
    """Plain decode tok/s of each build, measured in turn and then in reverse order; the mean of both."""
    speeds: dict[str, list[float]] = {name: [] for name in folders}
    for order in (list(folders), list(folders)[::-1]):
        for name in order:
            out = _optiq(
                [
                    "bench",
                    "decode",
                    "--model",
                    str(folders[name]),
                    "--mtp",
                    "off",
                    "--depths",
                    "none",
                    "--repeat",
                    "1",
                    "--tokens",
                    str(tokens),
                    "--json",
                ]
            )
            speeds[name].append(json.loads(out)["plain_tok_s"])
    return {name: sum(values) / len(values) for name, values in speeds.items()}


def real_shape_linears() -> dict[tuple[int, int], int]:
    """{(out, in): count} of the quantizable matrices of Qwen3.5-0.8B's text model (the tied head included)."""
    from checkpoints import QWEN35_08B, small_text_config
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen3_5

    text = small_text_config(QWEN35_08B["vocab_size"], **{k: v for k, v in QWEN35_08B.items() if k != "vocab_size"})
    model = qwen3_5.Model(qwen3_5.ModelArgs(model_type="qwen3_5", text_config=text))  # lazy: nothing is evaluated
    counts: dict[tuple[int, int], int] = {}
    for _, module in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.shape[-1] % 64 == 0:
            shape = tuple(module.weight.shape)
            counts[shape] = counts.get(shape, 0) + 1
    return counts


def matmul_seconds(shapes: dict[tuple[int, int], int], bits: int, repeats: int) -> float:
    """One token through every matrix of ``shapes`` at ``bits`` (group 64), best of ``repeats``; float32
    scales and activations, as the runtime runs on the CPU (bf16 ones are ~10x slower there). The packed
    weights are random words: the time does not depend on their values."""
    mx.random.seed(0)
    parts = []
    for (out_dims, in_dims), count in shapes.items():
        packed = mx.random.randint(0, 2**31, (out_dims, in_dims * bits // 32)).astype(mx.uint32)
        scales, biases = (mx.random.normal((out_dims, in_dims // 64)) * 0.01 for _ in range(2))
        parts.append((mx.random.normal((1, in_dims)), packed, scales, biases, count))
    mx.eval(parts)

    def once() -> float:
        start = time.perf_counter()
        for x, packed, scales, biases, count in parts:
            for _ in range(count):
                mx.eval(mx.quantized_matmul(x, packed, scales, biases, transpose=True, group_size=64, bits=bits))
        return time.perf_counter() - start

    once()
    return min(once() for _ in range(repeats))


def matmul_costs(repeats: int) -> dict[str, float]:
    """Whole-model one-token matmul time at each bit width over 4-bit's, taken in turn and in reverse."""
    shapes = real_shape_linears()
    times: dict[int, list[float]] = {bits: [] for bits in MATMUL_BITS}
    for order in (MATMUL_BITS, MATMUL_BITS[::-1]):
        for bits in order:
            times[bits].append(matmul_seconds(shapes, bits, repeats))
    best = {bits: min(values) for bits, values in times.items()}
    return {f"{bits}-bit": best[bits] / best[4] for bits in MATMUL_BITS} | {"4-bit_ms": 1000 * best[4]}


def standard_error(passed: int, n: int) -> float:
    share = passed / n
    return math.sqrt(share * (1 - share) / n) if n else 0.0


def verdicts(report: dict, candidates: list[str]) -> dict[str, dict[str, bool]]:
    """Per later candidate: is each score within noise of (or above) the first candidate's?"""
    first = candidates[0]
    found = {}
    for candidate in candidates[1:]:
        checks = {}
        for suite in ("generated", "people"):
            ref, new = report["eval"][suite][first], report["eval"][suite][candidate]
            floor = ref["passed"] / ref["n"] - standard_error(ref["passed"], ref["n"])
            checks[f"eval {suite}"] = new["passed"] / new["n"] >= floor - 1e-9
        count = report["first_call_count"]
        for score in ("unseen_schema_first_call", "builtin_first_call", "no_tool"):
            ref = report["first_calls"][first][score]
            checks[score] = (
                report["first_calls"][candidate][score] >= ref - standard_error(round(ref * count), count) - 1e-9
            )
        ref, drafted = report["mtp_acceptance"][first]
        checks["mtp acceptance"] = (
            report["mtp_acceptance"][candidate][0] >= ref - standard_error(round(ref * drafted), drafted) - 1e-9
        )
        found[candidate] = checks
    return found


def print_report(report: dict, candidates: list[str]) -> None:
    names = ["uniform", *candidates]
    print(f"tiny-agent, first-run builds at --budget {BUDGET}:")
    print(
        f"  {'build':<12}{'bytes x':>9}{'KL':>10}{'KL/unif':>9}{'eval gen':>10}{'people':>8}{'unseen':>8}"
        f"{'builtin':>8}{'no-tool':>8}{'MTP acc':>9}{'tok/s':>8}"
    )
    kl_uniform = report["kl"]["uniform"]["kl"]
    for name in names:
        kl, gen, people = report["kl"][name], report["eval"]["generated"][name], report["eval"]["people"][name]
        calls, (acc, _) = report["first_calls"][name], report["mtp_acceptance"][name]
        mean, ratio = (
            (f"{kl['kl']:>10.5f}", f"{kl['kl'] / kl_uniform:>9.3f}") if kl_uniform else (f"{'-':>10}", f"{'-':>9}")
        )
        print(
            f"  {name:<12}{kl['bytes_ratio']:>9.4f}{mean}{ratio}"
            f"{gen['passed']:>6}/{gen['n']:<3}{people['passed']:>4}/{people['n']:<3}"
            f"{calls['unseen_schema_first_call']:>8.3f}{calls['builtin_first_call']:>8.3f}{calls['no_tool']:>8.3f}"
            f"{acc:>9.3f}{report['decode_tok_s'][name]:>8.1f}"
        )
    for name in names:
        print(f"  formats {name}: {report['kl'][name]['format_counts']}")
    if "matmul_x_4bit" in report:
        print(
            "one token through all of Qwen3.5-0.8B's matrices, x 4-bit's "
            f"({report['matmul_x_4bit']['4-bit_ms']:.1f} ms): "
            + ", ".join(f"{k} {v:.2f}x" for k, v in report["matmul_x_4bit"].items() if k != "4-bit_ms")
        )
    for candidate, checks in report["within_noise"].items():
        print(
            f"{candidate} vs {candidates[0]}: " + ", ".join(f"{k} {'ok' if v else 'LOWER'}" for k, v in checks.items())
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidates",
        default=DEFAULT_CANDIDATES,
        help=f"comma-separated bit-width sets, the reference first (default {DEFAULT_CANDIDATES})",
    )
    parser.add_argument("--first-calls", type=int, default=40, help="requests per first-call score (default 40)")
    parser.add_argument("--turns", type=int, default=24, help="held-out turns for MTP acceptance (default 24)")
    parser.add_argument("--decode-tokens", type=int, default=64, help="tokens per decode run (default 64)")
    parser.add_argument("--matmul-repeats", type=int, default=5, help="0 skips the real-shape matmul timing")
    parser.add_argument("--no-kl", action="store_true", help="skip the held-out KL (bench/quantize_scale.py has it)")
    parser.add_argument("--eval-limit", type=int, help="only the first N tasks of each eval suite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    for candidate in candidates:
        parse_candidate(candidate)
    with tempfile.TemporaryDirectory(prefix="optiq-formats-") as folder:
        work = Path(folder)
        folders = build_all(candidates, work)
        print("built", file=sys.stderr, flush=True)
        report: dict = {"kl": heldout_kl(folders, not args.no_kl), "first_call_count": args.first_calls}
        report["eval"] = {suite: agent_eval(suite, folders, work, args.eval_limit) for suite in ("generated", "people")}
        print(f"evaluated {report['eval']}", file=sys.stderr, flush=True)
        report["first_calls"] = {name: first_calls(path, args.first_calls) for name, path in folders.items()}
        print(f"first calls {report['first_calls']}", file=sys.stderr, flush=True)
        report["mtp_acceptance"] = {name: acceptance(path, args.turns, 64) for name, path in folders.items()}
        print(f"acceptance {report['mtp_acceptance']}", file=sys.stderr, flush=True)
        report["decode_tok_s"] = plain_decode(folders, args.decode_tokens)
    if args.matmul_repeats:
        report["matmul_x_4bit"] = matmul_costs(args.matmul_repeats)
    report["within_noise"] = verdicts(report, candidates)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report, candidates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
