"""`optiq kl`: measure a quantized model's KL divergence from its reference on held-out text."""

from agent.cli._stub import not_built

HELP = "Measure a quantized model's KL divergence from its reference on held-out text."


def add_arguments(parser):
    parser.add_argument("--model", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--data")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    return not_built("kl")
