"""`optiq run`: run the agent headless on one prompt and print the answer."""

from agent.cli._stub import not_built

HELP = "Run the agent headless on one prompt and print the answer."


def add_arguments(parser):
    parser.add_argument("prompt", help="the request")
    parser.add_argument("--model", help="a built model folder")
    parser.add_argument("--base", help="base checkpoint")
    parser.add_argument("--no-mtp", action="store_true")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--approve", choices=["all", "none"], default="none")
    parser.add_argument("--workspace", help="folder the file tools may touch")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout")


def run(args) -> int:
    return not_built("run")
