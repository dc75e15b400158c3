"""The chat: transcript, prompt and status bar over one agent, with slash commands and approvals.

The agent runs in thread workers (loading the model, one turn at a time). The events a turn yields
wait in an inbox; one message at a time wakes the screen to draw all that arrived, so the UI thread
only draws and keeps up with any decoding speed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Markdown, TextArea

from agent.approval import ApprovalDecision, ApprovalRequest, Approver
from agent.events import StatsEvent
from optiq_runtime.errors import OptiqError
from optiq_runtime.progress import ProgressEvent
from tui.commands import Command, Invocation, parse
from tui.describe import model_markdown, model_metadata, save_session, tools_markdown
from tui.diff import proposed_diff
from tui.messages import AgentEvent, AgentEvents, AgentReady, BuildLog, BuildProgress, LoadFailed, TurnEnded
from tui.screens.approval import ApprovalScreen
from tui.screens.build import BuildScreen
from tui.screens.help import HelpScreen
from tui.screens.servers import ServersTrustScreen
from tui.widgets.command_hints import CommandHints
from tui.widgets.prompt import PromptInput
from tui.widgets.status_bar import StatusBar, quant_mix
from tui.widgets.transcript import Transcript

LIVE_STATS_S = 0.5  # how often the status bar reads the running generation's speed

Launch = Callable[[Callable[[ProgressEvent], object], Approver, Callable[[str], object]], Any]
"""``launch(progress, approve, log)`` builds (first run) or loads the model and returns a ready ``Agent``
that asks ``approve``; ``progress`` and ``log`` report the build."""


class TrustQuestion(Protocol):
    """Something to approve before the agent loads (a workspace's MCP servers file): its text, and what yes does."""

    def question(self) -> str: ...

    def approve(self) -> None: ...


class ChatScreen(Screen[None]):
    """The main screen."""

    CSS_PATH = "chat.tcss"
    BINDINGS = [
        Binding("escape", "interrupt", "Interrupt", show=False),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
        Binding("f1", "help", "Help"),
    ]

    generating: reactive[bool] = reactive(False, init=False)

    def __init__(self, launch: Launch, trust: TrustQuestion | None = None) -> None:
        super().__init__()
        self.launch = launch
        self.trust = trust  # asked first; the agent loads after the answer
        self.agent: Any = None
        self.events: list[Any] = []  # this session's events, for /save
        self._queued: str | None = None
        self._approval: queue.Queue | None = None
        self._build: BuildScreen | None = None
        self._quitting = False
        self._build_log = ""
        self._live: Timer | None = None
        # Events from the turn's worker wait here; one AgentEvents message at a time is in flight,
        # so a fast model cannot flood the message queue faster than the screen draws.
        self._inbox: list[Any] = []
        self._inbox_lock = threading.Lock()
        self._inbox_posted = False
        # MLX streams belong to the thread that made them: the model loads and every turn runs on
        # this one thread (Textual's thread workers would take any thread of a pool).
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optiq-model")

    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript")
        yield CommandHints(COMMANDS, id="hints")
        yield PromptInput(id="prompt", placeholder="Ask optiq…  (/ for commands, F1 for help)", commands=COMMANDS)
        yield StatusBar(id="status")

    def on_mount(self) -> None:
        self.query_one(PromptInput).focus()
        if self.trust is None:
            self._load()
        else:
            self.app.push_screen(ServersTrustScreen(self.trust.question()), callback=self._trusted)

    async def _trusted(self, use: bool | None) -> None:
        if use and self.trust is not None:
            self.trust.approve()
        await self.transcript.note(
            "workspace MCP servers: " + ("approved; starting them" if use else "not used this time")
        )
        self._load()

    def on_unmount(self) -> None:
        self._model_thread.shutdown(wait=False)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    # -- loading the model

    @work(group="load", exit_on_error=False)
    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._model_thread, self._load_agent)

    def _load_agent(self) -> None:
        """Build or load the model and make the agent (on the model thread)."""
        try:
            agent = self.launch(
                lambda progress: self.post_message(BuildProgress(progress)),
                self.approve,
                lambda line: self.post_message(BuildLog(line)),
            )
        except OptiqError as error:
            self.post_message(LoadFailed(str(error)))
        except Exception as error:  # the app must open even when the model cannot: say why, keep running
            self.post_message(LoadFailed(f"{type(error).__name__}: {error}"))
        else:
            self.post_message(AgentReady(agent))

    def on_build_progress(self, message: BuildProgress) -> None:
        if self._build is None:
            self._build = BuildScreen()
            self._build.log_line = self._build_log
            self.app.push_screen(self._build)
        self._build.progress = message.progress

    async def on_build_log(self, message: BuildLog) -> None:
        self._build_log = message.line
        if self._build is not None:
            self._build.log_line = message.line
        await self.transcript.note(message.line)

    def _close_build(self) -> None:
        if self._build is not None and self.app.screen is self._build:
            self.app.pop_screen()
        self._build = None

    async def on_agent_ready(self, message: AgentReady) -> None:
        self._close_build()
        self.agent = message.agent
        self._show_model()
        self.status.state = "ready"
        if self._queued is not None:
            text, self._queued = self._queued, None
            self.send(text)

    async def on_load_failed(self, message: LoadFailed) -> None:
        self._close_build()
        self.status.state = "failed"
        await self.transcript.note(f"✗ the model could not be loaded: {message.error}", "error")

    def _show_model(self) -> None:
        engine = self.agent.engine
        status = self.status
        status.model = Path(engine.model_path).name
        status.mix = quant_mix(model_metadata(engine).get("counts")) or "unquantized"
        status.mtp = engine.mtp_enabled if engine.mtp_available else None
        decision = engine.mtp_decision
        status.mtp_reason = decision.reason if decision is not None else ""
        status.context_size = self.agent.context_tokens

    # -- a turn

    def send(self, text: str) -> None:
        """Start a turn on ``text`` (queued while the model loads)."""
        if self.agent is None:
            self._queued = text
            self.notify("The model is still loading; your request runs as soon as it is ready.")
            return
        if self.generating:
            self.notify("An answer is being written; Escape interrupts it.", severity="warning")
            return
        self.generating = True
        self._run_turn(text)

    @work(group="turn", exit_on_error=False)
    async def _run_turn(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._model_thread, self._turn, text)

    def _turn(self, text: str) -> None:
        """Run one request through the agent (on the model thread), handing each event to the screen."""
        try:
            for event in self.agent.send(text):
                self._deliver(event)
        except Exception as error:  # a model or tool failure ends the turn, never the app
            self.post_message(TurnEnded(f"{type(error).__name__}: {error}"))
        else:
            self.post_message(TurnEnded())

    def _deliver(self, event: Any) -> None:
        """Queue an event for the screen (from the worker thread); wake the screen if it is not already woken."""
        with self._inbox_lock:
            self._inbox.append(event)
            if self._inbox_posted:
                return
            self._inbox_posted = True
        self.post_message(AgentEvents())

    async def on_agent_events(self, message: AgentEvents) -> None:
        with self._inbox_lock:
            events, self._inbox, self._inbox_posted = self._inbox, [], False
        await self.show_events(events)

    async def on_agent_event(self, message: AgentEvent) -> None:
        await self.show_events([message.event])

    async def show_events(self, events: list[Any]) -> None:
        """Record agent events and draw them, consecutive text pieces as one."""
        if self._quitting:
            return  # the rest of an interrupted turn, arriving while the app closes
        self.events += events
        for event in merge_text(events):
            await self.transcript.show(event)
            if event.type == "stats":
                self._show_stats(event)

    def _show_stats(self, stats: StatsEvent) -> None:
        status = self.status
        status.tok_s = stats.decode_tok_s
        status.context_used = stats.prompt_tokens + stats.tokens
        status.acceptance = stats.acceptance if self.agent.engine.mtp_enabled else None
        if stats.mtp_reason:
            status.mtp, status.mtp_reason = stats.mtp, stats.mtp_reason

    async def on_turn_ended(self, message: TurnEnded) -> None:
        if self._quitting:
            return
        if message.error:
            await self.transcript.note(f"✗ the turn failed: {message.error}", "error")
        await self.transcript.end_blocks()
        self.generating = False

    def watch_generating(self, generating: bool) -> None:
        self.status.state = "generating" if generating else "ready"
        if generating:
            self._live = self.set_interval(LIVE_STATS_S, self._show_live_stats)
        elif self._live is not None:
            self._live.stop()
            self._live = None

    def _show_live_stats(self) -> None:
        """Speed and acceptance of the generation still running, as the engine counts them."""
        stats = self.agent.engine.last_stats
        if stats.decode_tok_s > 0:
            self.status.tok_s = stats.decode_tok_s
        if stats.mtp_used:
            self.status.acceptance = stats.acceptance

    def action_interrupt(self) -> None:
        if self.generating and self.agent is not None:
            self.agent.interrupt()
            self._answer_approval(ApprovalDecision.DENY)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "interrupt":
            return self.generating  # otherwise Ctrl+C stays the prompt's copy key
        return True

    def shutdown(self) -> None:
        """Stop the running generation and release a worker waiting for approval (the app is quitting)."""
        self._quitting = True
        if self.agent is not None:
            self.agent.interrupt()
        self._answer_approval(ApprovalDecision.DENY)
        self._model_thread.shutdown(wait=False)

    # -- approvals (``approve`` runs in the turn's worker thread)

    def approve(self, request: ApprovalRequest) -> ApprovalDecision:
        """Show the approval dialog and wait for the user's decision."""
        answer: queue.Queue = queue.Queue(maxsize=1)
        diff = proposed_diff(request.call.name, request.call.arguments, self.agent.workspace)
        self.app.call_from_thread(self._ask, request, diff, answer)
        return answer.get()

    def _ask(self, request: ApprovalRequest, diff: str | None, answer: queue.Queue) -> None:
        self._approval = answer
        self.app.push_screen(ApprovalScreen(request, diff), callback=self._answer_approval)

    def _answer_approval(self, decision: ApprovalDecision | None) -> None:
        answer, self._approval = self._approval, None
        if answer is None:
            return
        if isinstance(self.app.screen, ApprovalScreen):
            self.app.pop_screen()  # interrupted or quitting while the dialog was open
        answer.put(decision or ApprovalDecision.DENY)

    # -- the prompt

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.query_one(CommandHints).show_for(event.text_area.text)

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        self.query_one(CommandHints).show_for("")
        invocation = parse(message.text, COMMANDS)
        if invocation is None:
            self.send(message.text)
        else:
            await self.run_command(invocation)

    def action_help(self) -> None:
        if not isinstance(self.app.screen, HelpScreen):
            self.app.push_screen(HelpScreen(COMMANDS))

    # -- slash commands

    async def run_command(self, invocation: Invocation) -> None:
        command = invocation.command
        if command is None:
            await self.transcript.note(f"unknown command /{invocation.name}; /help lists the commands", "error")
        elif command.needs_model and self.agent is None:
            await self.transcript.note(f"/{command.name} needs the model, which is not loaded yet", "error")
        else:
            await command.run(self, invocation.argument)

    async def _help(self, argument: str) -> None:
        self.action_help()

    async def _quit(self, argument: str) -> None:
        await self.app.action_quit()

    async def _clear(self, argument: str) -> None:
        if self.generating:
            await self.transcript.note("/clear waits for the answer to finish (Escape interrupts it)", "error")
            return
        self.agent.reset()
        self.events.clear()
        await self.transcript.clear()
        self.status.context_used = 0

    async def _tools(self, argument: str) -> None:
        from sandbox import SandboxError, confinement

        try:  # found once per process by starting a sandbox: off the UI thread
            layers = await asyncio.to_thread(confinement)
        except SandboxError as error:
            layers = {"sandbox": f"could not start: {error}"}
        await self._show_markdown(tools_markdown(self.agent.registry, layers))

    async def _model(self, argument: str) -> None:
        await self._show_markdown(model_markdown(self.agent.engine))

    async def _mtp(self, argument: str) -> None:
        engine = self.agent.engine
        if argument not in ("on", "off"):
            state = "on" if engine.mtp_enabled else "off"
            await self.transcript.note(f"MTP is {state}; say /mtp on or /mtp off", "error")
        elif self.generating:
            await self.transcript.note("/mtp waits for the answer to finish", "error")
        elif argument == "on" and not engine.mtp_available:
            await self.transcript.note("this model has no MTP head; it decodes without MTP", "error")
        else:
            engine.mtp_enabled = argument == "on"
            self.status.mtp = engine.mtp_enabled
            decision = engine.mtp_decision
            self.status.mtp_reason = decision.reason if decision is not None else ""
            self.status.acceptance = None
            await self.transcript.note(f"MTP {argument}")

    async def _save(self, argument: str) -> None:
        path = save_session(self.events, Path(argument).expanduser() if argument else None)
        await self.transcript.note(f"session saved: {path} (and {path.with_suffix('.md').name})")

    async def _show_markdown(self, text: str) -> None:
        await self.transcript.end_blocks()
        await self.transcript.add(Markdown(text, classes="command-output"))


# The slash commands: /help, the hints above the prompt and Tab completion all read this table.
COMMANDS: tuple[Command, ...] = (
    Command("help", "/help", "keys and commands (also F1)", ChatScreen._help, needs_model=False),
    Command("clear", "/clear", "forget the conversation and clear the screen", ChatScreen._clear),
    Command("tools", "/tools", "the tools on offer and their argument schemas", ChatScreen._tools),
    Command("mtp", "/mtp on|off", "decode with or without the MTP draft head", ChatScreen._mtp),
    Command("model", "/model", "which model runs and where it came from", ChatScreen._model),
    Command("save", "/save", "export this session's trace (JSONL and Markdown)", ChatScreen._save),
    Command("quit", "/quit", "leave (same as Ctrl+Q)", ChatScreen._quit, needs_model=False),
)


def merge_text(events: list[Any]) -> list[Any]:
    """The events with each run of text (or of reasoning) pieces joined into one event."""
    merged: list[Any] = []
    for event in events:
        last = merged[-1] if merged else None
        if event.type in ("text", "reasoning") and last is not None and last.type == event.type:
            merged[-1] = last.model_copy(update={"text": last.text + event.text})
        else:
            merged.append(event)
    return merged
