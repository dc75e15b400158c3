"""Slash commands and keys: what a command is, how a prompt line names one, what completes a prefix.

The commands themselves (each with its handler) are the chat screen's table, ``tui.screens.chat.COMMANDS``;
its help, hints and completion are all read from that table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    """One slash command: its name (without the slash), how to call it, what it does, what runs it.

    ``run(screen, argument)`` is called with the screen that owns the table; ``needs_model``: refused
    (with a note) until the model is loaded.
    """

    name: str
    usage: str
    help: str
    run: Callable[[Any, str], Awaitable[None]]
    needs_model: bool = True


KEYS: tuple[tuple[str, str], ...] = (
    ("Enter", "send the prompt"),
    ("Shift+Enter, Ctrl+J", "new line in the prompt"),
    ("Up / Down", "browse earlier prompts (on the first / last line)"),
    ("Tab", "complete a slash command"),
    ("Escape, Ctrl+C", "interrupt the answer being written (what was written stays)"),
    ("Ctrl+Q", "quit at once"),
    ("F1", "this help"),
)


@dataclass(frozen=True)
class Invocation:
    """A prompt line that names a command: the command (None when unknown), the name typed and the rest."""

    command: Command | None
    name: str
    argument: str


def parse(text: str, commands: Sequence[Command]) -> Invocation | None:
    """The command of ``commands`` a prompt line invokes, or None when the line is a request for the model."""
    line = text.strip()
    if not line.startswith("/") or "\n" in line:
        return None
    name, _, argument = line[1:].partition(" ")
    found = next((c for c in commands if c.name == name.lower()), None)
    return Invocation(found, name, argument.strip())


def complete(text: str, commands: Sequence[Command]) -> list[Command]:
    """The ``commands`` whose name starts with what follows the slash (none once a space was typed)."""
    if not text.startswith("/") or " " in text or "\n" in text:
        return []
    prefix = text[1:].lower()
    return [c for c in commands if c.name.startswith(prefix)]
