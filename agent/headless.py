"""Headless runs (``optiq run``): one request through the agent, the answer or JSON events on stdout.

Everything but the answer (tool activity, notices, where the trace went) goes to stderr, so
stdout can be piped. Exit status: 0 when the agent answered, 1 when it stopped on a limit or an
error.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from agent.agent import Agent
from agent.events import DoneEvent
from agent.session import SessionWriter, new_session_path
from agent.toolset import agent_registry  # noqa: F401 - re-exported: callers import it from here
from optiq_runtime.errors import BadInputError

if TYPE_CHECKING:  # the engine loads mlx-lm: imported when a model is loaded, not when this module is
    from optiq_runtime.engine import Engine


def load_engine(
    model: str | None, base: str | None = None, *, mtp="auto", mtp_depth: int | None = None, progress: Any = None
) -> Engine:
    """The engine for ``--model DIR``, or for the default OptiQ build of ``base`` (built on first run)."""
    from optiq_runtime.engine import Engine

    if model and base:
        raise BadInputError("give --model (a built model) or --base (build one from it), not both")
    if not model:
        from optiq_runtime.firstrun import ensure_model

        model = str(ensure_model(base, progress=progress))
    return Engine.load(model, mtp=mtp, mtp_depth=mtp_depth)


def shell_sandbox(workspace: Any, allow_unconfined: bool) -> Any:
    """A sandbox whose commands may run without the OS layer (``--allow-unconfined-shell``), else None."""
    if not allow_unconfined:
        return None
    from sandbox import Policy, Sandbox

    return Sandbox(Policy(unconfined_commands=True), workspace=workspace)


def run_headless(
    agent: Agent, prompt: str, *, json_lines: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Send ``prompt``; print the answer (or every event as a JSON line); return the exit status."""
    done: DoneEvent | None = None
    for event in agent.send(prompt):
        if json_lines:
            out.write(event.model_dump_json() + "\n")
            out.flush()
        else:
            _narrate(event, err)
        if event.type == "done":
            done = event
    if done is None:
        raise RuntimeError("the agent's turn ended without a done event")
    if not json_lines and done.answer:
        out.write(done.answer.rstrip("\n") + "\n")
    if not done.answered:
        err.write(f"optiq run: stopped ({done.stop_reason}): {done.message}\n")
    return 0 if done.answered else 1


def _narrate(event: Any, err: TextIO) -> None:
    """One stderr line for what the agent does, so a person sees progress; the answer stays on stdout."""
    if event.type == "tool_validated":
        err.write(f"-> {event.call.name} {_short(event.call.arguments)}\n")
    elif event.type == "tool_result":
        err.write(f"<- {event.name or 'error'}{'' if event.ok else ' (failed)'}: {_short(event.content)}\n")
    elif event.type == "tool_rejected":
        err.write(f"x  {event.call.name or 'malformed call'} {event.reason}: {'; '.join(event.errors)}\n")
    elif event.type == "notice":
        err.write(f"optiq: {event.message}\n")
    else:
        return
    err.flush()


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_trace(err: TextIO = sys.stderr) -> SessionWriter:
    """A new trace in the sessions folder; its path is said on stderr."""
    path = new_session_path()
    writer = SessionWriter(path)
    err.write(f"optiq: session trace: {path}\n")
    return writer
