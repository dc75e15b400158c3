"""`optiq quantize`: build a mixed-precision (OptiQ) or uniform quantized model from a base checkpoint."""

from agent.cli._stub import not_built

HELP = "Build a mixed-precision (OptiQ) or uniform quantized model from a base checkpoint."


def add_arguments(parser):
    parser.add_argument("--base", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--method", choices=["optiq", "uniform"], default="optiq")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--high-bits", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--budget", type=float, default=1.05)
    parser.add_argument("--calibration")
    parser.add_argument("--reference", choices=["auto", "bf16", "uniform"], default="auto")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    return not_built("quantize")
