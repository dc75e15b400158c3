"""Pick a checkpoint by generation on validation prompts: ``python -m training.select CKPT...``.

The in-training probe is teacher-forced on 16 conversations per skill, which cannot see a value
that drifts once the model writes its own tokens. This exports each ``.pt`` checkpoint, lets
stock mlx-lm answer the validation prompts greedily (``quality_sets`` with the seed
``"validation"``, disjoint from the reported ``"quality"`` prompts), and prints one JSON line per
checkpoint with its first-call scores, best last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tokenizers import Tokenizer

from optiq_runtime import embedded_base_path
from training.arch import Shape
from training.export import export
from training.grow import workdir_shape
from training.quality import MAX_TOKENS, quality_sets, score_set
from training.train import BadCheckpoint, load_checkpoint

VALIDATION_SEED = "validation"
SCORED = ("builtin_first_call", "unseen_schema_first_call", "no_tool")


def validation_scores(checkpoint: Path, tokenizer: Tokenizer, count: int) -> dict:
    """First-call and no-tool scores of ``checkpoint`` on the validation prompts."""
    import mlx_lm

    shape = workdir_shape(checkpoint.parent) or Shape()
    trained, step = load_checkpoint(checkpoint, shape)
    with tempfile.TemporaryDirectory() as folder:
        export(trained, shape, tokenizer, Path(folder))
        model, mlx_tokenizer = mlx_lm.load(folder)
        sets = quality_sets(count, VALIDATION_SEED)

        def generate(prompt: str, tools) -> str:
            return mlx_lm.generate(model, mlx_tokenizer, prompt, max_tokens=MAX_TOKENS)

        scores = {name: score_set(name, sets[name], mlx_tokenizer, generate, log=lambda _: None) for name in SCORED}
    return {"checkpoint": str(checkpoint), "step": step, **scores, "sum": round(sum(scores.values()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+", help="last.pt/best.pt files of one run")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=embedded_base_path() / "tokenizer.json",
        help="the run's tokenizer.json (default: the shipped tiny-agent's)",
    )
    parser.add_argument("--count", type=int, default=60, help="validation prompts per score")
    args = parser.parse_args(argv)
    missing = [str(p) for p in [args.tokenizer, *args.checkpoints] if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    try:
        results = [validation_scores(path, tokenizer, args.count) for path in args.checkpoints]
    except BadCheckpoint as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    for result in sorted(results, key=lambda r: (r["sum"], r["step"] or 0)):  # a checkpoint may not record its step
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
