"""File tools confined to the workspace: read, write, edit, list and search.

Every path is taken relative to ``ctx.workspace`` and resolved, symlinks included, before use;
anything that resolves outside the workspace is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.tool import Tool, ToolContext, ToolError

READ_CHARS = 20_000
LIST_ENTRIES = 200
SEARCH_MATCHES = 50
SEARCH_LINE_CHARS = 200
SEARCH_FILE_BYTES = 1 << 20
WRITE_CHARS = 1_000_000


def resolve(ctx: ToolContext, path: str) -> Path:
    """``path`` inside the workspace, resolved; a ToolError if it lies outside."""
    root = Path(ctx.workspace).resolve()
    try:
        target = (root / path).resolve()
    except (ValueError, OSError) as error:
        raise ToolError(f"path '{path}' is not valid: {error}") from None
    if target != root and root not in target.parents:
        raise ToolError(f"path '{path}' is outside the workspace")
    return target


def _shown(ctx: ToolContext, target: Path) -> str:
    relative = target.relative_to(Path(ctx.workspace).resolve())
    return str(relative) if str(relative) != "." else "."


def _read_text(target: Path, path: str) -> str:
    if not target.exists():
        raise ToolError(f"file '{path}' does not exist")
    if target.is_dir():
        raise ToolError(f"'{path}' is a directory; use list_dir")
    try:
        return target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"file '{path}' is not UTF-8 text") from None
    except OSError as error:
        raise ToolError(f"could not read '{path}': {error.strerror}") from None


class ReadFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace.")


def read_file(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = ReadFileArgs(**arguments)
    text = _read_text(resolve(ctx, args.path), args.path)
    if len(text) > READ_CHARS:
        return text[:READ_CHARS] + f"\n... [cut: showing {READ_CHARS} of {len(text)} characters]"
    return text


class WriteFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace; folders are created.")
    content: str = Field(description="The whole new content of the file.", max_length=WRITE_CHARS)


def write_file(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = WriteFileArgs(**arguments)
    target = resolve(ctx, args.path)
    if target.is_dir():
        raise ToolError(f"'{args.path}' is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(args.content, encoding="utf-8")
    except OSError as error:
        raise ToolError(f"could not write '{args.path}': {error.strerror}") from None
    return f"wrote {len(args.content)} characters to {_shown(ctx, target)}"


class EditFileArgs(BaseModel):
    path: str = Field(description="File path relative to the workspace.")
    old: str = Field(description="Exact text to replace; it must occur exactly once in the file.")
    new: str = Field(description="Text to put in its place.")


def edit_file(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = EditFileArgs(**arguments)
    target = resolve(ctx, args.path)
    text = _read_text(target, args.path)
    if not args.old:
        raise ToolError("'old' is empty; give the exact text to replace")
    count = text.count(args.old)
    if count == 0:
        raise ToolError(f"the text to replace was not found in '{args.path}'; read the file and copy it exactly")
    if count > 1:
        raise ToolError(
            f"the text to replace occurs {count} times in '{args.path}'; include more lines to make it unique"
        )
    target.write_text(text.replace(args.old, args.new, 1), encoding="utf-8")
    return f"edited {_shown(ctx, target)}: replaced 1 occurrence"


class ListDirArgs(BaseModel):
    path: str = Field(default=".", description="Folder path relative to the workspace.")


def list_dir(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = ListDirArgs(**arguments)
    target = resolve(ctx, args.path)
    if not target.is_dir():
        raise ToolError(f"'{args.path}' is not a folder" if target.exists() else f"folder '{args.path}' does not exist")
    entries = sorted(target.iterdir(), key=lambda p: p.name)
    lines = [entry.name + ("/" if entry.is_dir() else "") for entry in entries[:LIST_ENTRIES]]
    if len(entries) > LIST_ENTRIES:
        lines.append(f"... [{len(entries) - LIST_ENTRIES} more entries]")
    return "\n".join(lines) or "(empty folder)"


class SearchFilesArgs(BaseModel):
    pattern: str = Field(description="Plain text to look for (not a regular expression).", min_length=1)
    path: str = Field(default=".", description="Folder (or file) to search, relative to the workspace.")


def search_files(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = SearchFilesArgs(**arguments)
    target = resolve(ctx, args.path)
    if not target.exists():
        raise ToolError(f"'{args.path}' does not exist")
    matches: list[str] = []
    for file in _files_under(ctx, target):
        for number, line in _matching_lines(file, args.pattern):
            if len(matches) == SEARCH_MATCHES:
                matches.append(f"... [stopped at {SEARCH_MATCHES} matches; narrow the pattern or path]")
                return "\n".join(matches)
            matches.append(f"{_shown(ctx, file)}:{number}: {line.strip()[:SEARCH_LINE_CHARS]}")
    return "\n".join(matches) or f"no matches for '{args.pattern}'"


def _files_under(ctx: ToolContext, target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    found = []
    for folder, dirs, files in os.walk(target):  # does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            try:
                found.append(resolve(ctx, str(path)))
            except ToolError:
                continue  # a symlink pointing out of the workspace: skipped, never read
    return found


def _matching_lines(file: Path, pattern: str) -> list[tuple[int, str]]:
    try:
        if file.stat().st_size > SEARCH_FILE_BYTES:
            return []
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []  # unreadable or binary files are not text to search
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if pattern in line]


def file_tools() -> list[Tool]:
    """read_file, write_file, edit_file, list_dir, search_files."""
    return [
        Tool.from_model("read_file", "Read a UTF-8 text file in the workspace.", ReadFileArgs, read_file),
        Tool.from_model(
            "write_file",
            "Create or overwrite a text file in the workspace with the given content.",
            WriteFileArgs,
            write_file,
            side_effects=True,
        ),
        Tool.from_model(
            "edit_file",
            "Replace one exact, unique snippet of a file in the workspace with new text.",
            EditFileArgs,
            edit_file,
            side_effects=True,
        ),
        Tool.from_model("list_dir", "List a folder in the workspace; folders end with '/'.", ListDirArgs, list_dir),
        Tool.from_model(
            "search_files",
            "Find lines containing plain text in the workspace's files; answers 'file:line: text'.",
            SearchFilesArgs,
            search_files,
        ),
    ]
