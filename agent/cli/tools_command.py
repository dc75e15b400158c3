"""`optiq tools` (this module is not called tools.py: see ``agent.cli.MODULES``): list every tool the agent would offer, or call one outside the agent loop."""

from __future__ import annotations

HELP = "List the tools the agent offers (built-in, --tools, MCP servers), or call one."
LIST_HELP = "Every tool the agent would offer: name, source, description, parameters."
CALL_HELP = (
    "Validate arguments and run one tool as the agent would. Invalid arguments exit 2 without calling it; "
    'a tool error exits 1. Tools that ask for approval (write_file, edit_file, MCP servers set to "ask") '
    "run only with --approve."
)


def add_arguments(parser):
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(parser))
    listing = actions.add_parser("list", help=LIST_HELP, description=LIST_HELP)
    _add_sources(listing)
    listing.add_argument("--json", action="store_true", help="a JSON list on stdout")
    calling = actions.add_parser("call", help=CALL_HELP, description=CALL_HELP)
    calling.add_argument("name", help="the tool's name, as 'optiq tools list' shows it")
    calling.add_argument("arguments", nargs="?", default="{}", help="its arguments as a JSON object (default {})")
    _add_sources(calling)
    calling.add_argument(
        "--approve", action="store_true", help="run a tool that asks for approval (the call is shown first)"
    )
    calling.add_argument("--json", action="store_true", help="the outcome as one JSON object on stdout")


def _add_sources(parser):
    parser.add_argument("--tools", help="a Python file declaring more tools (Tool objects or a TOOLS list)")
    parser.add_argument(
        "--mcp", action="append", metavar="FILE", help='an MCP servers file ({"mcpServers": ...}); repeatable'
    )
    parser.add_argument(
        "--workspace",
        help="the workspace (file tools are confined to it; its approved .mcp.json is used) "
        "(default: the current folder)",
    )


def run(args) -> int:
    from pathlib import Path

    from agent.toolset import plan_tools
    from optiq_runtime.errors import BadInputError

    workspace = Path(args.workspace or ".").expanduser().resolve()
    if not workspace.is_dir():
        raise BadInputError(f"--workspace {workspace} is not a folder")
    tools = plan_tools(args.tools, args.mcp, workspace)
    with tools:
        if args.action == "list":
            return _list(tools.start(), args.json)
        return _call(tools, workspace, args)


def _list(tools, as_json: bool) -> int:
    import json

    rows = [_describe(tool) for tool in tools.registry]
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    width = max(len(row["name"]) for row in rows)
    sources = [row["source"] + (" (asks)" if row["asks_approval"] else "") for row in rows]
    source_width = max(len(source) for source in sources)
    for row, source in zip(rows, sources):
        print(f"{row['name']:<{width}}  {source:<{source_width}}  {_signature(row['parameters'])}")
        print(f"{'':<{width}}  {'':<{source_width}}  {_first_line(row['description'])}")
    return 0


def _describe(tool) -> dict:
    return {
        "name": tool.name,
        "source": tool.source,
        "description": tool.description,
        "parameters": tool.parameters,
        "asks_approval": tool.side_effects,
    }


def _signature(parameters: dict) -> str:
    required = set(parameters.get("required") or [])
    names = [name if name in required else f"{name}?" for name in parameters.get("properties") or {}]
    return f"({', '.join(names)})"


def _first_line(text: str) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= 100 else line[:97] + "..."


def _call(tools, workspace, args) -> int:
    import json
    import sys
    import time

    from agent.context import cap_output
    from agent.toolrun import ToolRunner
    from optiq_runtime.errors import BadInputError
    from tools.validate import validate_call

    arguments = _arguments(args.arguments)
    if args.name not in tools.registry:
        tools.start()  # the MCP servers only when the tool is not a built-in or --tools one
    validation = validate_call({"name": args.name, "arguments": arguments}, tools.registry)
    if not validation.ok:
        raise BadInputError("; ".join(validation.errors))
    tool = tools.registry.get(args.name)
    if tool.needs_approval(validation.arguments) and not args.approve:
        raise BadInputError(
            f"{tool.name} ({tool.source}) asks for approval before it runs; pass --approve to run "
            f"{tool.name}({json.dumps(validation.arguments, ensure_ascii=False)})"
        )
    runner = ToolRunner(workspace)
    started = time.monotonic()
    try:
        content, ok = runner.execute(tool, validation.arguments)
    finally:
        runner.close()
    content = cap_output(content)
    outcome = {
        "name": tool.name,
        "source": tool.source,
        "arguments": validation.arguments,
        "ok": ok,
        "content": content,
        "seconds": round(time.monotonic() - started, 4),
    }
    if args.json:
        print(json.dumps(outcome, ensure_ascii=False))
    else:
        print(content, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _arguments(text: str) -> dict:
    import json

    from optiq_runtime.errors import BadInputError

    try:
        arguments = json.loads(text)
    except ValueError as error:
        raise BadInputError(
            f'the arguments are not valid JSON ({error}); give a JSON object such as \'{{"path": "a.txt"}}\''
        ) from error
    if not isinstance(arguments, dict):
        raise BadInputError(f"the arguments must be a JSON object, got {text!r}")
    return arguments
