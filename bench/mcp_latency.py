"""What an MCP tool call adds over a built-in tool's, through the agent's own tool path.

Each call goes the way the agent sends one: ``validate_call`` against the registry, then
``ToolRunner.execute`` (the handler; for the MCP tool, a request to the server over stdio and its
answer, via the hub's event-loop thread). Both tools return the same small text: the built-in
``read_file`` reads it from a file in the workspace, the MCP server's ``echo`` (tests/tools/mcp_server.py,
the official SDK's MCPServer) sends it back. Calls alternate, so machine load hits both alike.
Goal (issue 21): the MCP median at most 20 ms above the built-in's.

Run: python bench/mcp_latency.py [--calls 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.toolrun import ToolRunner  # noqa: E402
from tools.builtin import builtin_tools  # noqa: E402
from tools.mcp import McpHub, ServerSpec, hub_tools  # noqa: E402
from tools.registry import Registry  # noqa: E402
from tools.validate import validate_call  # noqa: E402

GOAL_MS = 20.0
TEXT = "the quick brown fox jumps over the lazy dog\n" * 4


def round_trip(registry: Registry, runner: ToolRunner, name: str, arguments: dict) -> float:
    """Seconds for one validated call and its result."""
    start = time.perf_counter()
    validation = validate_call({"name": name, "arguments": arguments}, registry)
    content, ok = runner.execute(registry.get(name), validation.arguments)
    elapsed = time.perf_counter() - start
    assert validation.ok and ok and content.strip() == TEXT.strip(), (validation.errors, content)
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each tool (default 300)")
    args = parser.parse_args()
    server = ServerSpec(
        name="bench", command=sys.executable, args=(str(ROOT / "tests" / "tools" / "mcp_server.py"),), approval="allow"
    )
    with tempfile.TemporaryDirectory() as folder, McpHub() as hub:
        workspace = Path(folder)
        (workspace / "text.txt").write_text(TEXT)
        started = time.perf_counter()
        servers = hub.start([server])
        print(f"server started and listed its tools in {(time.perf_counter() - started) * 1000:.0f} ms")
        registry = Registry(builtin_tools())
        for tool in hub_tools(servers, hub, registry.names(), print):
            registry.add(tool)
        runner = ToolRunner(workspace)
        calls = {"builtin read_file": ("read_file", {"path": "text.txt"}), "mcp echo": ("echo", {"text": TEXT})}
        times: dict[str, list[float]] = {label: [] for label in calls}
        for _ in range(10):  # warm-up: imports, validator caches, the server's first requests
            for name, arguments in calls.values():
                round_trip(registry, runner, name, arguments)
        for _ in range(args.calls):
            for label, (name, arguments) in calls.items():
                times[label].append(round_trip(registry, runner, name, arguments))
        runner.close()
    for label, values in times.items():
        ms = [v * 1000 for v in values]
        print(
            f"{label:<18} median {statistics.median(ms):7.3f} ms   p90 {percentile(ms, 0.9):7.3f} ms   ({len(ms)} calls)"
        )
    added = (statistics.median(times["mcp echo"]) - statistics.median(times["builtin read_file"])) * 1000
    verdict = "met" if added <= GOAL_MS else "NOT met"
    print(f"MCP adds {added:.3f} ms per call over the built-in (goal: at most {GOAL_MS:g} ms): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
