"""Compile and run one snippet under the guards, inside an already confined worker."""

from __future__ import annotations

import ast
import random
import traceback
from typing import Any

from RestrictedPython import compile_restricted_eval, compile_restricted_exec

from sandbox.guards import ModuleProxy, OutputLimit, PolicyViolation, Printed, make_globals
from sandbox.policy import Policy

FILENAME = "<sandbox>"


class Refused(Exception):
    """The snippet did not compile: ``kind`` is "syntax" or "policy"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def clean(text: str, cap: int) -> str:
    """``text`` cut to ``cap`` characters and made valid UTF-8 (lone surrogates escaped)."""
    text = str.__str__(text)  # a str subclass from code's __repr__ becomes a plain str: no code methods below
    text = text if len(text) <= cap else text[:cap] + f"... [cut at {cap} characters]"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def compile_snippet(code: str) -> tuple[Any, Any]:
    """The snippet's body and, when it ends with an expression statement, that expression."""
    try:
        tree = ast.parse(code, FILENAME, "exec")
    except SyntaxError as error:
        raise Refused("syntax", f"SyntaxError: {error.msg} (line {error.lineno})") from None
    except (RecursionError, MemoryError, ValueError) as error:
        raise Refused(
            "syntax", f"SyntaxError: code is nested too deeply or malformed ({type(error).__name__})"
        ) from None
    last = None
    if tree.body and isinstance(final := tree.body[-1], ast.Expr):
        tree.body.pop()
        last = ast.Expression(final.value)
    return _restricted(compile_restricted_exec, tree), last and _restricted(compile_restricted_eval, last)


def _restricted(compiler: Any, tree: ast.AST) -> Any:
    try:
        result = compiler(tree, FILENAME)
    except SyntaxError as error:  # what only the compiler catches, like 'return' outside a function
        raise Refused("syntax", f"SyntaxError: {error.msg} (line {error.lineno})") from None
    except (RecursionError, MemoryError) as error:
        raise Refused("syntax", f"SyntaxError: code is nested too deeply ({type(error).__name__})") from None
    if result.errors:
        kind = "syntax" if all("SyntaxError" in e for e in result.errors) else "policy"
        raise Refused(kind, "; ".join(_plain(e) for e in result.errors))
    return result.code


def _plain(error: str) -> str:
    # RestrictedPython words errors as "Line 3: <message>"; say it the way runtime errors do.
    head, sep, message = error.partition(": ")
    if sep and head.startswith("Line ") and head[5:].isdigit():
        return f"{message} (line {head[5:]})"
    return error


def error_line(error: BaseException) -> int | None:
    """The line of the snippet where ``error`` was raised (the innermost snippet frame)."""
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == FILENAME:
            line = lineno
    return line


def describe(error: BaseException) -> str:
    try:
        text = str.__str__(str(error))  # code's __str__ may return a str subclass or raise anything
    except BaseException:
        text = "<unprintable>"
    line = error_line(error)
    where = f" (line {line})" if line else ""
    if isinstance(error, PolicyViolation):
        return f"{text}{where}"
    return f"{type(error).__name__}: {text}{where}" if text else f"{type(error).__name__}{where}"


def kind_of(error: BaseException) -> str:
    if isinstance(error, PolicyViolation):
        return "policy"
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, OutputLimit):
        return "output_limit"
    return "runtime"


def run_snippet(code: str, policy: Policy, proxies: dict[str, ModuleProxy]) -> dict[str, Any]:
    """Run ``code`` and describe the outcome as the fields of a ``RunResult``."""
    random.seed()  # every worker is forked from one parent; don't share its random state
    printed = Printed(policy.output_chars)
    try:
        body, last = compile_snippet(code)
    except Refused as refused:
        return {"ok": False, "error": str(refused), "error_kind": refused.kind}
    ballast = bytearray(4 << 20)  # freed on MemoryError so the report itself has room
    namespace = make_globals(proxies, printed)
    outcome: dict[str, Any] = {"ok": True}
    try:
        exec(body, namespace)
        if last is not None:
            value = eval(last, namespace)
            if value is not None:
                outcome["value"] = clean(repr(value), policy.value_chars)
    except BaseException as error:  # the snippet's own SystemExit etc. are its errors, not ours
        del ballast
        namespace.clear()
        outcome = {"ok": False, "error": describe(error), "error_kind": kind_of(error)}
        if outcome["error_kind"] == "memory":
            outcome["error"] = f"MemoryError: used more than the memory limit of {policy.memory_bytes >> 20} MiB" + (
                f" (line {error_line(error)})" if error_line(error) else ""
            )
    if printed.overflow:
        outcome = {
            "ok": False,
            "error": f"output passed the limit of {policy.output_chars} characters; the first part is kept",
            "error_kind": "output_limit",
        }
    outcome["stdout"] = clean(printed(), policy.output_chars)
    return outcome
