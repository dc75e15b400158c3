"""Rebuild tiny-agent end to end: ``python -m training.build --out DIR --minutes N``.

Trains the tokenizer on the corpus, trains the model for N minutes (resuming from
``--workdir`` if a checkpoint is there), exports the best checkpoint to ``--out`` in the Hugging
Face Qwen3.5 layout, and writes the shipped data files when ``--data`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Tokenizer

from training.arch import Shape, TinyAgent
from training.batches import Encoder
from training.export import export, load_exported
from training.grow import grow, save_shape, shape_from_config, widen_attention, widen_hidden, workdir_shape
from training.probe import make_probe
from training.tokenizer import save_tokenizer, train_tokenizer, without_space_word_merges
from training.train import BadCheckpoint, TrainConfig, load_checkpoint, train


def load_trained(workdir: Path, shape: Shape, which: str = "best") -> TinyAgent:
    """The model saved as ``best.pt`` (or ``last.pt``) in ``workdir``."""
    path = workdir / f"{which}.pt"
    if not path.exists():
        path = workdir / "last.pt"
    return load_checkpoint(path, shape)[0]


def workdir_tokenizer(workdir: Path, seed: int) -> Tokenizer:
    """The run's tokenizer: trained once, then reused so a resumed run keeps its token ids."""
    path = workdir / "tokenizer.json"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        save_tokenizer(train_tokenizer(seed), workdir)
    return Tokenizer.from_file(str(path))


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Where training runs, and how its rows are made (a lent GPU wants many rows and data workers)."""
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="train on the CPU or a CUDA GPU (bf16 autocast); auto: the GPU when torch sees one",
    )
    parser.add_argument("--rows", type=_count(1), default=0, help="rows per step (default: the mix's own, 2-3)")
    parser.add_argument(
        "--data-workers", type=_count(0), default=0, help="processes that write rows ahead of training (default 0)"
    )


def _count(least: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    available = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if available else "cpu"
    if name == "cuda" and not available:
        raise ValueError("--device cuda: torch sees no CUDA GPU on this machine")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    parser.add_argument(
        "--steps",
        type=_count(1),
        default=0,
        help="train for this many steps in all, resuming across calls; --minutes then bounds this call",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tiny-train/run"), help="checkpoints and logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1; on an idle 2-core machine 2 train 1.7x faster, on a busy one they stall)",
    )
    parser.add_argument("--data", type=Path, default=None, help="also write calibration/held-out/eval files here")
    parser.add_argument(
        "--export-only", action="store_true", help="skip training; export the workdir's best checkpoint"
    )
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint to export")
    parser.add_argument("--no-measure", action="store_true", help="skip the quality measurement for the card")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="fine-tune: start from this exported checkpoint (its tokenizer too) when the workdir has none",
    )
    parser.add_argument(
        "--mix",
        choices=("curriculum", "people"),
        default="curriculum",
        help="training mix: the from-scratch curriculum, or people's requests and sessions beside it (fine-tuning)",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default 3e-3; 1e-3 suits fine-tuning)"
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=None,
        help="with --init: grow the model to this many layers (new layers start as identities)",
    )
    parser.add_argument(
        "--heads",
        type=int,
        nargs=2,
        metavar=("QUERY", "KV"),
        default=None,
        help="with --init: widen every attention layer to QUERY query and KV key/value heads",
    )
    parser.add_argument(
        "--no-space-merges",
        action="store_true",
        help="with --init: drop the tokenizer's merges that join a space to a letter (token ids are kept)",
    )
    parser.add_argument(
        "--copy-weight",
        type=float,
        default=1.0,
        help="loss weight of reply tokens that copy (argument values, tool results in answers); default 1",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs=2,
        metavar=("HIDDEN", "INTERMEDIATE"),
        help="with --init: widen the residual stream to HIDDEN and every MLP to INTERMEDIATE (new dims start at zero)",
    )
    parser.add_argument(
        "--fp8",
        action="store_true",
        help="export matrices in block-scaled fp8 (Qwen's FP8 format, half of bf16's bytes) instead of bf16",
    )
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    if args.copy_weight <= 0:
        parser.error("--copy-weight must be positive")
    try:
        args.device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    changes_init = {"--layers": args.layers is not None, "--heads": args.heads is not None}
    changes_init["--hidden"] = args.hidden is not None
    changes_init["--no-space-merges"] = args.no_space_merges
    for flag, given in changes_init.items():
        if given and args.init is None:
            parser.error(f"{flag} needs --init (it changes a trained model)")

    shape = workdir_shape(args.workdir) or Shape()
    init = None
    if args.init is not None and not (args.workdir / "last.pt").exists():
        if not (args.init / "model.safetensors").is_file():
            print(f"error: no model.safetensors in {args.init}", file=sys.stderr)
            return 2
        shape = shape_from_config(args.init)
        init = load_exported(args.init, shape)
        try:
            if args.layers is not None:
                init, shape = grow(init, shape, args.layers, seed=args.seed)
            if args.heads is not None:
                init, shape = widen_attention(init, shape, args.heads[0], args.heads[1], seed=args.seed)
            if args.hidden is not None:
                init, shape = widen_hidden(init, shape, args.hidden[0], args.hidden[1], seed=args.seed)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        args.workdir.mkdir(parents=True, exist_ok=True)
        save_shape(args.workdir, shape)
        if not (args.workdir / "tokenizer.json").exists():  # the same token ids as the weights
            tokenizer = Tokenizer.from_file(str(args.init / "tokenizer.json"))
            if args.no_space_merges:
                tokenizer = without_space_word_merges(tokenizer)
            tokenizer.save(str(args.workdir / "tokenizer.json"))
    tokenizer = workdir_tokenizer(args.workdir, args.seed)
    if args.data is not None:
        from training.datasets import write_datasets

        write_datasets(args.data)
    if not args.export_only:
        cfg = TrainConfig(
            seed=args.seed,
            seconds=args.minutes * 60,
            steps=args.steps,
            threads=args.threads,
            mix=args.mix,
            copy_weight=args.copy_weight,
            device=args.device,
            rows=args.rows,
            data_workers=args.data_workers,
        )
        if args.lr is not None:
            cfg.lr = args.lr
        train(
            args.workdir,
            tokenizer,
            shape,
            cfg,
            evaluate=make_probe(Encoder(tokenizer)),
            log=lambda line: print(line, flush=True),
            init=init,
        )
    from training.card import NOTES, model_card

    try:
        model = load_trained(args.workdir, shape, args.which)
    except BadCheckpoint as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    export(model, shape, tokenizer, args.out, fp8=args.fp8)
    scores = None
    if not args.no_measure:
        from training.quality import measure

        scores = measure(args.out)
        (args.workdir / "scores.json").write_text(json.dumps(scores, indent=2))
    size = (args.out / "model.safetensors").stat().st_size
    (args.out / "README.md").write_text(model_card(args.workdir, scores, NOTES, size))
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
