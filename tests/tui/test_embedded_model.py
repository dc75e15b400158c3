"""The real app on the embedded tiny-agent: a request that needs Python, answered with a visible call."""

from __future__ import annotations

import pytest

from agent.agent import Agent
from optiq_runtime.embedded import embedded_base_path
from tests.tui.conftest import SIZE, ask, shown
from tools.builtin import builtin_tools
from tools.registry import Registry
from tui import OptiqApp
from tui.widgets.tool_card import ToolCard
from tui.widgets.transcript import AnswerBlock


def _placeholder_weights() -> bool:
    readme = embedded_base_path() / "README.md"
    return readme.is_file() and "placeholder weights" in readme.read_text(encoding="utf-8")


pytestmark = [pytest.mark.anyio, pytest.mark.slow]
trained = pytest.mark.skipif(
    _placeholder_weights(), reason="the embedded tiny-agent still has its placeholder (random) weights"
)


def embedded_app(workspace, agents: list) -> OptiqApp:
    def launch(progress, approve, log):
        from optiq_runtime.engine import Engine

        agents.append(Agent(Engine.load(mtp="on"), Registry(builtin_tools()), workspace, approve=approve))
        return agents[-1]

    return OptiqApp(launch)


async def test_turns_after_the_first_run_on_the_same_model_thread(tmp_path):
    """MLX streams are per thread: a second and third turn must not fail where the first worked."""
    agents: list = []
    app = embedded_app(tmp_path, agents)
    try:
        async with app.run_test(size=SIZE) as pilot:
            for request in ("hello", "What is 2 + 2? Use Python.", "Read notes.txt"):
                await ask(pilot, request)
            failures = [
                e
                for e in app.chat.events
                if e.type in ("error", "done") and "generation failed" in getattr(e, "message", "")
            ]
            assert not failures
            assert [e.stop_reason for e in app.chat.events if e.type == "done"] != []
    finally:
        for agent in agents:
            agent.close()


@trained
async def test_python_request_on_the_embedded_model(tmp_path):
    agents: list = []
    app = embedded_app(tmp_path, agents)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, "What is 37 * 91? Use Python.")
            cards = [card for card in app.chat.query(ToolCard) if card.tool_name == "run_python"]
            assert cards, f"no run_python call; events: {[e.type for e in app.chat.events]}"
            card = cards[0]
            assert card.state == "done"
            assert "37" in shown(card.query_one(".arguments")) and "91" in shown(card.query_one(".arguments"))
            assert "3367" in shown(card.query_one(".outcome"))
            answers = app.chat.query(AnswerBlock)
            assert answers and "3367" in answers[-1].source
            assert sum(1 for e in app.chat.events if e.type == "text") > 1  # streamed token by token
    finally:
        for agent in agents:
            agent.close()
