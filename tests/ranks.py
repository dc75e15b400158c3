"""Running a command as two local ranks with ``mlx.launch --backend ring``, as the tests of scale-out do."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

LAUNCH = Path(sys.executable).with_name("mlx.launch")


def free_ports(count: int = 2) -> int:
    """A first port of ``count`` consecutive free ones (ring ranks listen on port, port + 1, ...)."""
    for _ in range(50):
        first = random.randint(20000, 60000)
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no free ports for mlx.launch")


def launch_argv(*args: str, ranks: int = 2) -> list[str]:
    """``mlx.launch`` starting ``python ARGS`` as ``ranks`` local ranks on the ring backend."""
    return [
        str(LAUNCH),
        "-n",
        str(ranks),
        "--backend",
        "ring",
        "-p",
        str(free_ports(ranks)),
        "--python",
        sys.executable,
        *args,
    ]


def launch(*args: str, ranks: int = 2, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(launch_argv(*args, ranks=ranks), capture_output=True, text=True, timeout=timeout, **kwargs)
