"""The prompt: a multi-line input where Enter sends, Ctrl+J adds a line, Up/Down browse history."""

from __future__ import annotations

import os
from collections.abc import Sequence

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from tui.commands import Command, complete

NEWLINE_KEYS = ("shift+enter", "ctrl+j")


class PromptInput(TextArea):
    """The user's prompt, with a history of what was sent."""

    class Submitted(Message):
        """The user pressed Enter on a non-empty prompt."""

        def __init__(self, prompt: PromptInput, text: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.text = text

        @property
        def control(self) -> PromptInput:
            return self.prompt

    def __init__(self, *, id: str | None = None, placeholder: str = "", commands: Sequence[Command] = ()) -> None:
        super().__init__(id=id, soft_wrap=True, tab_behavior="focus", show_line_numbers=False, placeholder=placeholder)
        self.commands = commands  # the slash commands Tab completes
        self.sent: list[str] = []
        self._browsing: int | None = None  # index into history while Up/Down browse it
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        handled = self._handle(event.key)
        if handled:
            event.stop()
            event.prevent_default()  # also keeps TextArea's own key handler from running

    def _handle(self, key: str) -> bool:
        row, _ = self.cursor_location
        if key == "enter":
            self._submit()
        elif key in NEWLINE_KEYS:
            self.insert("\n")
        elif key == "up" and row == 0 and self.sent:
            self._browse(-1)
        elif key == "down" and row == self.document.line_count - 1 and self._browsing is not None:
            self._browse(+1)
        elif key == "tab" and complete(self.text, self.commands):
            self.complete_command()
        else:
            return False
        return True

    def _submit(self) -> None:
        text = self.text.strip()
        if not text:
            return
        if not self.sent or self.sent[-1] != text:
            self.sent.append(text)
        self._browsing, self._draft = None, ""
        self.clear()
        self.post_message(self.Submitted(self, text))

    def _browse(self, step: int) -> None:
        if self._browsing is None:
            self._draft, self._browsing = self.text, len(self.sent)
        index = max(0, self._browsing + step)
        if index >= len(self.sent):
            self._browsing = None
            self._set(self._draft)
            return
        self._browsing = index
        self._set(self.sent[index])

    def _set(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    def complete_command(self) -> None:
        """Complete the slash command being typed as far as the matching commands agree."""
        names = [command.name for command in complete(self.text, self.commands)]
        if not names:
            return
        common = os.path.commonprefix(names)
        self._set("/" + common + (" " if len(names) == 1 else ""))
