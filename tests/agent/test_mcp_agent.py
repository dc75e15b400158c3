"""The agent loop calling a real MCP server (tests/tools/mcp_server.py over stdio), and which servers files a session uses.

The model's side is scripted (tests/tui/scripted.py) so each test makes the call it needs; the
parser, validation, approval, the MCP client and the server process are real.
"""

import json
import sys
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.approval import approve_all, approve_none
from agent.mcp_files import approvals_file, session_servers, user_file, workspace_servers
from agent.toolset import SessionTools, plan_tools
from optiq_runtime.errors import BadInputError
from tests.tui.scripted import ScriptedEngine, call
from tools.builtin import builtin_tools
from tools.registry import Registry

SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")


def servers_file(path: Path, **servers) -> Path:
    entries = {name: {"command": sys.executable, "args": [SERVER], **extra} for name, extra in servers.items()}
    path.write_text(json.dumps({"mcpServers": entries}))
    return path


@pytest.fixture
def session(tmp_path):
    """``session(approval)`` -> started SessionTools with server 't' (built-ins beside it); stopped after the test."""
    opened: list[SessionTools] = []
    lines: list[str] = []

    def start(approval="allow", **more) -> SessionTools:
        path = servers_file(tmp_path / "servers.json", t={"approval": approval}, **more)
        tools = plan_tools(None, [str(path)], tmp_path).start(report=lines.append)
        tools.lines = lines
        opened.append(tools)
        return tools

    yield start
    for tools in opened:
        tools.close()


def run(tools: SessionTools, workspace: Path, replies: list[str], approve=approve_none):
    with Agent(ScriptedEngine(replies), tools.registry, workspace, approve) as agent:
        return list(agent.send("do it"))


def results(events):
    return [e for e in events if e.type == "tool_result"]


def test_the_model_calls_an_mcp_tool_and_its_result_goes_back(session, tmp_path):
    tools = session("allow")
    events = run(tools, tmp_path, [call("add", a="2", b="40"), "It is 42."])
    [validated] = [e for e in events if e.type == "tool_validated"]
    assert validated.call.arguments == {"a": 2, "b": 40}  # coerced by the server's schema before it was sent
    [result] = results(events)
    assert result.ok and result.name == "add" and result.content == "42"
    assert events[-1].answer == "It is 42." and events[-1].stop_reason == "answered"
    assert not any(e.type == "approval_request" for e in events)  # approval "allow"


def test_a_server_set_to_ask_needs_approval(session, tmp_path):
    tools = session("ask")
    denied = run(tools, tmp_path, [call("record", path=str(tmp_path / "log"), text="hi"), "ok"], approve_none)
    assert [e.reason for e in denied if e.type == "tool_rejected"] == ["denied"]
    assert not (tmp_path / "log").exists()
    allowed = run(tools, tmp_path, [call("record", path=str(tmp_path / "log"), text="hi"), "ok"], approve_all)
    assert any(e.type == "approval_request" for e in allowed)
    assert results(allowed)[0].content == "recorded hi" and (tmp_path / "log").read_text() == "hi\n"


def test_invalid_arguments_never_reach_the_server(session, tmp_path):
    tools = session("allow")
    events = run(tools, tmp_path, [call("record", path=str(tmp_path / "log")), "ok"])
    [rejected] = [e for e in events if e.type == "tool_rejected"]
    assert rejected.reason == "invalid" and rejected.errors == ["record: missing required argument 'text' (a string)"]
    assert not (tmp_path / "log").exists()


def test_an_is_error_result_is_a_failed_tool_message(session, tmp_path):
    tools = session("allow")
    events = run(tools, tmp_path, [call("fail", reason="no network"), "It failed."])
    [result] = results(events)
    assert not result.ok and result.content.startswith("error: ") and "failed on purpose: no network" in result.content
    assert events[-1].stop_reason == "answered"


def test_a_server_that_dies_mid_session_leaves_the_other_tools_working(session, tmp_path):
    tools = session("allow")
    events = run(
        tools, tmp_path, [call("die"), call("add", a="1", b="2"), call("run_python", code="print(6 * 7)"), "done"]
    )
    died, gone, python = results(events)
    assert not died.ok and "'t' did not answer" in died.content
    assert not gone.ok and "'t' stopped" in gone.content
    assert python.ok and python.content.strip() == "42"
    assert tools.lines == ["MCP server 't' stopped: MCPError: Connection closed"]


def test_a_server_that_fails_to_start_is_one_line_and_the_session_goes_on(tmp_path):
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": {"gone": {"command": str(tmp_path / "no-such-server")}}}))
    lines: list[str] = []
    with plan_tools(None, [str(path)], tmp_path).start(report=lines.append) as tools:
        assert [line.split(":")[0] for line in lines] == ["MCP server 'gone' failed to start"]
        events = run(tools, tmp_path, [call("run_python", code="print(1 + 1)"), "2"])
    assert results(events)[0].ok


# -- which files a session uses


def test_the_user_default_file_is_used(tmp_path):
    user_file().parent.mkdir(parents=True)
    servers_file(user_file(), mine={})
    servers, notes = session_servers(None, tmp_path)
    assert [s.name for s in servers] == ["mine"] and notes == []


def test_a_workspace_file_is_used_only_once_approved_and_again_after_it_changes(tmp_path):
    workspace = tmp_path / "project"
    workspace.mkdir()
    servers_file(workspace / ".mcp.json", project={})
    servers, [note] = session_servers(None, workspace)
    assert servers == [] and "is not used" in note and "approve it first" in note
    pending = workspace_servers(workspace)
    assert not pending.approved and "project: " + sys.executable in pending.question()
    pending.approve()
    assert json.loads(approvals_file().read_text()) == {str(workspace / ".mcp.json"): pending.digest}
    servers, notes = session_servers(None, workspace)
    assert [s.name for s in servers] == ["project"] and notes == []
    servers_file(workspace / ".mcp.json", project={}, another={})  # the file changed: ask again
    servers, [note] = session_servers(None, workspace)
    assert servers == [] and not workspace_servers(workspace).approved


def test_a_later_file_replaces_a_server_of_the_same_name(tmp_path):
    user_file().parent.mkdir(parents=True)
    servers_file(user_file(), t={"approval": "ask"})
    explicit = servers_file(tmp_path / "mine.json", t={"approval": "allow"})
    [server], _ = session_servers([str(explicit)], tmp_path)
    assert server.approval == "allow" and server.origin == str(explicit)


def test_a_bad_file_is_bad_input_before_anything_starts(tmp_path):
    (tmp_path / "bad.json").write_text('{"mcpServers": {"x": {"command": 3}}}')
    with pytest.raises(BadInputError, match=r'bad.json: server .x.: "command" must be a non-empty string'):
        plan_tools(None, [str(tmp_path / "bad.json")], tmp_path)
    with pytest.raises(BadInputError, match="is not a file"):
        plan_tools(None, [str(tmp_path / "none.json")], tmp_path)


def test_eval_agent_tasks_get_the_mcp_tools(tmp_path):
    from agent.cli.eval import _mcp_tools
    from agent.mcp_files import read_files

    with _mcp_tools(read_files([str(servers_file(tmp_path / "s.json", t={}))])) as extra:
        names = {tool.name for tool in extra}
        assert {"add", "t__read_file"} <= names and "run_python" not in names
        Registry([*builtin_tools(), *extra])  # no collisions with the built-ins
