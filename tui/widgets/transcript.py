"""The conversation as it happens: requests, streamed answers, reasoning, tool cards, notes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Collapsible, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from tui.widgets.tool_card import ToolCard


class UserMessage(Static):
    """What the user sent."""

    def __init__(self, text: str) -> None:
        super().__init__(Text(text), classes="user")


class AnswerBlock(Markdown):
    """Assistant text, streamed token by token as Markdown."""


class ReasoningBlock(Collapsible):
    """The model's thinking: dimmed, collapsible, growing as it streams."""

    def __init__(self) -> None:
        self.text = ""
        self._body = Static("", classes="reasoning-text")
        super().__init__(self._body, title="thinking", collapsed=False, classes="reasoning")

    def append(self, text: str) -> None:
        self.text += text
        self._body.update(Text(self.text.strip("\n")))


class Note(Static):
    """A line in the transcript that is not the conversation: an error, a notice, the end of a turn."""

    def __init__(self, text: str, kind: str = "notice") -> None:
        super().__init__(Text(text), classes=f"note -{kind}")


class Transcript(VerticalScroll):
    """Renders agent events in place; keeps the state of the turn being written."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._answer: AnswerBlock | None = None
        self._stream: MarkdownStream | None = None
        self._reasoning: ReasoningBlock | None = None
        self._writing: ToolCard | None = None  # a call whose arguments are still arriving
        self._cards: dict[str, ToolCard] = {}
        self.answered = ""  # the text of the answer being written, across its blocks

    def on_mount(self) -> None:
        self.anchor()

    async def show(self, event: Any) -> None:
        """Render one agent event."""
        handler = getattr(self, f"_show_{event.type}", None)
        if handler is not None:
            await handler(event)

    async def add(self, widget) -> None:
        await self.mount(widget)
        self.anchor()

    async def note(self, text: str, kind: str = "notice") -> None:
        await self.end_blocks()
        await self.add(Note(text, kind))

    async def clear(self) -> None:
        await self.end_blocks()
        self._cards.clear()
        self._writing = None
        await self.remove_children()

    async def end_blocks(self) -> None:
        """Finish the answer and reasoning blocks being written: the next text starts new ones."""
        if self._stream is not None:
            await self._stream.stop()
        self._stream, self._answer, self._reasoning = None, None, None

    # -- events

    async def _show_user(self, event) -> None:
        await self.end_blocks()
        self.answered = ""
        await self.add(UserMessage(event.text))

    async def _show_text(self, event) -> None:
        self._reasoning = None
        if self._answer is None:
            if not event.text.strip():
                return  # whitespace between a tool call and the next text is not worth a block
            self._answer = AnswerBlock()
            await self.add(self._answer)
            self._stream = Markdown.get_stream(self._answer)
        self.answered += event.text
        if self._stream is not None:  # made with the answer block above
            await self._stream.write(event.text)

    async def _show_reasoning(self, event) -> None:
        if self._reasoning is None:
            await self.end_blocks()
            self._reasoning = ReasoningBlock()
            await self.add(self._reasoning)
        self._reasoning.append(event.text)

    async def _show_tool_call_start(self, event) -> None:
        await self.end_blocks()
        self._writing = ToolCard(event.name)
        await self.add(self._writing)

    async def _show_tool_call(self, event) -> None:
        card = self._writing or await self._new_card(event.call.name)
        self._writing = None
        self._cards[event.call.id] = card
        card.called(event.call.id, event.call.name, event.call.arguments)

    async def _show_error(self, event) -> None:
        card = self._writing or await self._new_card("")
        self._writing = None
        card.malformed(event.message, event.raw)

    async def _show_tool_validated(self, event) -> None:
        (await self._card(event.call)).validated(event.call.arguments)

    async def _show_tool_rejected(self, event) -> None:
        (await self._card(event.call)).rejected(event.reason, event.errors)

    async def _show_approval_request(self, event) -> None:
        (await self._card(event.call)).awaiting_approval()

    async def _show_approval(self, event) -> None:
        if card := self._cards.get(event.call_id):
            card.decided(event.decision)

    async def _show_tool_result(self, event) -> None:
        card = self._cards.get(event.call_id)
        if card is not None:  # results of malformed calls repeat the error their card shows
            card.finished(event.content, event.ok, event.seconds)

    async def _show_stats(self, event) -> None:
        await self.end_blocks()
        if self._writing is not None:  # the generation ended inside a call
            self._writing.malformed("the output ended before the call was complete", "")
            self._writing = None

    async def _show_notice(self, event) -> None:
        await self.note(event.message)

    async def _show_done(self, event) -> None:
        await self.end_blocks()
        if event.stop_reason == "interrupted":
            await self.note("⏸ interrupted: the answer above is partial", "interrupted")
        elif event.stop_reason == "error":
            await self.note(f"✗ {event.message or 'the turn failed'}", "error")
        elif event.stop_reason != "answered":
            await self.note(f"■ stopped: {event.message or event.stop_reason}", "stopped")
        elif not event.answer.strip() and not self.answered.strip():
            await self.note("(the model gave an empty answer)")

    async def _card(self, call) -> ToolCard:
        card = self._cards.get(call.id)
        if card is None:
            card = await self._new_card(call.name)
            card.called(call.id, call.name, call.arguments)
            self._cards[call.id] = card
        return card

    async def _new_card(self, name: str) -> ToolCard:
        await self.end_blocks()
        card = ToolCard(name)
        await self.add(card)
        return card
