"""Messages that carry the agent's work from worker threads to the screens."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from optiq_runtime.progress import ProgressEvent


class AgentEvent(Message):
    """One event of ``Agent.send``, as the agent yielded it."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class AgentEvents(Message):
    """Events are waiting in the chat screen's inbox (posted once per batch, not per token)."""


class TurnEnded(Message):
    """The worker running a turn has returned; ``error`` is set when the turn raised."""

    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.error = error


class BuildProgress(Message):
    """A step of the first-run build (or of loading the model)."""

    def __init__(self, progress: ProgressEvent) -> None:
        super().__init__()
        self.progress = progress


class BuildLog(Message):
    """A line the build says (what it builds, from what)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class AgentReady(Message):
    """The model is loaded and the agent can take requests."""

    def __init__(self, agent: Any) -> None:
        super().__init__()
        self.agent = agent


class LoadFailed(Message):
    """The model could not be built or loaded; ``error`` says why, for the user."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error
