"""Asking before a side-effecting tool runs: requests, decisions, and the fixed policies of headless runs.

An approval callback takes an ``ApprovalRequest`` and returns an ``ApprovalDecision``; it may block
(the TUI waits for its dialog). ``ALLOW_SESSION`` lets the agent run that tool again without asking
until ``Agent.reset()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.events import ToolCall

PREVIEW_CHARS = 2000


class ApprovalDecision(StrEnum):
    ALLOW_ONCE = "once"
    ALLOW_SESSION = "session"
    DENY = "deny"


@dataclass(frozen=True)
class ApprovalRequest:
    """A validated call to a side-effecting tool, with a readable preview of what it will do."""

    call: ToolCall
    preview: str

    @property
    def tool(self) -> str:
        return self.call.name


Approver = Callable[[ApprovalRequest], ApprovalDecision]


def approve_all(request: ApprovalRequest) -> ApprovalDecision:
    """Allow every call (``--approve all``; evaluation workspaces)."""
    return ApprovalDecision.ALLOW_ONCE


def approve_none(request: ApprovalRequest) -> ApprovalDecision:
    """Deny every call (``--approve none``, the headless default)."""
    return ApprovalDecision.DENY


def approve_shell(request: ApprovalRequest) -> ApprovalDecision:
    """Allow shell commands, deny every other side effect (``--approve shell``)."""
    return ApprovalDecision.ALLOW_ONCE if request.tool == "run_shell" else ApprovalDecision.DENY


POLICIES: dict[str, Approver] = {"all": approve_all, "none": approve_none, "shell": approve_shell}


def preview(name: str, arguments: dict[str, Any]) -> str:
    """What the user reads before deciding: the tool, then each argument (strings shown raw, multi-line kept)."""
    lines = [f"{name}:"]
    for key, value in arguments.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        lines.append(f"{key}:\n{shown}" if "\n" in shown else f"{key}: {shown}")
    return _clip("\n".join(lines))


def _clip(text: str) -> str:
    return (
        text
        if len(text) <= PREVIEW_CHARS
        else text[:PREVIEW_CHARS] + f"\n[... {len(text) - PREVIEW_CHARS} more characters]"
    )
