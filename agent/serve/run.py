"""A generation on the model thread, its pieces handed to the event loop as they come.

The engine is synchronous and there is one model, so every generation runs on one thread of its
own; the event loop never waits on it. The engine asks ``Hangup.is_set`` before each decode step:
a client that leaves (or a server that stops) ends its generation within one step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from agent.serve.completion import Answering, Piece


class Hangup:
    """Set once the client is gone or the server stops; readable from the loop (``event``) and the model thread."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._flag = threading.Event()

    def set(self) -> None:
        """On the loop: the client is gone."""
        self._flag.set()
        self.event.set()

    def halt(self) -> None:
        """From any thread: stop the generation at its next step."""
        self._flag.set()

    def is_set(self) -> bool:
        return self._flag.is_set()


class _End:
    def __init__(self, error: BaseException | None = None):
        self.error = error


class Run:
    """One ``Completion`` being generated; ``async for piece in run.pieces()`` on the loop, once."""

    def __init__(self, completion: Answering, hangup: Hangup, loop: asyncio.AbstractEventLoop):
        self.completion = completion
        self.hangup = hangup
        self._loop = loop
        self._channel: asyncio.Queue[Piece | _End] = asyncio.Queue()

    def generate(self, after: Callable[[Answering], None]) -> None:
        """On the model thread: run the completion to its end, then ``after(completion)``; never raises."""
        put = self._channel.put_nowait
        try:
            for piece in self.completion.pieces(should_stop=self.hangup.is_set):
                self._loop.call_soon_threadsafe(put, piece)
            after(self.completion)
        except Exception as error:  # noqa: BLE001 - handed to the loop, which answers for it
            self._loop.call_soon_threadsafe(put, _End(error))
            return
        self._loop.call_soon_threadsafe(put, _End())

    async def pieces(self) -> AsyncIterator[Piece]:
        """The pieces as they are generated; raises what the generation raised."""
        while True:
            item = await self._channel.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
