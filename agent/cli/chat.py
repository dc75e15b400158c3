"""`optiq chat`: open the terminal agent (the default command)."""

from agent.cli.mtp_flags import add_mtp_arguments, mtp_mode
from agent.cli.session_flags import add_session_arguments

HELP = "Open the terminal agent (the default command)."


def add_arguments(parser):
    parser.add_argument(
        "--model", help="a built model folder (default: the OptiQ model built from --base on first run)"
    )
    parser.add_argument(
        "--base", help="base checkpoint: local folder or Hugging Face id (default: the embedded tiny-agent)"
    )
    add_mtp_arguments(parser)
    parser.add_argument("--workspace", help="folder the file tools may touch (default: the current folder)")
    add_session_arguments(parser)


def run(args) -> int:
    from pathlib import Path

    from agent.mcp_files import workspace_servers
    from agent.toolset import plan_tools
    from optiq_runtime.errors import BadInputError
    from tui import OptiqApp

    if args.model and args.base:
        raise BadInputError("give --model (a built model) or --base (build one from it), not both")
    workspace = Path(args.workspace or ".").expanduser().resolve()
    if not workspace.is_dir():
        raise BadInputError(f"--workspace {workspace} is not a folder")
    mtp_mode(args)  # contradicting MTP flags fail before the screen opens
    tools = plan_tools(args.tools, args.mcp, workspace)  # bad --tools or --mcp files fail here, before the screen opens
    pending = workspace_servers(workspace)
    trust = pending if pending is not None and pending.servers and not pending.approved else None
    app = OptiqApp(_launcher(args, tools, workspace), trust=trust)
    try:
        app.run()
    finally:
        if app.agent is not None:
            app.agent.close()
        tools.close()
    return 0


def _launcher(args, tools, workspace):
    """What the app calls in a worker thread: start the MCP servers, build the model on first run, load it, make the agent."""

    def launch(progress, approve, log):
        from agent.agent import Agent
        from agent.mcp_files import session_servers
        from optiq_runtime.engine import Engine
        from optiq_runtime.sampling import Sampling

        # read again: the workspace file may be approved now (and the screen has said if it was not)
        tools.servers, tools.notes = session_servers(args.mcp, workspace)[0], []
        tools.start(report=log)
        model = args.model
        if not model:
            from optiq_runtime.firstrun import ensure_model

            model = ensure_model(args.base, progress=progress, log=log)
        engine = Engine.load(model, mtp=mtp_mode(args), mtp_depth=args.mtp_depth)
        from agent.headless import shell_sandbox

        sandbox = shell_sandbox(workspace, args.allow_unconfined_shell)  # None: the agent makes and owns one
        return Agent(
            engine,
            tools.registry,
            workspace,
            approve=approve,
            sampling=Sampling(guide_calls=args.guide_calls),
            sandbox=sandbox,
        )

    return launch
