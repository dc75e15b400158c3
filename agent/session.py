"""Sessions as JSONL traces: one agent event per line, under the user's data folder.

The folder is ``$OPTIQ_HOME/sessions`` when ``OPTIQ_HOME`` is set, else
``$XDG_DATA_HOME/optiq/sessions``, else ``~/.local/share/optiq/sessions``. A trace reads back into
the same pydantic events (``load_trace``), so it can be replayed through any consumer of the live
events, or exported as Markdown (``export_markdown``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pydantic import TypeAdapter

from agent.events import AgentEvent

_EVENTS: TypeAdapter = TypeAdapter(AgentEvent)


def sessions_dir() -> Path:
    """Where traces are saved (not created)."""
    if explicit := os.environ.get("OPTIQ_HOME"):
        return Path(explicit).expanduser() / "sessions"
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg).expanduser() / "optiq" / "sessions"
    return Path.home() / ".local" / "share" / "optiq" / "sessions"


def new_session_path(folder: Path | None = None) -> Path:
    """A fresh trace path named by the local time, unique within the folder."""
    folder = folder or sessions_dir()
    stem = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"{stem}.jsonl", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.jsonl"
    return path


class SessionWriter:
    """Appends events to a trace file, one JSON line each, flushed as they come."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, event) -> None:
        if self._file is None:
            raise ValueError(f"the trace {self.path} is closed")
        self._file.write(event.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_event(line: str):
    """One trace line as its event model."""
    return _EVENTS.validate_json(line)


def load_trace(path: Path) -> list:
    """Every event of a trace file, in order; a malformed line is a ``ValueError`` naming it."""
    events = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not an agent event ({error})") from error
    return events


def replay(path: Path) -> Iterator:
    """The events of a saved session, as ``Agent.send`` yielded them."""
    yield from load_trace(path)


def export_markdown(events: Iterable) -> str:
    """A readable transcript: requests, answers, tool calls and their results."""
    parts: list[str] = []
    answer: list[str] = []

    def flush_answer() -> None:
        if "".join(answer).strip():
            parts.append("**Assistant:** " + "".join(answer).strip())
        answer.clear()

    for event in events:
        if event.type == "text":
            answer.append(event.text)
            continue
        if event.type in ("user", "tool_call", "tool_result", "tool_rejected", "done"):
            flush_answer()
        if event.type == "user":
            parts.append(f"**User:** {event.text}")
        elif event.type == "tool_call":
            parts.append(f"**Tool call** `{event.call.name}` `{event.call.model_dump_json(include={'arguments'})}`")
        elif event.type == "tool_result":
            parts.append(f"**Result** ({event.name}{'' if event.ok else ', failed'}):\n```\n{event.content}\n```")
        elif event.type == "tool_rejected":
            parts.append(f"**Rejected** `{event.call.name}` ({event.reason}): {'; '.join(event.errors)}")
        elif event.type == "done":
            parts.append(f"*{event.stop_reason}: {event.steps} steps, {event.tokens} tokens, {event.seconds:.1f} s*")
    flush_answer()
    return "\n\n".join(parts) + "\n"
