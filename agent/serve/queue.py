"""One generation at a time, the rest waiting in order; a full queue turns requests away at once."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from agent.serve.errors import queue_full

POLL_S = 0.25


class ClientGone(Exception):
    """The client hung up while its request waited."""


class GenerationQueue:
    """A FIFO slot: ``with queue.slot(): ...`` runs alone; at most ``max_waiting`` wait behind it."""

    def __init__(self, max_waiting: int):
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0; got {max_waiting}")
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._busy = False
        self._waiters: deque[threading.Event] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextmanager
    def slot(self, gone: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold the slot for the block; raises ``APIError`` 429 when the queue is full, ``ClientGone`` if the client leaves."""
        self._acquire(gone)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, gone: Callable[[], bool] | None) -> None:
        with self._lock:
            if not self._busy and not self._waiters:
                self._busy = True
                return
            if len(self._waiters) >= self.max_waiting:
                raise queue_full(len(self._waiters))
            turn = threading.Event()
            self._waiters.append(turn)
        while not turn.wait(POLL_S):
            if gone is not None and gone():
                self._leave(turn)
                raise ClientGone()

    def _leave(self, turn: threading.Event) -> None:
        with self._lock:
            if turn in self._waiters:
                self._waiters.remove(turn)
                return
        self._release()  # the slot was handed over just as the client left: pass it on

    def _release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()  # the slot passes straight to the next in line
            else:
                self._busy = False

