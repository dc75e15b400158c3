"""`optiq eval`: score one or more models on an evaluation suite and print a comparison table."""

from agent.cli._stub import not_built

HELP = "Score one or more models on an evaluation suite and print a comparison table."


def add_arguments(parser):
    parser.add_argument("suite", nargs="?", help="JSONL suite file or folder (default: the shipped suite)")
    parser.add_argument("--model", action="append", help="model folder; repeat to compare")
    parser.add_argument("--out", help="results folder")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--json", action="store_true")


def run(args) -> int:
    return not_built("eval")
