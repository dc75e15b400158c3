"""A tool call as a collapsible card: name, arguments (or why they were refused), state, result, duration."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.content import Content
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Collapsible, Static

RESULT_LINES = 40
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
BUSY = ("writing", "called", "running")  # states that show the spinner
CODE_ARGUMENTS = {("run_python", "code"): "python", ("run_shell", "command"): "bash"}

# state -> (symbol, words); "done" and "failed" add the duration
STATES = {
    "writing": ("…", "writing the call"),
    "called": ("…", "checking arguments"),
    "running": ("⚙", "running…"),
    "approval": ("?", "waiting for your approval"),
    "done": ("✓", "done"),
    "failed": ("✗", "failed"),
    "rejected": ("⊘", "not run"),
    "malformed": ("✗", "malformed call"),
}


def show_arguments(name: str, arguments: dict[str, Any]) -> RenderableType:
    """Arguments one per line; code arguments highlighted, multi-line strings kept as blocks."""
    if not arguments:
        return Text("(no arguments)", style="dim")
    parts: list[RenderableType] = []
    for key, value in arguments.items():
        if isinstance(value, str) and ((name, key) in CODE_ARGUMENTS or "\n" in value):
            parts.append(Text(f"{key}:", style="bold"))
            lexer = CODE_ARGUMENTS.get((name, key), "text")
            parts.append(Syntax(value, lexer, theme="ansi_dark", background_color="default", word_wrap=True))
        else:
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            parts.append(Text.assemble((f"{key}: ", "bold"), shown))
    return Group(*parts)


def clip_lines(text: str, limit: int = RESULT_LINES) -> str:
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    return "\n".join(lines[:limit] + [f"[... {len(lines) - limit} more lines]"])


class ToolCard(Collapsible):
    """One tool call, updated in place as its events arrive."""

    state: reactive[str] = reactive("writing", init=False)

    def __init__(self, name: str, *, id: str | None = None) -> None:
        self.tool_name = name
        self.call_id = ""
        self.seconds: float | None = None
        self.detail = ""  # why it was not run, or the decision on it
        self._frame = 0
        self._spinner: Timer | None = None
        self._arguments = Static(Text("(arguments arriving)", style="dim"), classes="arguments")
        self._outcome = Static("", classes="outcome")
        self._outcome.display = False  # until there is a result or an error to show
        super().__init__(self._arguments, self._outcome, collapsed=False, id=id)
        self._retitle()
        self.add_class("-writing")

    def _title_text(self) -> Content:
        symbol, words = STATES.get(self.state, ("", self.state))
        if self.state in BUSY:
            symbol = SPINNER[self._frame % len(SPINNER)]
        if self.state in ("done", "failed") and self.seconds is not None:
            words = f"{words} in {self.seconds:.2f} s"
        if self.detail:
            words = self.detail if self.state == "rejected" else f"{words} · {self.detail}"
        return Content(f"{symbol} {self.tool_name or 'tool call'}  ·  {words}")

    def on_mount(self) -> None:
        self._spinner = self.set_interval(0.1, self._spin, pause=self.state not in BUSY)

    def _spin(self) -> None:
        self._frame += 1
        self._retitle()

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(f"-{old}")
        self.add_class(f"-{new}")
        if self._spinner is not None and new in BUSY:
            self._spinner.resume()
        elif self._spinner is not None:
            self._spinner.pause()
        self._retitle()

    def _retitle(self) -> None:
        # Collapsible.title is declared str, but it only sets its title widget's label, which takes Content too
        # (Content keeps a tool's name from being read as markup).
        self.title = self._title_text()  # type: ignore[assignment]

    # -- what the screen calls as events arrive

    def called(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self.call_id, self.tool_name = call_id, name
        self._arguments.update(show_arguments(name, arguments))
        self.state = "called"
        self._retitle()

    def validated(self, arguments: dict[str, Any]) -> None:
        self._arguments.update(show_arguments(self.tool_name, arguments))
        self.state = "running"

    def rejected(self, reason: str, errors: list[str]) -> None:
        self.detail = {
            "invalid": "invalid arguments",
            "denied": "denied by you",
            "repeated": "repeated a failed call",
        }.get(reason, reason)
        if reason == "invalid":
            self._show_outcome(Text("\n".join(errors), style="red"))
        self.state = "rejected"
        self._retitle()

    def malformed(self, message: str, raw: str) -> None:
        self._arguments.update(Text(raw.strip() or "(empty)", style="dim"))
        self._show_outcome(Text(message, style="red"))
        self.state = "malformed"

    def awaiting_approval(self) -> None:
        self.state = "approval"

    def decided(self, decision: str) -> None:
        self.detail = {"once": "allowed once", "session": "allowed for the session", "deny": "denied"}.get(
            decision, decision
        )
        if decision != "deny":
            self.state = "running"
        self._retitle()

    def finished(self, content: str, ok: bool, seconds: float) -> None:
        self.seconds = seconds
        if self.state == "rejected":
            return  # the refusal already says why; the result text only repeats it to the model
        self._show_outcome(Text(clip_lines(content) or "(no output)", style="" if ok else "red"))
        self.state = "done" if ok else "failed"
        self._retitle()

    def _show_outcome(self, text: Text) -> None:
        self._outcome.update(text)
        self._outcome.display = True
