"""SVG snapshots of the main screen, a tool card and the approval dialog.

Every input is fixed (events with set durations, scripted stats, a file of known content), and the
prompt's cursor does not blink, so the pictures only change when the UI does.
"""

from __future__ import annotations

from textual.app import App, ComposeResult

from agent.approval import ApprovalRequest
from agent.events import (
    DoneEvent,
    ReasoningEvent,
    StatsEvent,
    TextEvent,
    ToolCall,
    ToolCallEvent,
    ToolCallStartEvent,
    ToolRejectedEvent,
    ToolResultEvent,
    ToolValidatedEvent,
    UserEvent,
)
from tests.tui.conftest import SIZE, wait_for
from tui.diff import proposed_diff
from tui.messages import AgentEvent
from tui.screens.approval import ApprovalScreen
from tui.widgets.prompt import PromptInput
from tui.widgets.transcript import Transcript

PYTHON = ToolCall(name="run_python", arguments={"code": "print(37 * 91)"}, raw="python-call")
BAD = ToolCall(name="read_file", arguments={}, raw="bad-call")


def conversation() -> list:
    """One turn: reasoning, a run_python call and its result, then a streamed Markdown answer."""
    answer = ["37 × 91 is ", "**3367**.", "\n\n- computed ", "with `run_python`", "\n- exact"]
    return [
        UserEvent(text="What is 37 * 91? Use Python."),
        ReasoningEvent(text="A product of two numbers; "),
        ReasoningEvent(text="Python gives it exactly."),
        ToolCallStartEvent(name="run_python"),
        ToolCallEvent(call=PYTHON),
        StatsEvent(step=1, prompt_tokens=812, tokens=31, decode_tok_s=38.2, acceptance=0.71, seconds=0.9),
        ToolValidatedEvent(call=PYTHON),
        ToolResultEvent(call_id=PYTHON.id, name="run_python", content="3367", ok=True, seconds=0.05),
        *[TextEvent(text=piece) for piece in answer],
        StatsEvent(step=2, prompt_tokens=860, tokens=24, decode_tok_s=41.7, acceptance=0.74, seconds=0.6),
        DoneEvent(answer="".join(answer), stop_reason="answered", steps=2, tokens=55, seconds=1.6),
    ]


async def replay(pilot, events: list) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.agent is not None)
    app.chat.query_one(PromptInput).cursor_blink = False
    for event in events:
        app.chat.post_message(AgentEvent(event))
    await wait_for(pilot, lambda: len(app.chat.events) == len(events))
    await pilot.pause(0.2)


def test_main_screen(snap_compare, scripted_app):
    app = scripted_app([])

    async def run_before(pilot):
        await replay(pilot, conversation())

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


class CardsApp(App):
    """Two cards alone: a call that ran, and one whose arguments failed validation."""

    def compose(self) -> ComposeResult:
        yield Transcript()


def test_tool_cards(snap_compare):
    from pathlib import Path

    app = CardsApp(css_path=Path(__file__).parents[2] / "tui" / "screens" / "chat.tcss")
    events = [
        ToolCallStartEvent(name="run_python"),
        ToolCallEvent(call=PYTHON),
        ToolValidatedEvent(call=PYTHON),
        ToolResultEvent(call_id=PYTHON.id, name="run_python", content="3367", ok=True, seconds=0.05),
        ToolCallEvent(call=BAD),
        ToolRejectedEvent(call=BAD, reason="invalid", errors=["read_file: missing required argument 'path' (string)"]),
        ToolResultEvent(call_id=BAD.id, name="read_file", content="invalid", ok=False),
    ]

    async def run_before(pilot):
        transcript = pilot.app.query_one(Transcript)
        for event in events:
            await transcript.show(event)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 20), run_before=run_before)


def test_approval_dialog_with_diff(snap_compare, scripted_app, tmp_path):
    (tmp_path / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    call = ToolCall(name="edit_file", arguments={"path": "notes.txt", "old": "beta", "new": "BETA"}, raw="edit")
    app = scripted_app([])

    async def run_before(pilot):
        await wait_for(pilot, lambda: pilot.app.agent is not None)
        pilot.app.chat.query_one(PromptInput).cursor_blink = False
        diff = proposed_diff(call.name, call.arguments, tmp_path)
        pilot.app.push_screen(ApprovalScreen(ApprovalRequest(call=call, preview=""), diff))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
