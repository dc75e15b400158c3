"""OptiQ's build at real size against one float32 reference forward over the same tokens, measured in one run.

Run: python bench/quantize_scale.py [--shapes 0.8B[,2B]] [--tokens 2048] [--no-quality] [--json]

For each shape (Qwen3.5-0.8B's text shape by default; ``2B`` adds the 2B-class shape, which takes
about three times as long) it writes a random Hugging Face-layout checkpoint to a temporary
folder (``tests/checkpoints.py``), times stock mlx-lm's float32 forward over the build's
calibration tokens (rows of 256, one at a time so its logits fit), then runs ``optiq quantize
--tokens N`` in a fresh process and reads its wall time and peak resident memory. Each runs in
its own process, with OpenBLAS preloaded as ``optiq`` does.

Then, on tiny-agent, it compares held-out KL from the unquantized base: uniform 4-bit; OptiQ at
--budget 1.05 (the default formats, and each other ``--candidates`` set of bit widths at both byte
points); the recipe before issue #17 (per-layer KL probes, from git commit
``OLD_RECIPE``) at the same budget; mlx-lm's ``dynamic_quant`` (4/8-bit group 64, fed our calibration tokens; at its
own default of 4/5-bit and 5.0 bits per weight it lands at uniform's bytes on tiny-agent, whose
unquantized norms count in its bits per weight) asked for the bits per weight that land at
``--peer-bytes`` (1.34x uniform, issue #17's point), and OptiQ and the old recipe at the bytes it
reached. And it times tiny-agent's first-run build as ``optiq`` does it.
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

import mlx.core as mx
import mlx.nn as nn

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from optiq_runtime.build import BuildOptions, build  # noqa: E402
from optiq_runtime.build_weights import quantized_nbytes  # noqa: E402
from optiq_runtime.calibration import calibration_tokens, heldout_tokens  # noqa: E402
from optiq_runtime.checkpoint import resolve_base  # noqa: E402
from optiq_runtime.fastcpu import preload_env  # noqa: E402
from optiq_runtime.kl import per_token_kl_many, summarize  # noqa: E402
from optiq_runtime.load import load_network, load_tokenizer, upcast_floats  # noqa: E402

OLD_RECIPE = "5a77976"  # the last commit whose quantizer probed every layer's KL (issue #17's "today")
SEQ_LEN = 256
GIB = 2**30
WRITE = """
import sys
from checkpoints import write_real_shape_checkpoint
write_real_shape_checkpoint(sys.argv[1], sys.argv[2])
"""
FORWARD = """
import sys, time
import mlx.core as mx
from optiq_runtime.calibration import calibration_tokens
from optiq_runtime.load import load_network, load_tokenizer
model, _ = load_network(sys.argv[1], upcast=True)
rows = calibration_tokens(load_tokenizer(sys.argv[1]), seq_len=int(sys.argv[3]), max_tokens=int(sys.argv[2])).rows
mx.eval(model(rows[:1, :8]))
start = time.perf_counter()
for row in range(rows.shape[0]):
    mx.eval(model(rows[row : row + 1]))
print(rows.size, time.perf_counter() - start)
"""
OLD_BUILD = """
import sys
from optiq_runtime.build import BuildOptions, build
probes = sys.argv[4] if len(sys.argv) > 4 else None
build(BuildOptions(out=sys.argv[1], budget=float(sys.argv[2]), max_tokens=int(sys.argv[3]), probes=probes),
      log=lambda line: None)
"""
FIRST_RUN = """
import time
start = time.perf_counter()
from optiq_runtime.firstrun import ensure_model
ensure_model(None, progress=lambda e: None, log=lambda s: None)
print(time.perf_counter() - start)
"""


def _env(pythonpath: list[Path]) -> dict[str, str]:
    env = preload_env() or dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return env


def run_measured(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[str, float, int]:
    """Run a process to the end: (stdout, wall seconds, peak resident bytes)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({process.returncode}): {stderr.strip().splitlines()[-1:]}")
    return stdout, seconds, usage.ru_maxrss * 1024


def measure_shape(shape: str, tokens: int, work: Path) -> dict:
    """Write a random checkpoint of ``shape``; time one reference forward and the build over ``tokens``."""
    env = _env([REPO, REPO / "tests"])
    base = work / f"qwen35-{shape}"
    run_measured([sys.executable, "-c", WRITE, str(base), shape], env)
    parameters = sum(v.size for v in mx.load(str(base / "model.safetensors")).values())
    out, _, forward_rss = run_measured([sys.executable, "-c", FORWARD, str(base), str(tokens), str(SEQ_LEN)], env)
    forward_tokens, forward_seconds = out.split()
    out, build_seconds, build_rss = run_measured(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "quantize",
            "--base",
            str(base),
            "--out",
            str(work / f"{shape}-optiq"),
            "--tokens",
            str(tokens),
            "--json",
        ],
        env,
    )
    metadata = json.loads(out)
    working_copy = 4 * parameters
    return {
        "shape": shape,
        "parameters": parameters,
        "tokens": int(forward_tokens),
        "reference_forward_s": float(forward_seconds),
        "build_s": build_seconds,
        "build_x_forward": build_seconds / float(forward_seconds),
        "build_peak_rss_gib": build_rss / GIB,
        "forward_peak_rss_gib": forward_rss / GIB,
        "float32_copy_gib": working_copy / GIB,
        "rss_goal_gib": (working_copy + 1.5 * GIB) / GIB,
        "sensitivity": metadata.get("sensitivity"),
        "bytes_ratio": metadata["bytes"]["ratio"],
    }


