"""Depth-1 MTP acceptance of a build against its bf16 base on the held-out agent turns: ``python bench/mtp_acceptance.py``.

Acceptance is the share of first drafts the main model agrees with, greedy, over the first
``--turns`` assistant turns of the shipped held-out conversations rendered as the agent renders
them. Three models in one run: the bf16 base (default: the embedded tiny-agent), the build
(default: its default OptiQ build, built first when missing), and the build's backbone with the
base's unquantized head, which tells whether a drop comes from the head's quantization or the backbone's.

``--objective`` instead builds the default OptiQ build (first-run settings) twice in a temporary
folder, with the MTP head's drafts in the sensitivity objective (the default) and without
(``mtp_weight`` 0), and reports each build's acceptance against the bf16 base's and its KL from
the base on the held-out text, as ``bench/quantize.py`` measures it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from optiq_runtime.fastcpu import reexec_with_openblas


def acceptance(folder: Path, turns: int, tokens: int) -> tuple[float, int]:
    """(accepted first drafts / drafted, drafted) over the held-out turns at depth 1."""
    from optiq_runtime.engine import Engine
    from optiq_runtime.mtp_cost import heldout_prompts
    from optiq_runtime.sampling import Sampling

    engine = Engine.load(folder, mtp="on", mtp_depth=1)
    engine.auto_fallback = False
    drafted = accepted = 0
    for prompt in heldout_prompts(engine.tokenizer, turns):
        engine.generate(prompt, Sampling(max_tokens=tokens))
        drafted += sum(engine.last_stats.drafted[:1])
        accepted += sum(engine.last_stats.accepted[:1])
    return (accepted / drafted if drafted else 0.0), drafted


def with_base_head(build: Path, base: Path, folder: Path) -> Path:
    """A copy of ``build`` whose ``mtp.safetensors`` holds the base's unquantized head."""
    import mlx.core as mx

    from optiq_runtime.checkpoint import open_base

    shutil.copytree(build, folder)
    tensors = {}
    for file in open_base(str(base)).weight_files:
        tensors.update({k: v for k, v in mx.load(str(file)).items() if k.startswith("mtp.")})
    mx.save_safetensors(str(folder / "mtp.safetensors"), tensors, metadata={"format": "mlx"})
    return folder


def objective_builds(base: Path, work: Path, turns: int, tokens: int) -> dict:
    """The default build with and without the drafts' KL in its objective: acceptance and held-out KL of each."""
    from optiq_runtime.build import BuildOptions, build
    from optiq_runtime.calibration import heldout_tokens
    from optiq_runtime.firstrun import FIRST_RUN_SETTINGS
    from optiq_runtime.kl import per_token_kl_many, summarize
    from optiq_runtime.kl_gradient import DRAFT_KL_WEIGHT
    from optiq_runtime.load import load_network, load_tokenizer

    weights = {"with_mtp_term": DRAFT_KL_WEIGHT, "without_mtp_term": 0.0}
    built = {
        name: build(BuildOptions(out=work / name, base=base, mtp_weight=w, **FIRST_RUN_SETTINGS), log=lambda _: None)
        for name, w in weights.items()
    }
    bf16, drafted = acceptance(base, turns, tokens)
    report: dict = {"bf16": {"acceptance": round(bf16, 4), "drafted": drafted}}
    models = {name: load_network(result.path, upcast=True)[0] for name, result in built.items()}
    reference, _ = load_network(base, upcast=True)
    kl = per_token_kl_many(models, reference, heldout_tokens(load_tokenizer(base)).rows)
    for name, result in built.items():
        rate, drafted = acceptance(result.path, turns, tokens)
        report[name] = {
            "mtp_weight": weights[name],
            "acceptance": round(rate, 4),
            "drafted": drafted,
            "over_bf16": round(rate / bf16, 4) if bf16 else 0.0,
            "heldout_kl": summarize(kl[name]).as_dict(),
            "bytes": result.metadata["bytes"]["optiq"],
            "layers_changed": None,
        }
    a, b = (built[n].metadata["layers"] for n in weights)
    report["with_mtp_term"]["layers_changed"] = sorted(p for p in a if a[p] != b.get(p))
    report["kl_with_over_without"] = round(
        report["with_mtp_term"]["heldout_kl"]["mean"] / report["without_mtp_term"]["heldout_kl"]["mean"], 4
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the bf16 base (default: the embedded tiny-agent)")
    parser.add_argument("--model", help="its build (default: the default OptiQ build of --base)")
    parser.add_argument("--turns", type=int, default=24, help="held-out turns (default 24)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per turn at most (default 64)")
    parser.add_argument(
        "--objective",
        action="store_true",
        help="compare default builds with and without the MTP head's drafts in the sensitivity objective",
    )
    args = parser.parse_args()
    from optiq_runtime.embedded import embedded_base_path
    from optiq_runtime.firstrun import ensure_model

    base = Path(args.base) if args.base else embedded_base_path()
    if args.objective:
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(objective_builds(base, Path(work), args.turns, args.tokens)))
        return 0
    build = Path(args.model) if args.model else ensure_model(args.base)
    result = {"bf16": acceptance(base, args.turns, args.tokens), "build": acceptance(build, args.turns, args.tokens)}
    with tempfile.TemporaryDirectory() as work:
        mixed = with_base_head(build, base, Path(work) / "mixed")
        result["build_with_bf16_head"] = acceptance(mixed, args.turns, args.tokens)
    ratio = result["build"][0] / result["bf16"][0] if result["bf16"][0] else 0.0
    print(
        json.dumps(
            {
                **{k: {"acceptance": round(a, 4), "drafted": d} for k, (a, d) in result.items()},
                "build_over_bf16": round(ratio, 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    reexec_with_openblas(sys.argv)
    sys.exit(main())
