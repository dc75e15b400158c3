"""OptiQ against uniform 4-bit and mlx-lm's dynamic_quant on the embedded model, measured in one run.

Run: python bench/quantize.py [--base PATH] [--tokens 4096] [--json]

Builds uniform 4-bit and OptiQ (--budget 1.05; the default recipe: 3/4/5/6/8-bit at group size 64
or 32; the same without the finer groups, ``--fine-group-size none``; and 4/8-bit only,
``--widths none``, the recipe before #17's follow-up) from the same base, quantizes the same
base with mlx-lm's dynamic_quant (its Python API, fed our calibration tokens, no network) at
OptiQ's bits per weight, and measures every model's KL from the unquantized base on the held-out
set. Then times a first-run build (``ensure_model``) in a fresh process, as a user's first
``optiq`` would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from optiq_runtime.build import BuildOptions, build
from optiq_runtime.build_weights import quantized_nbytes
from optiq_runtime.calibration import calibration_tokens, heldout_tokens
from optiq_runtime.checkpoint import resolve_base
from optiq_runtime.fastcpu import preload_env
from optiq_runtime.kl import per_token_kl_many, summarize
from optiq_runtime.load import load_network, load_tokenizer, upcast_floats

FIRST_RUN = """
import time, sys
start = time.perf_counter()
from optiq_runtime.firstrun import ensure_model
ensure_model(None if sys.argv[1] == "-" else sys.argv[1], progress=lambda e: None, log=lambda s: None)
print(time.perf_counter() - start)
"""


def quiet(_line: str) -> None:
    pass


def dynamic_quant_at(base: Path, rows: mx.array) -> Callable[[float], nn.Module]:
    """mlx-lm's gradient-based sensitivities (computed once); the returned function builds the model its threshold
    search picks for a target bits per weight, 4/8 bits, group 64."""
    from mlx_lm.quant.dynamic_quant import estimate_sensitivities, estimate_threshold

    model, _ = load_network(base, upcast=True)
    sensitivities = dict(estimate_sensitivities(model, rows, 4, 64, 8, 64, batch_size=4))

    def quantized_at(target_bpw: float) -> nn.Module:
        threshold = estimate_threshold(model, sensitivities, target_bpw, 4, 64, 8, 64)
        quantized, _ = load_network(base, upcast=False)

        def predicate(path, module):
            if not hasattr(module, "to_quantized") or module.weight.shape[-1] % 64:
                return False
            return {"group_size": 64, "bits": 8 if sensitivities.get(path, 0) > threshold else 4}

        nn.quantize(quantized, class_predicate=predicate)
        return quantized

    return quantized_at


def dynamic_quant(base: Path, rows: mx.array, target_bpw: float) -> tuple[nn.Module, int]:
    """mlx-lm's dynamic_quant at ``target_bpw``, and the bytes it reached."""
    quantized = dynamic_quant_at(base, rows)(target_bpw)
    return quantized, quantized_nbytes(quantized)


def bits_per_weight(model: nn.Module) -> float:
    from mlx_lm.utils import compute_bits_per_weight

    return compute_bits_per_weight(model)


