"""`optiq serve`: serve an OpenAI-compatible chat completions API on loopback."""

from agent.cli._stub import not_built

HELP = "Serve an OpenAI-compatible chat completions API on loopback."


def add_arguments(parser):
    parser.add_argument("--model")
    parser.add_argument("--base")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--mtp-depth", type=int, default=2)
    parser.add_argument("--api-key")


def run(args) -> int:
    return not_built("serve")
