"""`optiq kl`: measure a quantized model's KL divergence from its reference on held-out text."""

import json

HELP = "Measure a quantized model's KL divergence from its reference on held-out text."


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="built model folder")
    parser.add_argument("--reference", required=True, help="reference model: base folder or Hub id")
    parser.add_argument("--data", help="JSONL held-out file (default: the shipped held-out set)")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    from optiq_runtime.kl import measure_kl
    from optiq_runtime.progress import stderr_callback

    report = measure_kl(args.model, args.reference, args.data, progress=stderr_callback())
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(
            f"KL over {report.tokens} held-out tokens: mean {report.mean:.6f}, "
            f"median {report.median:.6f}, p95 {report.p95:.6f}"
        )
    return 0
