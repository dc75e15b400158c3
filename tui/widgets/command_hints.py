"""Completions for the slash command being typed, shown above the prompt."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from tui.commands import Command, complete


class CommandHints(Static):
    """The commands that match the prompt's text; hidden when none do."""

    DEFAULT_CSS = """
    CommandHints { height: auto; max-height: 8; padding: 0 1; display: none; }
    CommandHints.-shown { display: block; }
    """

    def __init__(self, commands: Sequence[Command], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.commands = commands

    def show_for(self, text: str) -> None:
        matches = complete(text, self.commands)
        self.set_class(bool(matches), "-shown")
        lines = Text()
        for index, command in enumerate(matches):
            if index:
                lines.append("\n")
            lines.append(f"{command.usage:<14}", style="bold")
            lines.append(command.help, style="dim")
        if len(matches) > 1:
            lines.append("\nTab completes", style="dim italic")
        self.update(lines)
