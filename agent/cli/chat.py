"""`optiq chat`: open the terminal agent (the default command)."""

import argparse

from agent.cli.mtp_flags import add_mtp_arguments, mtp_mode

HELP = "Open the terminal agent (the default command)."


def add_arguments(parser):
    parser.add_argument("--model", help="a built model folder (default: the OptiQ model built from --base on first run)")
    parser.add_argument("--base", help="base checkpoint: local folder or Hugging Face id (default: the embedded tiny-agent)")
    add_mtp_arguments(parser)
    parser.add_argument("--workspace", help="folder the file tools may touch (default: the current folder)")
    parser.add_argument("--tools", help="a Python file declaring more tools (Tool objects or a TOOLS list)")
    parser.add_argument("--guide-calls", action=argparse.BooleanOptionalAction, default=True,
                        help="limit tool-call function and parameter names to the offered tools (default on)")


def run(args) -> int:
    from pathlib import Path

    from agent.headless import agent_registry
    from optiq_runtime.errors import BadInputError
    from tui import OptiqApp

    if args.model and args.base:
        raise BadInputError("give --model (a built model) or --base (build one from it), not both")
    workspace = Path(args.workspace or ".").expanduser().resolve()
    if not workspace.is_dir():
        raise BadInputError(f"--workspace {workspace} is not a folder")
    mtp_mode(args)  # contradicting MTP flags fail before the screen opens
    registry = agent_registry(args.tools)  # a bad --tools file fails here, before the screen opens
    app = OptiqApp(_launcher(args, registry, workspace))
    try:
        app.run()
    finally:
        if app.agent is not None:
            app.agent.close()
    return 0


def _launcher(args, registry, workspace):
    """What the app calls in a worker thread: build the model on first run, load it, make the agent."""

    def launch(progress, approve, log):
        from agent.agent import Agent, Sampling
        from optiq_runtime.engine import Engine

        model = args.model
        if not model:
            from optiq_runtime.firstrun import ensure_model

            model = ensure_model(args.base, progress=progress, log=log)
        engine = Engine.load(model, mtp=mtp_mode(args), mtp_depth=args.mtp_depth)
        return Agent(engine, registry, workspace, approve=approve, sampling=Sampling(guide_calls=args.guide_calls))

    return launch
