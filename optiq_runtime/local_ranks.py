"""Ranks on this machine without ``mlx.launch``: N processes of one command on MLX's ring backend.

``mlx.launch`` relays each rank's output through a thread that ``select``s on the rank's stdin pipe
for writing as well as on its output for reading; an empty pipe is always writable, so ``select``
returns at once and each thread spins. On two cores the spinning takes the time the second rank
should have had (bench/scale.py: 1.05x one process under ``mlx.launch``, 0.53x with the ranks
started directly).

This launcher gives each rank what ``mlx.launch --backend ring`` gives a local one (``MLX_RANK``;
``MLX_HOSTFILE``, a JSON file of one ``["127.0.0.1:PORT"]`` list per rank) and nothing to poll:
the ranks inherit stdout (only rank 0 prints there) and read no stdin; one thread per rank copies
its stderr line by line with blocking reads, then waits for it. Like ``mlx.launch``, when a rank
exits with an error the others get SIGTERM. SIGINT and SIGTERM sent to the launcher go to every
rank (each rank is its own process group, so a terminal's Ctrl-C reaches them once, through here).
A rank still running ``STOP_GRACE_S`` after it was told to stop (one that ignores the signal, or
hangs while it exits) is killed, so a stopped run always ends.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Set in every rank this launcher starts (to the number of ranks): a rank can tell it was started here, not by mlx.launch.
LAUNCHED_HERE = "OPTIQ_LOCAL_RANKS"
FORWARDED = (signal.SIGINT, signal.SIGTERM)
STOP_GRACE_S = 20.0
POLL_S = 0.25


def run_ranks(argv: list[str], count: int, label: str = "optiq", stop_grace_s: float = STOP_GRACE_S) -> int:
    """Run ``argv`` as ``count`` ring ranks on this machine; rank 0's exit status (128 + N when signal N ended it)."""
    with _hostfile(count) as hostfile:
        ranks = _Ranks(label, stop_grace_s)
        with _forwarding(ranks):  # before any rank starts: a signal that comes while they start is not lost
            ranks.start([_start(argv, rank, count, hostfile) for rank in range(count)])
            codes = ranks.wait()
    return _exit_status(codes[0])


def ring_hostfile(ports: list[int]) -> str:
    """The ring backend's hostfile (``MLX_HOSTFILE``) for one local rank per port."""
    return json.dumps([[f"127.0.0.1:{port}"] for port in ports])


@contextmanager
def _hostfile(count: int) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="optiq-ranks-") as folder:
        path = Path(folder) / "hosts.json"
        path.write_text(ring_hostfile(free_ports(count)))
        yield path


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports the system had free a moment ago (each rank listens on its own)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(argv: list[str], rank: int, count: int, hostfile: Path) -> subprocess.Popen:
    env = {**os.environ, "MLX_RANK": str(rank), "MLX_HOSTFILE": str(hostfile), LAUNCHED_HERE: str(count)}
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, process_group=0)


class _Ranks:
    """The running ranks: their stderr copied here, their exit codes collected, signals sent to those still running."""

    def __init__(self, label: str, stop_grace_s: float = STOP_GRACE_S):
        self.processes: list[subprocess.Popen] = []
        self.label = label
        self.stop_grace_s = stop_grace_s
        self.stopping = False
        self._kill_at: float | None = None  # when ranks told to stop and still running are killed
        self._received: int | None = None  # a signal forwarded before every rank had started
        self._finished: queue.Queue[tuple[int, int]] = queue.Queue()
        self._lock = threading.Lock()

    def start(self, processes: list[subprocess.Popen]) -> None:
        """Watch the started ranks; a signal received while they started is sent to them now."""
        self.processes = processes
        for rank in range(len(processes)):
            threading.Thread(target=self._relay, args=(rank,), daemon=True).start()
        if self._received is not None:
            self.signal(self._received)

    def _relay(self, rank: int) -> None:
        """Copy the rank's stderr lines (those of ranks other than 0 prefixed), then report its exit code."""
        process = self.processes[rank]
        assert process.stderr is not None  # started with stderr=PIPE
        prefix = b"" if rank == 0 else f"rank {rank}: ".encode()
        for line in iter(process.stderr.readline, b""):
            with self._lock:
                sys.stderr.buffer.write(prefix + line)
                sys.stderr.buffer.flush()
        self._finished.put((rank, process.wait()))

    def wait(self) -> dict[int, int]:
        """Each rank's exit code; a rank that fails first stops the ones still running."""
        codes: dict[int, int] = {}
        while len(codes) < len(self.processes):
            try:  # a short wait: a signal's handler runs in this thread and may set a deadline meanwhile
                rank, code = self._finished.get(timeout=POLL_S)
            except queue.Empty:
                if self._kill_at is not None and time.monotonic() >= self._kill_at:
                    self._kill_the_rest()
                continue
            codes[rank] = code
            if code != 0 and not self.stopping and self.running():
                with self._lock:
                    sys.stderr.write(f"{self.label}: rank {rank} {_describe(code)}; stopping the other ranks\n")
                    sys.stderr.flush()
                self.signal(signal.SIGTERM)
        return codes

    def _kill_the_rest(self) -> None:
        self._kill_at = None
        with self._lock:
            sys.stderr.write(
                f"{self.label}: ranks still running {self.stop_grace_s:g} s after the stop; killing them\n"
            )
            sys.stderr.flush()
        for process in self.running():
            process.kill()

    def running(self) -> list[subprocess.Popen]:
        return [p for p in self.processes if p.poll() is None]

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every rank still running; no rank failing after it is reported as the first."""
        self.stopping = True
        self._received = signum
        if self._kill_at is None and self.processes:
            self._kill_at = time.monotonic() + self.stop_grace_s
        for process in self.running():
            try:
                process.send_signal(signum)
            except ProcessLookupError:  # it ended between poll and kill
                pass


@contextmanager
def _forwarding(ranks: _Ranks) -> Iterator[None]:
    """While the ranks run, SIGINT and SIGTERM sent here go to each of them instead."""
    previous = {sig: signal.signal(sig, lambda signum, frame: ranks.signal(signum)) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _describe(code: int) -> str:
    return f"was ended by signal {-code}" if code < 0 else f"exited with status {code}"


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code
