"""Keys and commands, over the chat (F1 or /help)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.commands import KEYS, Command


def help_table(commands: Sequence[Command]) -> Table:
    """Keys, then commands, in two aligned columns."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("[u]Keys[/u]", "")
    for key, what in KEYS:
        table.add_row(key, what)
    table.add_row("", "")
    table.add_row("[u]Commands[/u]", "")
    for command in commands:
        table.add_row(command.usage, command.help)
    return table


class HelpScreen(ModalScreen[None]):
    """A dialog listing the keys and the slash commands; any of Escape, F1 or q closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,f1,q", "close", "Close")]

    def __init__(self, commands: Sequence[Command]) -> None:
        super().__init__()
        self.commands = commands

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static("optiq: keys and commands", id="help-title")
            yield Static(help_table(self.commands), id="help-text")
            yield Static("Escape closes this help", id="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
