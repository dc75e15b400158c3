"""Apps for the TUI tests: the real agent loop over a scripted engine, in a temporary workspace."""

from __future__ import annotations

import time

import pytest

from agent.agent import Agent
from tests.tui.scripted import ScriptedEngine
from tools.builtin import builtin_tools
from tools.registry import Registry
from tui import OptiqApp

SIZE = (100, 30)


@pytest.fixture
def anyio_backend():
    """Pilot tests are coroutines, run by anyio's pytest plugin (``pytestmark = pytest.mark.anyio``) on asyncio."""
    return "asyncio"


@pytest.fixture
def scripted_app(tmp_path):
    """``scripted_app(replies, delay=0)`` -> an OptiqApp whose agent replies with ``replies`` in order."""
    agents: list[Agent] = []

    def make(replies: list[str], delay: float = 0.0) -> OptiqApp:
        engine = ScriptedEngine(replies, delay=delay)

        def launch(progress, approve, log):
            agent = Agent(engine, Registry(builtin_tools()), tmp_path, approve=approve)
            agents.append(agent)
            return agent

        app = OptiqApp(launch)
        app.engine = engine  # for assertions on what the model was asked
        return app

    yield make
    for agent in agents:
        agent.close()


async def wait_for(pilot, predicate, timeout: float = 15.0) -> None:
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate.__doc__ or predicate}")
        await pilot.pause(0.05)


async def ready(pilot) -> None:
    """Wait until the app's agent is loaded."""
    await wait_for(pilot, lambda: pilot.app.agent is not None)
    await pilot.pause()


async def ask(pilot, text: str) -> None:
    """Type ``text`` into the prompt, send it, and wait for the turn to end."""
    turns = await send(pilot, text)
    await wait_for(pilot, lambda: done_count(pilot.app) == turns + 1 and not pilot.app.chat.generating)
    await pilot.pause()


async def send(pilot, text: str) -> int:
    """Type ``text`` and press Enter; returns how many turns had ended before."""
    await ready(pilot)
    before = done_count(pilot.app)
    pilot.app.chat.query_one("#prompt").insert(text)
    await pilot.press("enter")
    return before


def done_count(app) -> int:
    return sum(1 for event in app.chat.events if event.type == "done")


def shown(widget) -> str:
    """The plain text a ``Static`` shows (Rich renderables rendered without styles)."""
    from rich.console import Console

    console = Console(width=120, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(widget.content)
    return console.export_text()
