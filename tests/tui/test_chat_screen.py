"""The chat screen driven by Pilot over the real agent loop (scripted model replies, real sandbox)."""

from __future__ import annotations

import pytest

from tests.tui.conftest import SIZE, ask, done_count, ready, send, shown, wait_for
from tests.tui.scripted import call, python_call
from tui.screens.approval import ApprovalScreen
from tui.widgets.status_bar import StatusBar
from tui.widgets.tool_card import ToolCard
from tui.widgets.transcript import AnswerBlock, Note, UserMessage

pytestmark = pytest.mark.anyio


def cards(app) -> list[ToolCard]:
    return list(app.chat.query(ToolCard))


def notes(app) -> list[str]:
    return [shown(note) for note in app.chat.query(Note)]


async def test_a_python_request_shows_the_call_its_result_and_the_streamed_answer(scripted_app):
    app = scripted_app([python_call("print(37 * 91)"), "37 × 91 is **3367**."])
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "What is 37 * 91? Use Python.")
        [card] = cards(app)
        assert card.state == "done" and card.tool_name == "run_python"
        assert "print(37 * 91)" in shown(card.query_one(".arguments"))
        assert shown(card.query_one(".outcome")).strip() == "3367"
        [answer] = app.chat.query(AnswerBlock)
        assert answer.source == "37 × 91 is **3367**."
        assert [shown(m).strip() for m in app.chat.query(UserMessage)] == ["What is 37 * 91? Use Python."]
        assert sum(1 for e in app.chat.events if e.type == "text") > 3  # streamed, not written at once
        status = str(app.chat.query_one(StatusBar).render())
        assert "42.5 tok/s" in status and "MTP on 75%" in status


async def test_an_invalid_call_shows_the_validation_error_and_the_app_goes_on(scripted_app):
    app = scripted_app([call("read_file"), "I could not read it."])
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "read something")
        [card] = cards(app)
        assert card.state == "rejected"
        assert "path" in shown(card.query_one(".outcome"))
        assert app.chat.query(AnswerBlock)


async def test_allow_once_runs_the_edit_after_showing_its_diff(scripted_app, tmp_path):
    (tmp_path / "notes.txt").write_text("alpha\nbeta\n")
    app = scripted_app([call("edit_file", path="notes.txt", old="beta", new="BETA"), "Edited."])
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "capitalise beta in notes.txt")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        diff = shown(app.screen.query_one("#approval-diff"))
        assert "-beta" in diff and "+BETA" in diff
        await pilot.press("y")
        await wait_for(pilot, lambda: done_count(app) == 1)
        assert (tmp_path / "notes.txt").read_text() == "alpha\nBETA\n"
        assert cards(app)[0].state == "done"


async def test_deny_leaves_the_file_alone(scripted_app, tmp_path):
    app = scripted_app([call("write_file", path="new.txt", content="hello"), "Not written."])
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "write new.txt")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        assert "+hello" in shown(app.screen.query_one("#approval-diff"))
        await pilot.press("n")
        await wait_for(pilot, lambda: done_count(app) == 1)
        assert not (tmp_path / "new.txt").exists()
        [card] = cards(app)
        assert card.state == "rejected" and "denied" in str(card.title)


async def test_a_shell_command_is_shown_before_it_runs(scripted_app, tmp_path):
    app = scripted_app([call("run_shell", command="touch made.txt"), "Not run."])
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "make a file")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        assert "touch made.txt" in shown(app.screen.query_one("#approval-arguments"))
        await pilot.press("n")
        await wait_for(pilot, lambda: done_count(app) == 1)
        assert not (tmp_path / "made.txt").exists()
        assert cards(app)[0].state == "rejected"


async def test_allow_for_the_session_asks_once(scripted_app, tmp_path):
    replies = [
        call("write_file", path="a.txt", content="1"),
        "one",
        call("write_file", path="b.txt", content="2"),
        "two",
    ]
    app = scripted_app(replies)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "write a")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.press("s")
        await wait_for(pilot, lambda: done_count(app) == 1 and not app.chat.generating)
        await ask(pilot, "write b")  # would hang on a dialog if it asked again
        assert (tmp_path / "a.txt").read_text() == "1" and (tmp_path / "b.txt").read_text() == "2"


LONG_ANSWER = "word " * 400


async def start_long_answer(pilot, app) -> None:
    """Send a request whose scripted answer streams for seconds, and wait until it shows."""
    await send(pilot, "write a lot")
    await wait_for(pilot, lambda: len(app.chat.query(AnswerBlock)) == 1)


async def test_escape_interrupts_and_the_partial_answer_stays(scripted_app):
    app = scripted_app([LONG_ANSWER], delay=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await start_long_answer(pilot, app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: done_count(app) == 1 and not app.chat.generating)
        done = app.chat.events[-1]
        assert done.stop_reason == "interrupted"
        assert 0 < len(done.answer) < len(LONG_ANSWER)
        assert any("interrupted" in note for note in notes(app))
        await ask(pilot, "again")  # the app takes the next request
        assert done_count(app) == 2


async def test_ctrl_c_interrupts_while_generating_and_the_status_shows_live_speed(scripted_app):
    app = scripted_app([LONG_ANSWER], delay=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await start_long_answer(pilot, app)
        status = app.chat.query_one(StatusBar)
        await wait_for(pilot, lambda: "42.5 tok/s" in str(status.render()), timeout=2)
        assert app.chat.generating and not any(e.type == "stats" for e in app.chat.events)
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: done_count(app) == 1)
        assert app.chat.events[-1].stop_reason == "interrupted"


async def test_ctrl_q_quits_during_a_generation(scripted_app):
    app = scripted_app([LONG_ANSWER], delay=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await start_long_answer(pilot, app)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.engine.replies == []


async def test_ctrl_q_quits_while_the_approval_dialog_waits(scripted_app, tmp_path):
    app = scripted_app([call("write_file", path="x.txt", content="x")])
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "write x")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app.is_running)
    assert not (tmp_path / "x.txt").exists()


async def test_a_model_failure_is_shown_in_place(scripted_app):
    app = scripted_app(["fine"])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)

        def broken(*args, **kwargs):
            raise RuntimeError("the model fell over")
            yield  # a generator, like Engine.stream

        app.agent.engine.stream = broken
        await send(pilot, "hello")
        await wait_for(pilot, lambda: not app.chat.generating and any("fell over" in n for n in notes(app)))
        assert app.is_running
