"""One generation at a time, the rest waiting in order; a full queue turns requests away at once.

Lives on the server's event loop (no locks: every call runs on that one thread). The slot is
taken with ``acquire`` and given back with ``release``, which the server calls when the model
thread is done with a generation, not when the client has read the answer: a slow reader does
not hold up the model.
"""

from __future__ import annotations

import asyncio
from collections import deque

from agent.serve.errors import queue_full


class ClientGone(Exception):
    """The client hung up while its request waited."""


class GenerationQueue:
    """A FIFO slot: at most one holder, at most ``max_waiting`` waiting behind it."""

    def __init__(self, max_waiting: int):
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0; got {max_waiting}")
        self.max_waiting = max_waiting
        self.busy = False
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, gone: asyncio.Event) -> None:
        """Take the slot; ``APIError`` 429 at once when the queue is full, ``ClientGone`` when ``gone`` is set first."""
        if not self.busy and not self._waiters:
            self.busy = True
            return
        if len(self._waiters) >= self.max_waiting:
            raise queue_full(len(self._waiters))
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        hangup = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({turn, hangup}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (the server is stopping): leave the line as if gone
            self._leave(turn)
            raise
        finally:
            hangup.cancel()
        if gone.is_set():
            self._leave(turn)
            raise ClientGone()

    def release(self) -> None:
        """Pass the slot to the next in line, or free it."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy = False

    def _leave(self, turn: asyncio.Future) -> None:
        if turn.done() and not turn.cancelled():
            self.release()  # the slot was handed over just as the client left: pass it on
        else:
            turn.cancel()
            if turn in self._waiters:
                self._waiters.remove(turn)
