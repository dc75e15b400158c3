"""Slash commands, completion, the prompt's keys, help, first-run build and load failures."""

from __future__ import annotations

import threading

import pytest
from textual import events

from optiq_runtime.progress import ProgressEvent
from tests.tui.conftest import SIZE, ask, ready, shown, wait_for
from tui import OptiqApp
from tui.commands import complete, parse
from tui.screens.build import BuildScreen
from tui.screens.chat import COMMANDS
from tui.screens.help import HelpScreen
from tui.widgets.command_hints import CommandHints
from tui.widgets.prompt import PromptInput
from tui.widgets.status_bar import StatusBar
from tui.widgets.transcript import Note, UserMessage

pytestmark = pytest.mark.anyio


def test_parse_and_complete():
    assert parse("what is /help?", COMMANDS) is None
    assert parse("/mtp off", COMMANDS).command.name == "mtp" and parse("/mtp off", COMMANDS).argument == "off"
    assert parse("/nope", COMMANDS).command is None
    assert [c.name for c in complete("/m", COMMANDS)] == ["mtp", "model"]
    assert complete("/mtp ", COMMANDS) == [] and complete("hello", COMMANDS) == []


async def command(pilot, text: str) -> None:
    await ready(pilot)
    pilot.app.chat.query_one(PromptInput).insert(text)
    await pilot.press("enter")
    await pilot.pause()


def transcript_text(app) -> str:
    from rich.console import Console

    console = Console(width=100, record=True, color_system=None, file=open("/dev/null", "w"))
    for widget in app.chat.transcript.children:
        source = getattr(widget, "source", None)
        console.print(source if source is not None else widget.content if hasattr(widget, "content") else "")
    return console.export_text()


async def test_help_and_f1_list_the_keys_and_commands(scripted_app):
    app = scripted_app([])
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, "/help")
        assert isinstance(app.screen, HelpScreen)
        text = shown(app.screen.query_one("#help-text"))
        for needle in ("Ctrl+J", "Escape", "Ctrl+Q", "/tools", "/mtp on|off", "/save"):
            assert needle in text
        await pilot.press("escape")
        assert app.screen is app.chat
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


async def test_tools_model_mtp_and_unknown(scripted_app):
    app = scripted_app([])
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, "/tools")
        await command(pilot, "/model")
        await command(pilot, "/mtp off")
        await command(pilot, "/frobnicate")
        text = transcript_text(app)
        assert "### run_python (sandboxed)" in text and '"code"' in text
        assert "### write_file (asks for approval)" in text
        assert "Sandbox confinement" in text and "**filesystem**" in text
        assert "tiny-agent-optiq" in text and "/models/tiny-agent-optiq" in text
        assert app.agent.engine.mtp_enabled is False
        assert "MTP off" in str(app.chat.query_one(StatusBar).render())
        assert "unknown command /frobnicate" in text
        await command(pilot, "/mtp on")
        assert app.agent.engine.mtp_enabled is True


async def test_save_writes_the_trace_and_clear_forgets(scripted_app, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    app = scripted_app(["Hello there."])
    async with app.run_test(size=SIZE) as pilot:
        await ask(pilot, "hi")
        await command(pilot, "/save")
        [trace] = (tmp_path / "home" / "sessions").glob("*.jsonl")
        lines = trace.read_text().splitlines()
        assert '"type":"user"' in lines[0] and '"type":"done"' in lines[-1]
        assert "**Assistant:** Hello there." in trace.with_suffix(".md").read_text()
        await command(pilot, "/clear")
        assert not app.chat.query(UserMessage)
        assert app.agent.messages == []


async def test_quit_command_exits(scripted_app):
    app = scripted_app([])
    async with app.run_test(size=SIZE) as pilot:
        await command(pilot, "/quit")
        await wait_for(pilot, lambda: not app.is_running)


async def test_prompt_keys_newline_history_and_completion(scripted_app):
    app = scripted_app(["one", "two"])
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.chat.query_one(PromptInput)
        assert prompt.has_focus
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"
        prompt.clear()
        await ask(pilot, "first")
        await ask(pilot, "second")
        await pilot.press("up")
        assert prompt.text == "second"
        await pilot.press("up")
        assert prompt.text == "first"
        await pilot.press("down", "down")
        assert prompt.text == ""
        await pilot.press("/", "t")
        await pilot.pause()
        assert "/tools" in shown(app.chat.query_one(CommandHints))
        await pilot.press("tab")
        assert prompt.text == "/tools "


async def test_typing_works_while_the_model_writes(scripted_app):
    app = scripted_app(["word " * 2000], delay=0.01)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        prompt = app.chat.query_one(PromptInput)
        prompt.insert("go")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.chat.events) > 20)  # the answer is streaming
        for typed, key in enumerate("next", 1):
            # posted straight to the app: Pilot.press would wait for the streaming screen to go idle
            app.post_message(events.Key(key, key))
            await wait_for(pilot, lambda typed=typed: len(prompt.text) == typed, timeout=1.0)
        assert prompt.text == "next" and app.chat.generating
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.generating)


async def test_first_run_shows_the_build_then_opens_the_chat():
    release = threading.Event()

    def launch(progress, approve, log):
        log("optiq: building tiny-agent-OptiQ-4bit (first run only)")
        for done in range(3):
            progress(ProgressEvent("sensitivity", done, 4, float(done), 4.0 - done))
        release.wait(10)
        raise RuntimeError("no model in this test")

    app = OptiqApp(launch)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BuildScreen))
        await pilot.pause(0.1)
        assert "sensitivity  (2/4)" in shown(app.screen.query_one("#build-stage"))
        assert "left 00:02" in shown(app.screen.query_one("#build-eta"))
        assert "first run only" in shown(app.screen.query_one("#build-log"))
        release.set()
        await wait_for(pilot, lambda: app.screen is app.chat)
        await wait_for(pilot, lambda: app.chat.query(Note))
        assert "could not be loaded: RuntimeError: no model in this test" in transcript_text(app)
        assert app.chat.query_one(PromptInput).has_focus


async def test_a_request_typed_while_the_model_loads_runs_when_it_is_ready(tmp_path):
    from agent.agent import Agent
    from tests.tui.scripted import ScriptedEngine
    from tools.builtin import builtin_tools
    from tools.registry import Registry

    release = threading.Event()
    agents = []

    def launch(progress, approve, log):
        release.wait(10)
        agents.append(Agent(ScriptedEngine(["Ready now."]), Registry(builtin_tools()), tmp_path, approve=approve))
        return agents[-1]

    app = OptiqApp(launch)
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.chat.query_one(PromptInput).insert("early")
            await pilot.press("enter")
            assert app.agent is None and "loading" in str(app.chat.query_one(StatusBar).render())
            release.set()
            await wait_for(pilot, lambda: any(e.type == "done" for e in app.chat.events))
            assert app.chat.events[0].text == "early" and app.chat.events[-1].answer == "Ready now."
    finally:
        for agent in agents:
            agent.close()
