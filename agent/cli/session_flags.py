"""The flags every command that runs an agent session shares: its tools, MCP servers, shell and call guide."""

from __future__ import annotations

import argparse


def add_session_arguments(parser) -> None:
    parser.add_argument("--tools", help="a Python file declaring more tools (Tool objects or a TOOLS list)")
    parser.add_argument(
        "--mcp",
        action="append",
        metavar="FILE",
        help='an MCP servers file ({"mcpServers": ...}) whose tools join the others; repeatable',
    )
    parser.add_argument(
        "--allow-unconfined-shell",
        action="store_true",
        help="let run_shell run commands even where the OS sandbox is missing",
    )
    parser.add_argument(
        "--guide-calls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="limit tool-call function and parameter names to the offered tools (default on)",
    )
