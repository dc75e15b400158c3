"""Test-only: run plain Python, without the language layer, in a confined worker.

The fork server uses this runner only when started with ``--unrestricted-for-tests``, which only
``Sandbox(unrestricted_for_tests=True)`` passes; it lets the tests show what the OS layer stops on its
own, as if every guard had been bypassed.
"""

from __future__ import annotations

import io
import socket  # noqa: F401  imported before confinement, as a real escape would find them loaded
import subprocess  # noqa: F401
import sys
from typing import Any


def run_unrestricted(code: str, policy: Any, proxies: Any) -> dict[str, Any]:
    printed = io.StringIO()
    sys.stdout = printed
    try:
        exec(compile(code, "<unrestricted>", "exec"), {"__name__": "__unrestricted__"})
        outcome: dict[str, Any] = {"ok": True}
    except BaseException as error:  # the code's own failure is its result
        outcome = {"ok": False, "error": f"{type(error).__name__}: {error}", "error_kind": "runtime"}
    outcome["stdout"] = printed.getvalue()[: policy.output_chars]
    return outcome
