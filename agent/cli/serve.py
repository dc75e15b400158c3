"""`optiq serve`: serve OpenAI chat completions and Anthropic Messages APIs on loopback."""

from __future__ import annotations

import argparse
import sys

from agent.cli.mtp_flags import add_mtp_arguments, mtp_mode

HELP = "Serve OpenAI- and Anthropic-compatible APIs (chat completions, messages) on loopback."


def add_arguments(parser):
    parser.add_argument("--model", help="a model folder to serve as it is (default: the OptiQ model built from --base)")
    parser.add_argument(
        "--base",
        help="base checkpoint to build the OptiQ model from: local folder or Hugging Face id (default: the embedded tiny-agent)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1); any other needs --api-key"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    add_mtp_arguments(parser)
    parser.add_argument(
        "--api-key", help="require 'Authorization: Bearer KEY' or 'x-api-key: KEY' on /v1 routes and /metrics"
    )
    parser.add_argument(
        "--model-name", help="the model id clients send and /v1/models lists (default: the folder's name)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=4096, help="the most tokens one answer may generate (default 4096)"
    )
    parser.add_argument(
        "--queue-size", type=int, default=8, help="requests that may wait while one generates; more get 429 (default 8)"
    )
    parser.add_argument(
        "--guide-calls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="limit tool-call function and parameter names to the request's tools (default on)",
    )
    parser.add_argument(
        "--mcp",
        action="append",
        metavar="FILE",
        help="an MCP servers file whose tools the server offers beside each request's and runs itself "
        '(servers set to "approval": "allow" only); repeatable',
    )


def run(args) -> int:
    from agent.serve import ServeConfig, Server

    config = ServeConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        model_id=args.model_name,
        max_tokens=args.max_tokens,
        queue_size=args.queue_size,
        guide_calls=args.guide_calls,
    )
    config.check()  # before minutes of model loading
    tools = _server_tools(args.mcp)
    engine = _load_engine(args)
    if engine is None:
        return 0  # a rank other than 0 under mlx.launch: it ran rank 0's generations
    server = Server(engine, config, tools.start().registry if tools.servers else None)
    mtp = engine.mtp_decision.reason
    print(f"optiq serve: {server.service.model_id} ({mtp}) at {server.url}  (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("optiq serve: stopped", file=sys.stderr)
    finally:
        server.close()
        tools.close()
    return 0


def _server_tools(files):
    """The MCP servers the server runs (the user's default file and ``--mcp``); those set to ask are left out."""
    from agent.mcp_files import session_servers
    from agent.toolset import SessionTools
    from tools.registry import Registry

    servers, _ = session_servers(files, None)
    for spec in servers:
        if spec.approval == "ask":
            print(
                f"optiq serve: MCP server {spec.name!r} is set to ask before each call, and a server cannot ask: "
                'its tools are not offered (set "approval": "allow" to offer them)',
                file=sys.stderr,
            )
    return SessionTools(Registry(), [spec for spec in servers if spec.approval == "allow"])


def _load_engine(args):
    from optiq_runtime.engine import Engine
    from optiq_runtime.errors import BadInputError

    if args.model and args.base:
        raise BadInputError("give --model (a built folder) or --base (to build from), not both")
    from optiq_runtime.ranks import launched, world

    if launched():  # tensor parallel: rank 0 serves, the others follow it
        from optiq_runtime.rank_engine import open_tensor_parallel

        # auto needs a measurement every rank would have to share: under tensor parallelism MTP is on unless turned off
        return open_tensor_parallel(args.model, world(), mtp=mtp_mode(args) != "off", mtp_depth=args.mtp_depth or 2)
    path = args.model
    if path is None:
        from optiq_runtime.firstrun import ensure_model

        path = ensure_model(args.base)  # built on the first run, reused after
    return Engine.load(path, mtp=mtp_mode(args), mtp_depth=args.mtp_depth)
