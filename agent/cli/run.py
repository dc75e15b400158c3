"""`optiq run`: run the agent headless on one prompt and print the answer."""

import argparse

from agent.cli.mtp_flags import add_mtp_arguments, mtp_mode

HELP = "Run the agent headless on one prompt and print the answer."


def add_arguments(parser):
    parser.add_argument("prompt", help="the request")
    parser.add_argument("--model", help="a built model folder")
    parser.add_argument("--base", help="base checkpoint to build the default model from (default: the embedded tiny-agent)")
    add_mtp_arguments(parser)
    parser.add_argument("--max-steps", type=int, default=8, help="model turns before giving up (default 8)")
    parser.add_argument("--max-tokens", type=int, default=512, help="tokens per model turn (default 512)")
    parser.add_argument("--approve", choices=["all", "none"], default="none", help="answer to write/edit approvals (default none)")
    parser.add_argument("--workspace", help="folder the file tools may touch (default: the current folder)")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout, the last being 'done'")
    parser.add_argument("--tools", help="a Python file declaring more tools (Tool objects or a TOOLS list)")
    parser.add_argument("--guide-calls", action=argparse.BooleanOptionalAction, default=True,
                        help="limit tool-call function and parameter names to the offered tools (default on)")


def run(args) -> int:
    from pathlib import Path

    from agent.agent import Agent, Sampling
    from agent.approval import POLICIES
    from agent.headless import agent_registry, load_engine, open_trace, run_headless
    from optiq_runtime.errors import BadInputError
    from optiq_runtime.progress import stderr_callback

    if args.max_steps < 1:
        raise BadInputError(f"--max-steps must be at least 1; got {args.max_steps}")
    if args.max_tokens < 1:
        raise BadInputError(f"--max-tokens must be at least 1; got {args.max_tokens}")
    workspace = Path(args.workspace or ".").expanduser().resolve()
    if not workspace.is_dir():
        raise BadInputError(f"--workspace {workspace} is not a folder")
    registry = agent_registry(args.tools)
    engine = load_engine(args.model, args.base, mtp=mtp_mode(args), mtp_depth=args.mtp_depth,
                         progress=stderr_callback())
    sampling = Sampling(max_tokens=args.max_tokens, guide_calls=args.guide_calls)
    agent = Agent(engine, registry, workspace, POLICIES[args.approve], max_steps=args.max_steps, sampling=sampling, trace=open_trace())
    with agent:
        return run_headless(agent, args.prompt, json_lines=args.json)