def first_run_seconds(base: str | None) -> float:
    with tempfile.TemporaryDirectory() as home:
        env = preload_env() or dict(os.environ)
        env["OPTIQ_HOME"] = home
        out = subprocess.run(
            [sys.executable, "-c", FIRST_RUN, base or "-"], env=env, capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="base checkpoint (default: the embedded tiny-agent)")
    parser.add_argument("--tokens", type=int, default=4096, help="calibration tokens for OptiQ and dynamic_quant")
    parser.add_argument("--budget", type=float, default=1.05)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    base = resolve_base(args.base)
    work = Path(tempfile.mkdtemp(prefix="optiq-bench-"))
    started = time.perf_counter()
    uniform = build(BuildOptions(out=work / "uniform", base=base, method="uniform"), log=quiet)
    optiq = build(BuildOptions(out=work / "optiq", base=base, budget=args.budget, max_tokens=args.tokens), log=quiet)
    build_seconds = time.perf_counter() - started
    probes = optiq.path / "optiq" / "sensitivity.json"
    coarse = build(
        BuildOptions(
            out=work / "optiq_g64",
            base=base,
            budget=args.budget,
            max_tokens=args.tokens,
            fine_group_size=None,
            probes=probes,
        ),
        log=quiet,
    )
    four_eight = build(
        BuildOptions(
            out=work / "optiq_4_8", base=base, budget=args.budget, max_tokens=args.tokens, widths=(), probes=probes
        ),
        log=quiet,
    )

    built = {"uniform": uniform, "optiq": optiq, "optiq_g64": coarse, "optiq_4/8": four_eight}
    models = {name: load_network(result.path, upcast=True)[0] for name, result in built.items()}
    target_bpw = bits_per_weight(load_network(optiq.path, upcast=False)[0])
    tokenizer = load_tokenizer(base)
    calibration = calibration_tokens(tokenizer, seq_len=256, max_tokens=args.tokens)
    started = time.perf_counter()
    dynamic, dynamic_bytes = dynamic_quant(base, calibration.rows, target_bpw)
    dynamic_seconds = time.perf_counter() - started
    dynamic_bpw = bits_per_weight(dynamic)
    models["dynamic_quant"] = upcast_floats(dynamic)

    reference, _ = load_network(base, upcast=True)
    heldout = heldout_tokens(tokenizer)
    kl = {name: summarize(values) for name, values in per_token_kl_many(models, reference, heldout.rows).items()}

    uniform_bytes = uniform.metadata["bytes"]["uniform"]
    sizes = {name: result.metadata["bytes"]["optiq"] for name, result in built.items()}
    sizes["dynamic_quant"] = dynamic_bytes
    shutil.rmtree(work, ignore_errors=True)
    first_run = first_run_seconds(args.base)
    report = {
        "base": str(base),
        "heldout_tokens": kl["optiq"].tokens,
        "calibration_tokens": calibration.tokens,
        "models": {
            name: {
                "bytes": sizes[name],
                "bytes_ratio": sizes[name] / uniform_bytes,
                **kl[name].as_dict(),
                "kl_ratio": kl[name].mean / kl["uniform"].mean,
            }
            for name in models
        },
        "counts": {name: result.metadata["format_counts"] for name, result in built.items() if name != "uniform"},
        "bits_per_weight": {"optiq": target_bpw, "dynamic_quant": dynamic_bpw},
        "seconds": {
            "uniform_and_optiq_builds": build_seconds,
            "dynamic_quant": dynamic_seconds,
            "first_run_build": first_run,
        },
        "checks": {
            "optiq_kl_at_most_0.8x_uniform": kl["optiq"].mean <= 0.8 * kl["uniform"].mean,
            "optiq_bytes_at_most_budget": sizes["optiq"] <= args.budget * uniform_bytes,
            "optiq_kl_below_dynamic_quant": kl["optiq"].mean < kl["dynamic_quant"].mean,
            "optiq_4/8_kl_at_most_0.8x_uniform": kl["optiq_4/8"].mean <= 0.8 * kl["uniform"].mean,
            "optiq_4/8_bytes_at_most_budget": sizes["optiq_4/8"] <= args.budget * uniform_bytes,
            "first_run_under_60s": first_run < 60,
        },
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    return 0


def print_table(report: dict) -> None:
    print(
        f"base {report['base']}: KL on {report['heldout_tokens']} held-out tokens, "
        f"calibration {report['calibration_tokens']} tokens"
    )
    print(f"{'model':<16}{'bytes':>10}{'x uniform':>11}{'KL mean':>11}{'median':>10}{'p95':>10}{'KL / uniform':>14}")
    for name, row in report["models"].items():
        print(
            f"{name:<16}{row['bytes']:>10,}{row['bytes_ratio']:>11.4f}{row['mean']:>11.5f}"
            f"{row['median']:>10.5f}{row['p95']:>10.5f}{row['kl_ratio']:>14.3f}"
        )
    for name, counts in report["counts"].items():
        print(f"formats {name}: " + ", ".join(f"{label} x{n}" for label, n in counts.items() if n))
    print(f"bits per weight {report['bits_per_weight']}")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items()))
    for check, passed in report["checks"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")


if __name__ == "__main__":
    sys.exit(main())