def dynamic_quant(base: Path, rows: mx.array, bytes_ratio: float, uniform_bytes: int) -> nn.Module:
    """mlx-lm's dynamic_quant (its gradient sensitivities and threshold search, 4/8-bit group 64) asked for
    the bits per weight that land nearest below ``bytes_ratio`` x uniform bytes (found by bisection; on
    tiny-agent its threshold search stops at 1.021x however many bits are asked for)."""
    from quantize import dynamic_quant_at  # bench/quantize.py, beside this file

    quantized_at = dynamic_quant_at(base, rows)
    low, high = 4.0, 16.0
    for _ in range(10):
        middle = (low + high) / 2
        low, high = (
            (middle, high) if quantized_nbytes(quantized_at(middle)) < bytes_ratio * uniform_bytes else (low, middle)
        )
    return quantized_at(low)


def old_recipe(out: Path, budget: float, tokens: int, work: Path, probes: Path | None = None) -> Path | None:
    """Build with the quantizer of ``OLD_RECIPE`` (checked out from git into ``work``); None without git."""
    source = work / "old-recipe"
    if not source.exists():
        source.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", OLD_RECIPE, "optiq_runtime", "agent", "tools", "sandbox"],
            capture_output=True,
        )
        if archive.returncode:
            return None
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    argv = [sys.executable, "-c", OLD_BUILD, str(out), str(budget), str(tokens)] + ([str(probes)] if probes else [])
    run_measured(argv, _env([source]), cwd=source)
    return out


def quality(tokens: int, work: Path, peer_ratio: float, with_old: bool, candidates: list[str]) -> dict:
    """Held-out KL on tiny-agent: uniform, OptiQ (the default formats and each other candidate set), the old
    recipe and dynamic_quant, at 1.05x and at equal bytes."""
    from formats import candidate_label, folder_name, parse_candidate  # bench/formats.py, beside this file

    base = resolve_base(None)
    quiet = lambda line: None  # noqa: E731
    uniform = build(BuildOptions(out=work / "uniform", base=base, method="uniform"), log=quiet)
    uniform_bytes = uniform.metadata["bytes"]["uniform"]
    optiq = build(BuildOptions(out=work / "optiq", base=base, budget=1.05, max_tokens=tokens), log=quiet)
    probes = optiq.path / "optiq" / "sensitivity.json"
    rows = calibration_tokens(load_tokenizer(base), seq_len=SEQ_LEN, max_tokens=tokens).rows
    peer = dynamic_quant(base, rows, peer_ratio, uniform_bytes)
    peer_bytes = quantized_nbytes(peer)
    peer_budget = peer_bytes / uniform_bytes
    optiq_equal = build(
        BuildOptions(out=work / "optiq_equal", base=base, budget=peer_budget, max_tokens=tokens, probes=probes),
        log=quiet,
    )
    folders = {"uniform": uniform.path, "optiq": optiq.path, "optiq_at_peer_bytes": optiq_equal.path}
    default = candidate_label(BuildOptions(out=work).widths)
    for candidate in [c for c in candidates if c != default]:
        for budget, suffix in ((1.05, ""), (peer_budget, "_at_peer_bytes")):
            name = f"{folder_name(candidate)}{suffix}"
            folders[name] = build(
                BuildOptions(
                    out=work / name,
                    base=base,
                    budget=budget,
                    max_tokens=tokens,
                    probes=probes,
                    widths=parse_candidate(candidate) or None,
                ),
                log=quiet,
            ).path
    old = old_recipe(work / "old", 1.05, tokens, work) if with_old else None
    if old is not None:
        folders["old_recipe"] = old
        folders["old_recipe_at_peer_bytes"] = old_recipe(
            work / "old_equal", peer_budget, tokens, work, old / "optiq" / "sensitivity.json"
        )
    models = {name: load_network(path, upcast=True)[0] for name, path in folders.items()}
    models["dynamic_quant"] = upcast_floats(peer)
    reference, _ = load_network(base, upcast=True)
    heldout = heldout_tokens(load_tokenizer(base))
    kl = {name: summarize(values).mean for name, values in per_token_kl_many(models, reference, heldout.rows).items()}
    sizes = {
        name: json.loads((path / "optiq" / "metadata.json").read_text())["bytes"]["optiq"]
        for name, path in folders.items()
    }
    sizes["dynamic_quant"] = peer_bytes
    return {
        "heldout_tokens": heldout.tokens,
        "calibration_tokens": rows.size,
        "default_formats": default,
        "models": {
            name: {
                "bytes_ratio": sizes[name] / uniform_bytes,
                "kl": kl[name],
                "kl_x_uniform": kl[name] / kl["uniform"],
                "kl_x_dynamic_quant": kl[name] / kl["dynamic_quant"],
            }
            for name in models
        },
        "first_run_s": first_run_seconds(),
    }


