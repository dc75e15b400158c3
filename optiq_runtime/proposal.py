"""What one MTP round proposes to emit, and how the caller keeps part of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def accepted_prefix(drafts: list[int], targets: list[int]) -> int:
    """How many leading drafts the main model agrees with (greedy)."""
    for i, (draft, target) in enumerate(zip(drafts, targets)):
        if draft != target:
            return i
    return len(drafts)


@dataclass
class Proposal:
    """The tokens one round produced; ``commit(n)`` keeps the caches for the first ``n`` of them."""

    tokens: list[int]
    accepted: int
    drafted: int
    commit: Callable[[int], None]
