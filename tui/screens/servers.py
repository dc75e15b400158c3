"""Asking once whether a workspace's own MCP servers file may be used (it starts programs)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ServersTrustScreen(ModalScreen[bool]):
    """Shows what the file would start; dismissed with True (use it, and remember) or False (not now)."""

    CSS_PATH = "servers.tcss"
    BINDINGS = [
        Binding("y", "decide(True)", "Use and remember"),
        Binding("n,escape", "decide(False)", "Not now"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="servers-dialog"):
            yield Static("Use this workspace's MCP servers?", id="servers-title")
            with VerticalScroll(id="servers-body"):
                yield Static(self.question, id="servers-question", markup=False)
            with Horizontal(id="servers-buttons"):
                yield Button("Use and remember (y)", id="yes", variant="warning")
                yield Button("Not now (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # a stray Enter must not start anything

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_decide(event.button.id == "yes")

    def action_decide(self, use: bool) -> None:
        self.dismiss(use)