def first_run_seconds() -> float:
    with tempfile.TemporaryDirectory() as home:
        env = _env([REPO])
        env["OPTIQ_HOME"] = home
        out, _, _ = run_measured([sys.executable, "-c", FIRST_RUN], env)
        return float(out.strip().splitlines()[-1])


def checks(report: dict) -> dict[str, bool]:
    found = {}
    for row in report["scale"]:
        found[f"{row['shape']}: build at most 6x one reference forward"] = row["build_x_forward"] <= 6
        found[f"{row['shape']}: peak RSS at most float32 copy + 1.5 GiB"] = (
            row["build_peak_rss_gib"] <= row["rss_goal_gib"]
        )
    if "quality" in report:
        models = report["quality"]["models"]
        found["tiny-agent: OptiQ KL at most 0.8x uniform at <= 1.05x bytes"] = (
            models["optiq"]["kl_x_uniform"] <= 0.8 and models["optiq"]["bytes_ratio"] <= 1.05
        )
        found["tiny-agent: OptiQ KL at most 0.9x dynamic_quant at its bytes"] = (
            models["optiq_at_peer_bytes"]["kl"] <= 0.9 * models["dynamic_quant"]["kl"]
            and models["optiq_at_peer_bytes"]["bytes_ratio"] <= models["dynamic_quant"]["bytes_ratio"]
        )
        found["tiny-agent: first-run build under 60 s"] = report["quality"]["first_run_s"] < 60
    return found


def print_report(report: dict) -> None:
    for row in report["scale"]:
        print(f"{row['shape']} ({row['parameters'] / 1e9:.2f}B parameters), {row['tokens']} calibration tokens:")
        print(
            f"  float32 reference forward (stock mlx-lm): {row['reference_forward_s']:.1f} s; "
            f"optiq quantize: {row['build_s']:.1f} s = {row['build_x_forward']:.2f}x"
        )
        print(
            f"  peak RSS: build {row['build_peak_rss_gib']:.2f} GiB (float32 copy {row['float32_copy_gib']:.2f} GiB, "
            f"goal {row['rss_goal_gib']:.2f} GiB); the forward alone {row['forward_peak_rss_gib']:.2f} GiB"
        )
        print(f"  sensitivity: {row['sensitivity']}")
    if "quality" in report:
        q = report["quality"]
        print(f"tiny-agent, KL on {q['heldout_tokens']} held-out tokens (calibration {q['calibration_tokens']}):")
        print(f"  optiq = the default formats, {q['default_formats']}-bit")
        print(f"  {'model':<34}{'x uniform bytes':>16}{'KL mean':>10}{'KL / uniform':>14}{'KL / peer':>11}")
        for name, row in q["models"].items():
            print(
                f"  {name:<34}{row['bytes_ratio']:>16.4f}{row['kl']:>10.5f}{row['kl_x_uniform']:>14.3f}"
                f"{row['kl_x_dynamic_quant']:>11.3f}"
            )
        print(f"  first-run build: {q['first_run_s']:.1f} s")
    for check, passed in report["checks"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="0.8B", help="comma-separated: 0.8B, 2B (default 0.8B)")
    parser.add_argument("--tokens", type=int, default=2048, help="calibration tokens of the real-size builds")
    parser.add_argument("--quality-tokens", type=int, default=4096, help="calibration tokens on tiny-agent")
    parser.add_argument("--no-quality", action="store_true", help="skip the tiny-agent comparison")
    parser.add_argument(
        "--peer-bytes",
        type=float,
        default=1.34,
        help="bytes (x uniform) dynamic_quant is asked to reach (default 1.34, issue #17's point)",
    )
    parser.add_argument("--no-old-recipe", action="store_true", help="skip the recipe before issue #17 (slow)")
    parser.add_argument(
        "--candidates",
        default="4/8,3/4/8,3/4/5/6/8",
        help="bit-width sets built beside the default at both byte points (bench/formats.py's names)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict = {"scale": []}
    with tempfile.TemporaryDirectory(prefix="optiq-scale-") as folder:
        work = Path(folder)
        for shape in [s.strip() for s in args.shapes.split(",") if s.strip()]:
            report["scale"].append(measure_shape(shape, args.tokens, work))
            print(f"{shape}: done", file=sys.stderr, flush=True)
        if not args.no_quality:
            (work / "tiny").mkdir()
            report["quality"] = quality(
                args.quality_tokens,
                work / "tiny",
                args.peer_bytes,
                not args.no_old_recipe,
                [c.strip() for c in args.candidates.split(",") if c.strip()],
            )
    report["checks"] = checks(report)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
