"""Latency of a sandboxed ``print(1 + 1)``: warm (fork server up) and cold (new Sandbox); and of a
confined shell command ``true`` (``Sandbox.run_command``), warm; and warm Python without the OS layer
("bare"), for its cost. Prints the OS layers it ran under.

Run: python bench/sandbox_latency.py [--warm N] [--cold N] [--shell N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from sandbox import Sandbox, confinement

CODE = "print(1 + 1)"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def warm(runs: int, os_layer: bool = True) -> list[float]:
    with Sandbox(os_layer=os_layer) as box:
        box.run(CODE)  # start-up is the cold case's, not this one's
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            result = box.run(CODE)
            times.append(time.perf_counter() - start)
            assert result.ok and result.stdout == "2\n", result
    return times


def shell(runs: int) -> list[float]:
    with Sandbox() as box:
        box.run_command("true")
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            result = box.run_command("true")
            times.append(time.perf_counter() - start)
            assert result.ok, result
    return times


def cold(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with Sandbox() as box:
            result = box.run(CODE)
        times.append(time.perf_counter() - start)
        assert result.ok, result
    return times


def report(name: str, times: list[float]) -> tuple[float, float]:
    median, p95 = statistics.median(times) * 1000, percentile(times, 0.95) * 1000
    print(f"{name:5s} n={len(times):4d}  median {median:7.1f} ms  p95 {p95:7.1f} ms")
    return median, p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--cold", type=int, default=10)
    parser.add_argument("--shell", type=int, default=200)
    args = parser.parse_args()
    print("confinement:", confinement())
    warm_median, _ = report("warm", warm(args.warm))
    bare_median, _ = report("bare", warm(args.warm, os_layer=False))
    cold_median, _ = report("cold", cold(args.cold))
    shell_median, _ = report("shell", shell(args.shell))
    print(
        f"cold / warm median: {cold_median / warm_median:.1f}x; "
        f"warm with / without the OS layer: {warm_median / bare_median:.2f}x"
    )
    print(
        f"run_python warm median {warm_median:.1f} ms (goal < 30 ms); "
        f"run_shell 'true' median {shell_median:.1f} ms (goal < 50 ms)"
    )


if __name__ == "__main__":
    main()
