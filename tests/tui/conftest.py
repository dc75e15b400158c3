"""Apps for the TUI tests: the real agent loop over a scripted engine, in a temporary workspace."""

from __future__ import annotations

import pytest

from agent.agent import Agent
from tests.tui.scripted import ScriptedEngine
from tools.builtin import builtin_tools
from tools.registry import Registry
from tui import OptiqApp

SIZE = (100, 30)


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
