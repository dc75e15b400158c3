"""The ``run_shell`` tool: one ``/bin/sh -c`` command in the sandbox's OS layer, in the workspace.

Every command asks for approval, except those on a small read-only allow-list (``ls``, ``cat``,
``grep``, ``git status``, ``git diff`` ...). Those also run with the workspace made read-only by
one more Landlock layer, so a parsing gap or a repository hook cannot turn one into a write.
"""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import BaseModel, Field

from tools.tool import Tool, ToolContext, ToolError

RESULT_CHARS = 8_000

DESCRIPTION = (
    "Run a shell command (/bin/sh -c) in the workspace folder and return its exit code and output. "
    "Use it to list, search and inspect files, run tests and build tools, and check your edits "
    "(git status, git diff). No network; nothing outside the workspace can be written, and outside it only "
    "the system's programs and libraries can be read."
)

# Read-only programs, and for git the read-only subcommands; every other command asks first.
READ_ONLY_PROGRAMS = frozenset(
    {
        "ls",
        "cat",
        "head",
        "tail",
        "wc",
        "grep",
        "egrep",
        "fgrep",
        "pwd",
        "echo",
        "stat",
        "du",
        "diff",
        "cmp",
        "nl",
        "basename",
        "dirname",
        "realpath",
        "which",
        "true",
        "false",
    }
)
READ_ONLY_GIT = frozenset({"status", "diff", "log", "show", "ls-files", "rev-parse", "blame"})
# Characters that let a command do more than run one program with plain arguments: separators,
# pipes, redirections, substitutions, expansions, escapes, history and comments.
_SHELL_SYNTAX = frozenset(";&|<>$`(){}[]\\!#~*?\n\r\t")
# Options that write a file or run another program (git's external diff and text filters, pagers).
_WRITING_OPTIONS = ("--output", "-o", "--ext-diff", "--textconv", "--exec", "--open-files-in-pager", "-O")


class RunShellArgs(BaseModel):
    command: str = Field(description="The shell command line, run with /bin/sh -c in the workspace.", min_length=1)


def read_only(command: str) -> bool:
    """Whether ``command`` is one read-only program with plain arguments (runs without approval)."""
    if any(ch in _SHELL_SYNTAX for ch in command):
        return False
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes
        return False
    if not words or any(_writes(word) for word in words[1:]):
        return False
    if words[0] == "git":
        return len(words) > 1 and words[1] in READ_ONLY_GIT
    return words[0] in READ_ONLY_PROGRAMS


def _writes(word: str) -> bool:
    return any(
        word == option or word.startswith(option + "=") or (option.startswith("--") and word.startswith(option))
        for option in _WRITING_OPTIONS
    )


def needs_approval(arguments: dict[str, Any]) -> bool:
    command = arguments.get("command")
    return not (isinstance(command, str) and read_only(command))


def render(result: Any) -> str:
    """Exit code, then stdout and stderr, then why the sandbox stopped it; cut to RESULT_CHARS."""
    status = "killed" if result.exit_code is None else f"exit code {result.exit_code}"
    parts = [status]
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if result.error:
        parts.append(f"Error ({result.error_kind}): {result.error}")
    text = "\n".join(parts)
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + f"\n... [cut at {RESULT_CHARS} characters]"
    return text


def run_shell(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = RunShellArgs(**arguments)
    if ctx.sandbox is None:
        from sandbox import Sandbox

        ctx.sandbox = Sandbox(workspace=ctx.workspace)
    result = ctx.sandbox.run_command(args.command, read_only=read_only(args.command))
    if result.error_kind == "unavailable":
        raise ToolError(result.error)
    return render(result)


def run_shell_tool() -> Tool:
    return Tool.from_model(
        "run_shell", DESCRIPTION, RunShellArgs, run_shell, side_effects=True, sandboxed=True, asks=needs_approval
    )
