"""The ``run_python`` tool: model-written code in the sandbox, its outcome as compact text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tools.tool import Tool, ToolContext

RESULT_CHARS = 8_000

DESCRIPTION = (
    "Run Python code in a sandbox and return what it printed and the value of its last line. "
    "Use it for arithmetic, data processing and checking logic. Allowed imports: math, cmath, "
    "statistics, json, re, datetime, decimal, fractions, random, itertools, functools, "
    "collections, string, textwrap, heapq, bisect. No files, network or other modules; names "
    "starting with '_' are not allowed. Each call starts fresh: define everything you use."
)


class RunPythonArgs(BaseModel):
    code: str = Field(description="Python source to run; the value of a final expression is shown.")


def render(result: Any) -> str:
    """A run's outcome in the form a small model reads best: output, value, then the error."""
    parts = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.value is not None:
        parts.append(result.value)
    if result.error:
        parts.append(f"Error ({result.error_kind}): {result.error}")
    text = "\n".join(parts) or "(no output)"
    if len(text) > RESULT_CHARS:
        text = text[:RESULT_CHARS] + f"\n... [cut at {RESULT_CHARS} characters]"
    return text


def run_python(arguments: dict[str, Any], ctx: ToolContext) -> str:
    args = RunPythonArgs(**arguments)
    if ctx.sandbox is None:
        from sandbox import Sandbox  # started on first use: the fork server costs a process

        ctx.sandbox = Sandbox()
    return render(ctx.sandbox.run(args.code))


def run_python_tool() -> Tool:
    return Tool.from_model("run_python", DESCRIPTION, RunPythonArgs, run_python, sandboxed=True)
