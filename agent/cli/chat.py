"""`optiq chat`: open the terminal agent (the default command)."""

from agent.cli._stub import not_built

HELP = "Open the terminal agent (the default command)."


def add_arguments(parser):
    parser.add_argument("--model", help="a built model folder")
    parser.add_argument("--base", help="base checkpoint: local folder or Hugging Face id (default: the embedded tiny-agent)")
    parser.add_argument("--no-mtp", action="store_true", help="decode without the MTP head")


def run(args) -> int:
    return not_built("chat")
