"""The listening side: uvicorn serving the app on a socket bound when the ``Server`` is made.

One event loop holds every connection (an idle or slow client costs a socket, not a thread);
the listen backlog is large, so a burst of clients waits in the kernel's queue and is answered,
200 or 429, instead of being reset. Idle keep-alive connections close after
``ServeConfig.keep_alive_s``; request bodies and answers have their own timeouts (see ``app``
and ``answer``).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from agent.engine import Engine
from agent.serve.app import create_app
from agent.serve.service import ServeConfig, Service
from optiq_runtime.errors import BadInputError

BACKLOG = 2048  # the kernel caps it at net.core.somaxconn
SHUTDOWN_GRACE_S = 3  # running generations are stopped at once; this bounds the rest of a shutdown


class Server:
    """An OpenAI- and Anthropic-compatible server for one engine; ``start()`` runs it in a thread, ``serve_forever()`` in this one."""

    def __init__(self, engine: Engine, config: ServeConfig | None = None, tools: Any = None):
        self.config = config or ServeConfig()
        self.service = Service(engine, self.config, tools)
        self._socket = _listen(self.config.host, self.config.port)
        settings = uvicorn.Config(
            create_app(self.service),
            lifespan="off",
            log_config=None,
            access_log=False,
            backlog=BACKLOG,
            timeout_keep_alive=self.config.keep_alive_s,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            server_header=False,
        )
        self._uvicorn = uvicorn.Server(settings)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until ``close()`` or, in the main thread, Ctrl-C (then ``KeyboardInterrupt``)."""
        try:
            self._uvicorn.run(sockets=[self._socket])
        finally:
            self.service.stop()

    def start(self) -> Server:
        self._thread = threading.Thread(target=self.serve_forever, name="optiq-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def close(self) -> None:
        """Stop serving (running generations stop at their next step) and release the port."""
        self.service.stop()
        if self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(timeout=SHUTDOWN_GRACE_S + 5)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise BadInputError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port (0: any free one)"
        ) from None
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock
