"""Keeping tool output from filling the context: cap each result, and trim old ones when the history is long.

Both say what they did in the text the model reads, so it knows output was cut and can ask again.
"""

from __future__ import annotations

from typing import Any

TOOL_OUTPUT_CHARS = 4000
TRIMMED = "[output trimmed to save context: {chars} characters; call the tool again if you need it]"


def cap_output(text: str, limit: int = TOOL_OUTPUT_CHARS) -> str:
    """``text`` whole when short, else its head and tail around a note of how much was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}"


def trim_old_results(messages: list[dict[str, Any]], excess_chars: int, keep_last: int = 2) -> int:
    """Replace the oldest tool results (all but the last ``keep_last``) until ``excess_chars`` are freed.

    Edits ``messages`` in place; returns how many results were trimmed.
    """
    tool_messages = [m for m in messages if m.get("role") == "tool" and not m.get("trimmed")]
    candidates = tool_messages[:-keep_last] if keep_last else tool_messages
    trimmed = 0
    for message in candidates:
        if excess_chars <= 0:
            break
        note = TRIMMED.format(chars=len(message["content"]))
        if len(note) >= len(message["content"]):
            continue
        excess_chars -= len(message["content"]) - len(note)
        message["content"] = note
        message["trimmed"] = True
        trimmed += 1
    return trimmed
