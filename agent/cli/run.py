"""`optiq run`: run the agent headless on one prompt and print the answer."""

from agent.cli.mtp_flags import add_mtp_arguments, mtp_mode
from agent.cli.session_flags import add_session_arguments

HELP = "Run the agent headless on one prompt and print the answer."


def add_arguments(parser):
    parser.add_argument("prompt", help="the request")
    parser.add_argument("--model", help="a built model folder")
    parser.add_argument(
        "--base", help="base checkpoint to build the default model from (default: the embedded tiny-agent)"
    )
    add_mtp_arguments(parser)
    parser.add_argument("--max-steps", type=int, default=8, help="model turns before giving up (default 8)")
    parser.add_argument("--max-tokens", type=int, default=512, help="tokens per model turn (default 512)")
    parser.add_argument(
        "--approve",
        choices=["all", "none", "shell"],
        default="none",
        help="answer to approvals: all, none, or shell (shell commands only); approvals cover "
        "write/edit, shell commands and MCP servers set to ask (default none)",
    )
    parser.add_argument("--workspace", help="folder the file tools may touch (default: the current folder)")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout, the last being 'done'")
    add_session_arguments(parser)


def run(args) -> int:
    from pathlib import Path

    from agent.agent import Agent
    from agent.approval import POLICIES
    from agent.engine import Engine
    from agent.headless import load_engine, open_trace, run_headless, shell_sandbox
    from agent.toolset import plan_tools
    from optiq_runtime.errors import BadInputError
    from optiq_runtime.progress import stderr_callback
    from optiq_runtime.rank_engine import open_tensor_parallel
    from optiq_runtime.ranks import launched, world
    from optiq_runtime.sampling import Sampling

    if args.max_steps < 1:
        raise BadInputError(f"--max-steps must be at least 1; got {args.max_steps}")
    if args.max_tokens < 1:
        raise BadInputError(f"--max-tokens must be at least 1; got {args.max_tokens}")
    workspace = Path(args.workspace or ".").expanduser().resolve()
    if not workspace.is_dir():
        raise BadInputError(f"--workspace {workspace} is not a folder")
    tools = plan_tools(args.tools, args.mcp, workspace)
    if launched():  # tensor parallel under mlx.launch: rank 0 runs the agent, the others its model's slices
        # auto needs a measurement every rank would have to share: under tensor parallelism MTP is on unless turned off
        leader = open_tensor_parallel(args.model, world(), mtp=mtp_mode(args) != "off", mtp_depth=args.mtp_depth or 2)
        if leader is None:
            return 0
        engine: Engine = leader
    else:
        engine = load_engine(
            args.model, args.base, mtp=mtp_mode(args), mtp_depth=args.mtp_depth, progress=stderr_callback()
        )
    sampling = Sampling(max_tokens=args.max_tokens, guide_calls=args.guide_calls)
    sandbox = shell_sandbox(workspace, args.allow_unconfined_shell)
    try:
        with tools.start():
            agent = Agent(
                engine,
                tools.registry,
                workspace,
                POLICIES[args.approve],
                max_steps=args.max_steps,
                sampling=sampling,
                trace=open_trace(),
                sandbox=sandbox,
            )
            with agent:
                return run_headless(agent, args.prompt, json_lines=args.json)
    finally:
        if sandbox is not None:
            sandbox.close()
