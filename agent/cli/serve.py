"""`optiq serve`: serve an OpenAI-compatible chat completions API on loopback."""

from __future__ import annotations

import argparse
import sys

from agent.cli.mtp_flags import add_mtp_arguments, mtp_mode

HELP = "Serve an OpenAI-compatible chat completions API on loopback."


def add_arguments(parser):
    parser.add_argument("--model", help="a model folder to serve as it is (default: the OptiQ model built from --base)")
    parser.add_argument("--base", help="base checkpoint to build the OptiQ model from: local folder or Hugging Face id (default: the embedded tiny-agent)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1); any other needs --api-key")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    add_mtp_arguments(parser)
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    parser.add_argument("--model-name", help="the model id clients send and /v1/models lists (default: the folder's name)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="the most tokens one answer may generate (default 4096)")
    parser.add_argument("--queue-size", type=int, default=8, help="requests that may wait while one generates; more get 429 (default 8)")
    parser.add_argument("--guide-calls", action=argparse.BooleanOptionalAction, default=True,
                        help="limit tool-call function and parameter names to the request's tools (default on)")


def run(args) -> int:
    from agent.serve import ServeConfig, Server

    config = ServeConfig(
        host=args.host, port=args.port, api_key=args.api_key, model_id=args.model_name,
        max_tokens=args.max_tokens, queue_size=args.queue_size, guide_calls=args.guide_calls,
    )
    config.check()  # before minutes of model loading
    engine = _load_engine(args)
    server = Server(engine, config)
    mtp = engine.mtp_decision.reason
    print(f"optiq serve: {server.service.model_id} ({mtp}) at {server.url}  (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("optiq serve: stopped", file=sys.stderr)
    finally:
        server.close()
    return 0


def _load_engine(args):
    from optiq_runtime.engine import Engine
    from optiq_runtime.errors import BadInputError

    if args.model and args.base:
        raise BadInputError("give --model (a built folder) or --base (to build from), not both")
    path = args.model
    if path is None:
        from optiq_runtime.firstrun import ensure_model

        path = ensure_model(args.base)  # built on the first run, reused after
    return Engine.load(path, mtp=mtp_mode(args), mtp_depth=args.mtp_depth)
