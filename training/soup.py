"""Average exported checkpoints of one lineage: ``python -m training.soup --out DIR MODEL MODEL...``.

A uniform weight average ("model soup") of checkpoints fine-tuned from one another: same shape,
same tokenizer. Each tensor is averaged in float32 and stored in its original dtype; the config,
tokenizer and other files come from the first model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

WEIGHTS = "model.safetensors"
MUST_MATCH = ("config.json", "tokenizer.json")


class SoupError(ValueError):
    """The models cannot be averaged (missing files, other shapes or tokenizers)."""


def check_lineage(models: list[Path]) -> None:
    """Raise ``SoupError`` unless every model has weights and the first's config and tokenizer."""
    if len(models) < 2:
        raise SoupError("give at least two models to average")
    for model in models:
        if not (model / WEIGHTS).is_file():
            raise SoupError(f"no {WEIGHTS} in {model}")
        for name in MUST_MATCH:
            if (model / name).read_bytes() != (models[0] / name).read_bytes():
                raise SoupError(f"{model / name} differs from {models[0] / name}: not one lineage")


def average(models: list[Path]) -> dict:
    """The uniform average of the models' tensors, each in the first model's dtype.

    fp8 matrices (``training.export --fp8``) are averaged as the weights they encode, then stored
    as fp8 again with fresh block scales."""
    import torch

    from optiq_runtime.fp8 import folder_block_size
    from training.export import fp8_tensors, read_tensors

    loaded = [read_tensors(m) for m in models]
    keys = set(loaded[0])
    for model, tensors in zip(models, loaded, strict=True):
        if set(tensors) != keys:
            raise SoupError(f"{model} holds other tensors than {models[0]}")
        for key in keys:
            if tensors[key].shape != loaded[0][key].shape:
                raise SoupError(f"{key} has shape {tuple(tensors[key].shape)} in {model}: not one lineage")
    mean = {k: sum(t[k].float() for t in loaded) / len(loaded) for k in sorted(keys)}
    if folder_block_size(models[0]) is not None:  # one lineage: every model is fp8 (same config.json)
        return fp8_tensors({k: v.to(torch.bfloat16) for k, v in mean.items()})
    return {k: v.to(loaded[0][k].dtype) for k, v in mean.items()}


def write_soup(models: list[Path], out: Path) -> None:
    from safetensors.torch import save_file

    check_lineage(models)
    tensors = average(models)
    out.mkdir(parents=True, exist_ok=False)
    for file in models[0].iterdir():
        if file.is_file() and file.name != WEIGHTS:
            shutil.copy2(file, out / file.name)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="exported checkpoint folders (Hugging Face layout)")
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"error: {args.out} exists", file=sys.stderr)
        return 2
    try:
        write_soup(args.models, args.out)
    except SoupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
