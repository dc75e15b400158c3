"""What a file tool would change, as a unified diff against the file as it is now."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from tools.builtin.files import resolve
from tools.tool import ToolContext, ToolError

DIFF_TOOLS = ("write_file", "edit_file")
MAX_LINES = 400


def proposed_diff(tool: str, arguments: dict[str, Any], workspace: Path) -> str | None:
    """The diff ``tool`` would make, or None for a tool that does not write files.

    A file that cannot be read (outside the workspace, not text) gives a one-line explanation
    instead of a diff, so the dialog still says what is about to happen.
    """
    if tool not in DIFF_TOOLS:
        return None
    path = str(arguments.get("path", ""))
    try:
        target = resolve(ToolContext(workspace=workspace), path)
        before = target.read_text(encoding="utf-8") if target.is_file() else ""
    except ToolError as error:
        return f"(no diff: {error})"
    except (OSError, UnicodeDecodeError) as error:
        return f"(no diff: cannot read '{path}': {error})"
    after = _after(tool, arguments, before)
    if after is None:
        return f"(no diff: the text to replace does not occur exactly once in '{path}')"
    return _unified(before, after, path)


def _after(tool: str, arguments: dict[str, Any], before: str) -> str | None:
    if tool == "write_file":
        return str(arguments.get("content", ""))
    old, new = str(arguments.get("old", "")), str(arguments.get("new", ""))
    if not old or before.count(old) != 1:
        return None
    return before.replace(old, new, 1)


def _unified(before: str, after: str, path: str) -> str:
    lines = list(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )
    if not lines:
        return "(no change)"
    shown = [line if line.endswith("\n") else line + "\n" for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(f"[... {len(lines) - MAX_LINES} more diff lines]\n")
    return "".join(shown).rstrip("\n")
