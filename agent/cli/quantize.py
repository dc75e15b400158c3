"""`optiq quantize`: build a mixed-precision (OptiQ) or uniform quantized model from a base checkpoint."""

import json
import sys

HELP = "Build a mixed-precision (OptiQ) or uniform quantized model from a base checkpoint."


def add_arguments(parser):
    parser.add_argument("--base", required=True, help="local folder (Hugging Face layout) or Hub id")
    parser.add_argument("--out", required=True, help="folder to create (not overwritten without --force)")
    parser.add_argument("--method", choices=["optiq", "uniform"], default="optiq")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--high-bits", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument(
        "--fine-group-size",
        default="32",
        help="a finer group size the allocator may also give a sensitive module (+0.5 bit "
        "per weight at 32 vs 64); 0 or none: only --group-size (default 32)",
    )
    parser.add_argument(
        "--budget", type=float, default=1.05, help="quantized bytes at most this times uniform --bits (default 1.05)"
    )
    parser.add_argument("--calibration", help="JSONL calibration file (default: the shipped six-domain mix)")
    parser.add_argument(
        "--tokens", type=int, default=8192, help="calibration tokens sensitivity is measured over (default 8192)"
    )
    parser.add_argument(
        "--widths",
        help="candidate bit widths besides --bits and --high-bits, each offered at "
        "--group-size and --fine-group-size (their KL is estimated from the measured sensitivity "
        "by weight-error ratios); default 3,5,6; none: only --bits and --high-bits",
    )
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the build's metadata as JSON")


def _summary(metadata: dict, path) -> str:
    size = metadata["bytes"]
    counts = ", ".join(f"{n} at {_describe(label)}" for label, n in metadata["format_counts"].items() if n)
    return (
        f"wrote {path}\n"
        f"  method {metadata['method']}, reference {metadata['reference']}: {counts}\n"
        f"  quantized bytes {size['optiq']:,} = {size['ratio']:.4f} x uniform {size['uniform']:,} "
        f"(limit {size['limit']:,})"
    )


def _describe(label: str) -> str:
    from optiq_runtime.allocate import Width

    width = Width.parse(label)
    return f"{width.bits}-bit group {width.group_size}"


def _fine_group_size(value: str) -> int | None:
    """``--fine-group-size``: 32, 64 or 128, or 0 / none for no finer groups."""
    from optiq_runtime.errors import BadInputError

    if value.strip().lower() in ("0", "none", "off"):
        return None
    try:
        return int(value)
    except ValueError as error:
        raise BadInputError(f"--fine-group-size must be 32, 64, 128 or none, not {value!r}") from error


def _widths(value: str | None) -> tuple[int, ...]:
    """``--widths``: comma-separated bit widths, none for no extra ones, absent for the recipe's."""
    from optiq_runtime.build_options import EXTRA_WIDTHS
    from optiq_runtime.errors import BadInputError

    if value is None:
        return EXTRA_WIDTHS
    if value.strip().lower() in ("", "none", "off"):
        return ()
    try:
        return tuple(int(w) for w in value.split(","))
    except ValueError as error:
        raise BadInputError(f"--widths must be comma-separated integers or none, not {value!r}") from error


def run(args) -> int:
    from optiq_runtime.build import BuildOptions, build
    from optiq_runtime.errors import BadInputError
    from optiq_runtime.progress import stderr_callback

    if args.tokens < 1:
        raise BadInputError(f"--tokens must be positive, not {args.tokens}")
    widths = _widths(args.widths)
    options = BuildOptions(
        out=args.out,
        base=args.base,
        method=args.method,
        bits=args.bits,
        high_bits=args.high_bits,
        group_size=args.group_size,
        budget=args.budget,
        calibration=args.calibration,
        force=args.force,
        max_tokens=args.tokens,
        widths=widths,
        fine_group_size=_fine_group_size(args.fine_group_size),
    )
    result = build(options, progress=stderr_callback())
    if args.json:
        print(json.dumps({"path": str(result.path), **result.metadata}, indent=1))
    else:
        print(_summary(result.metadata, result.path), file=sys.stdout)
    return 0
