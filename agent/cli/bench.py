"""`optiq bench`: benchmarks: decode speed with and without MTP."""

from agent.cli._stub import not_built

HELP = "Benchmarks: decode speed with and without MTP."


def add_arguments(parser):
    parser.add_argument("what", choices=["decode"])
    parser.add_argument("--model")
    parser.add_argument("--mtp-depth", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prompts")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    return not_built("bench")
