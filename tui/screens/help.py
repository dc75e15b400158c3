"""Keys and commands, over the chat (F1 or /help)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

from tui.commands import help_markdown


class HelpScreen(ModalScreen[None]):
    """A dialog listing the keys and the slash commands; any of Escape, F1 or q closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,f1,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Markdown(help_markdown(), id="help-text")
            yield Static("Escape closes this help", id="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
