"""The MTP flags every command that decodes shares: ``--mtp auto|on|off``, ``--no-mtp``, ``--mtp-depth N``."""

from __future__ import annotations


def add_mtp_arguments(parser) -> None:
    parser.add_argument(
        "--mtp",
        choices=["auto", "on", "off"],
        default=None,
        help="MTP decoding: auto (default) turns it on where this machine measured it faster; on/off force it",
    )
    parser.add_argument("--no-mtp", action="store_true", help="decode without the MTP head (same as --mtp off)")
    parser.add_argument(
        "--mtp-depth",
        type=int,
        default=None,
        help="tokens the MTP head drafts per step (default: the best measured depth, else 2)",
    )


def mtp_mode(args) -> str:
    """The ``--mtp`` mode the flags ask for; BadInputError when they contradict each other."""
    from optiq_runtime.errors import BadInputError

    if args.no_mtp and args.mtp not in (None, "off"):
        raise BadInputError(f"--no-mtp and --mtp {args.mtp} contradict each other; give one")
    return "off" if args.no_mtp else (args.mtp or "auto")
