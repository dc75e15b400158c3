"""A workspace's own MCP servers file is used only after the user approves it once in the TUI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.cli.chat import _launcher
from agent.mcp_files import session_servers, workspace_servers
from agent.toolset import plan_tools
from optiq_runtime.embedded import embedded_base_path
from tests.tui.conftest import SIZE, ready, shown, wait_for
from tui import OptiqApp
from tui.screens.servers import ServersTrustScreen
from tui.widgets.transcript import Note

pytestmark = pytest.mark.anyio
SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")


def app_for(workspace: Path):
    """The app as ``optiq --workspace`` builds it (real launcher, the embedded model), and its tools."""
    (workspace / ".mcp.json").write_text(
        json.dumps({"mcpServers": {"proj": {"command": sys.executable, "args": [SERVER]}}})
    )
    args = build_parser().parse_args(["chat", "--model", str(embedded_base_path()), "--workspace", str(workspace)])
    tools = plan_tools(None, None, workspace)
    return OptiqApp(_launcher(args, tools, workspace), trust=workspace_servers(workspace)), tools


async def answer(key: str, workspace: Path):
    app, tools = app_for(workspace)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ServersTrustScreen))
            assert "proj: " + sys.executable in shown(app.screen.query_one("#servers-question"))
            assert app.agent is None  # nothing starts before the answer
            await pilot.press(key)
            await ready(pilot)
            names, notes = app.agent.registry.names(), [shown(n) for n in app.chat.query(Note)]
    finally:
        if app.agent is not None:
            app.agent.close()
        tools.close()
    return names, notes


async def test_yes_starts_the_servers_and_remembers_the_file(tmp_path):
    names, notes = await answer("y", tmp_path)
    assert "add" in names and any("approved" in note for note in notes)
    assert workspace_servers(tmp_path).approved
    assert [s.name for s in session_servers(None, tmp_path)[0]] == ["proj"]  # the next session needs no question


async def test_no_leaves_them_off_and_asks_again_next_time(tmp_path):
    names, notes = await answer("n", tmp_path)
    assert "add" not in names and any("not used this time" in note for note in notes)
    assert not workspace_servers(tmp_path).approved
