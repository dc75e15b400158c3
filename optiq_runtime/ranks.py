"""Ranks started by ``mlx.launch``: which one this process is, and small messages from rank 0 to the rest.

Every function here that takes a group is a collective: each rank of the group must call it, in the
same order, or the ranks wait on each other forever. A group of one (no ``mlx.launch``) makes each a no-op.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def world() -> mx.distributed.Group:
    """The group ``mlx.launch`` started this process in; a group of one when it runs alone."""
    return mx.distributed.init()


def launched() -> bool:
    """Whether this process is one of two or more ranks."""
    return world().size() > 1


def broadcast_bytes(data: bytes | None, group: mx.distributed.Group) -> bytes:
    """Rank 0's ``data`` on every rank (the others pass None)."""
    leader = group.rank() == 0
    mine = data if leader and data is not None else b""
    length = _sum([len(mine)], group)
    if not length:
        return b""
    payload = np.frombuffer(mine, dtype=np.uint8) if leader else np.zeros(int(length[0]), np.uint8)
    return _sum(payload.astype(np.int32), group).astype(np.uint8).tobytes()


def broadcast_flag(value: bool, group: mx.distributed.Group) -> bool:
    """Rank 0's ``value`` on every rank (what the others pass is ignored)."""
    return bool(_sum([int(value) if group.rank() == 0 else 0], group)[0])


def barrier(group: mx.distributed.Group) -> None:
    """Return once every rank of ``group`` has called it."""
    _sum([1], group)


def _sum(values, group: mx.distributed.Group) -> np.ndarray:
    summed = mx.distributed.all_sum(mx.array(np.asarray(values, dtype=np.int32)), group=group, stream=mx.cpu)
    return np.array(summed)


def count(flag: bool, group: mx.distributed.Group) -> int:
    """How many ranks of ``group`` passed True."""
    return int(_sum([int(flag)], group)[0])
