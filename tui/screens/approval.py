"""Asking before a side-effecting tool runs: allow once, allow for the session, or deny."""

from __future__ import annotations

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from agent.approval import ApprovalDecision, ApprovalRequest
from tui.widgets.tool_card import show_arguments


class ApprovalScreen(ModalScreen[ApprovalDecision]):
    """The dialog for one call; dismissed with the user's decision."""

    CSS_PATH = "approval.tcss"
    BINDINGS = [
        Binding("y,o", "decide('once')", "Allow once"),
        Binding("s,a", "decide('session')", "Allow for session"),
        Binding("n,d,escape", "decide('deny')", "Deny"),
    ]

    def __init__(self, request: ApprovalRequest, diff: str | None = None) -> None:
        super().__init__()
        self.request = request
        self.diff = diff

    def compose(self) -> ComposeResult:
        call = self.request.call
        with Vertical(id="approval-dialog"):
            yield Static(Text.assemble("Allow ", (call.name, "bold"), "?"), id="approval-title")
            with VerticalScroll(id="approval-body"):
                if self.diff is None:
                    yield Static(show_arguments(call.name, call.arguments), id="approval-arguments")
                else:
                    yield Static(
                        Syntax(self.diff, "diff", theme="ansi_dark", background_color="default"), id="approval-diff"
                    )
            with Horizontal(id="approval-buttons"):
                yield Button("Allow once (y)", id="once", variant="primary")
                yield Button("Allow for session (s)", id="session", variant="warning")
                yield Button("Deny (n)", id="deny", variant="error")

    def on_mount(self) -> None:
        self.query_one("#deny", Button).focus()  # a stray Enter must not run anything

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_decide(event.button.id or "deny")

    def action_decide(self, decision: str) -> None:
        self.dismiss(ApprovalDecision(decision))
