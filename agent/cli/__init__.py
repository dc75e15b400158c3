"""The ``optiq`` command line: one module per subcommand, this one only dispatches.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules import heavy libraries (mlx, textual) inside ``run``
so that ``optiq --help`` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from optiq_runtime.errors import OptiqError

COMMANDS = ("chat", "run", "eval", "quantize", "kl", "bench", "serve", "tools", "doctor")
DEFAULT_COMMAND = "chat"
# ``agent/cli/tools.py`` would shadow the top-level ``tools`` package when this folder is sys.path[0]
MODULES = {"tools": "tools_command"}


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _package_version() -> str:
    try:
        return version("optiq-agent")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered."""
    parser = _Parser(
        prog="optiq",
        description=f"Offline tool-calling agent for local MLX models. With no command, runs '{DEFAULT_COMMAND}'.",
    )
    parser.add_argument("--version", action="version", version=f"optiq {_package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"agent.cli.{MODULES.get(name, name)}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """Insert the default command when none is given (``optiq --base X`` is ``optiq chat --base X``)."""
    if any(a in ("-h", "--help", "--version") for a in argv[:1]):
        return argv
    if argv and argv[0] in COMMANDS:
        return argv
    return [DEFAULT_COMMAND, *argv]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``optiq`` console script."""
    if argv is None:
        from optiq_runtime.fastcpu import advise_once, reexec_with_openblas

        reexec_with_openblas(sys.argv)
        advise_once()
        argv = sys.argv[1:]
    argv = _with_default_command(list(argv))
    args = build_parser().parse_args(argv)
    args.argv = argv  # what a command that starts copies of itself (optiq eval --ranks) runs
    try:
        return int(args.handler(args) or 0)
    except OptiqError as error:
        print(f"optiq: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("optiq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
