"""Slash commands and keys: what exists, how a prompt line names one, what completes a prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One slash command: its name (without the slash), how to call it, what it does."""

    name: str
    usage: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("help", "/help", "keys and commands (also F1)"),
    Command("clear", "/clear", "forget the conversation and clear the screen"),
    Command("tools", "/tools", "the tools on offer and their argument schemas"),
    Command("mtp", "/mtp on|off", "decode with or without the MTP draft head"),
    Command("model", "/model", "which model runs and where it came from"),
    Command("save", "/save", "export this session's trace (JSONL and Markdown)"),
    Command("quit", "/quit", "leave (same as Ctrl+Q)"),
)

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


def parse(text: str) -> Invocation | None:
    """The command a prompt line invokes, or None when the line is a request for the model."""
    line = text.strip()
    if not line.startswith("/") or "\n" in line:
        return None
    name, _, argument = line[1:].partition(" ")
    found = next((c for c in COMMANDS if c.name == name.lower()), None)
    return Invocation(found, name, argument.strip())


def complete(text: str) -> list[Command]:
    """The commands whose name starts with what follows the slash (none once a space was typed)."""
    if not text.startswith("/") or " " in text or "\n" in text:
        return []
    prefix = text[1:].lower()
    return [c for c in COMMANDS if c.name.startswith(prefix)]
