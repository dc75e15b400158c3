"""MCP servers' tools over the real SDK: a real server (tests/tools/mcp_server.py) started as a subprocess."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.mcp import McpConfigError, McpHub, ServerSpec, hub_tools, parse_servers
from tools.tool import ToolError
from tools.validate import validate_call

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def spec(name="t", **fields) -> ServerSpec:
    return ServerSpec(name=name, command=sys.executable, args=(SERVER,), **fields)


@pytest.fixture(scope="module")
def started():
    """One hub with the test server (approval 'allow') and one that cannot start; closed after the module."""
    lines: list[str] = []
    hub = McpHub(on_problem=lines.append)
    servers = hub.start([spec(approval="allow"), ServerSpec(name="missing", command="/nonexistent/mcp-server")])
    tools = {tool.name: tool for tool in hub_tools(servers, hub, {"read_file"}, lines.append)}
    yield hub, tools, lines
    hub.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


# -- the servers file


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ('{"servers": {}}', '"mcpServers"'),
        ('{"mcpServers": {"a b": {"command": "x"}}}', "letters, digits"),
        ('{"mcpServers": {"a": {"args": ["x"]}}}', 'either "command"'),
        ('{"mcpServers": {"a": {"command": "x", "url": "http://h"}}}', 'either "command"'),
        ('{"mcpServers": {"a": {"command": "x", "args": "y"}}}', '"args" must be a list of strings'),
        ('{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}', '"env" must be an object of string values'),
        ('{"mcpServers": {"a": {"command": "x", "approval": "never"}}}', '"approval" must be "ask" or "allow"'),
        ('{"mcpServers": {"a": {"command": "x", "comand": "y"}}}', "unknown key(s) comand"),
        ('{"mcpServers": {"a": {"url": "http://h", "type": "sse"}}}', "only streamable HTTP"),
    ],
)
def test_a_bad_servers_file_names_the_file_the_server_and_the_fault(text, message):
    with pytest.raises(McpConfigError) as error:
        parse_servers(text, "my.json")
    assert str(error.value).startswith("my.json") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_standard_file_reads_as_specs_with_ask_by_default():
    text = json.dumps(
        {
            "mcpServers": {
                "files": {"command": "npx", "args": ["-y", "server-files", "/tmp"], "env": {"A": "1"}},
                "web": {"url": "http://127.0.0.1:9/mcp", "approval": "allow"},
                "off": {"command": "x", "disabled": True},
            }
        }
    )
    files, web = parse_servers(text, "f.json")
    assert (files.name, files.transport, files.args, files.env, files.approval) == (
        "files",
        "stdio",
        ("-y", "server-files", "/tmp"),
        {"A": "1"},
        "ask",
    )
    assert (web.transport, web.approval, web.describe()) == ("http", "allow", "http://127.0.0.1:9/mcp")


# -- a real server over stdio


def test_a_servers_tools_join_with_sources_and_a_colliding_name_is_prefixed(started):
    _, tools, _ = started
    assert {"add", "echo", "fail", "record", "die", "state", "t__read_file"} <= set(tools)
    assert "read_file" not in tools  # the built-in keeps its name
    add = tools["add"]
    assert add.source == "mcp:t" and add.description == "Add two integers." and not add.side_effects
    assert add.parameters["required"] == ["a", "b"] and "title" not in add.parameters
    assert add.parameters["properties"]["a"] == {"type": "integer"}


def test_calls_are_validated_by_the_schema_layer_then_answered(started):
    _, tools, _ = started
    checked = validate_call({"name": "add", "arguments": {"a": "2", "b": 40}}, list(tools.values()))
    assert checked.ok and checked.arguments == {"a": 2, "b": 40}  # coerced by the MCP tool's own schema
    assert tools["add"].handler(checked.arguments, None) == "42"
    assert tools["t__read_file"].handler({"path": "x"}, None) == "mcp read_file x"
    missing = validate_call({"name": "add", "arguments": {"a": 1}}, list(tools.values()))
    assert missing.errors == ["add: missing required argument 'b' (an integer)"]


def test_an_is_error_result_raises_the_servers_message(started):
    _, tools, _ = started
    with pytest.raises(ToolError, match="failed on purpose: disk full"):
        tools["fail"].handler({"reason": "disk full"}, None)


def test_a_server_that_cannot_start_is_one_line_naming_it_and_the_others_go_on(started):
    hub, tools, lines = started
    [line] = [line for line in lines if "'missing'" in line]
    assert line.startswith("MCP server 'missing' failed to start:") and "/nonexistent/mcp-server" in line
    assert "\n" not in line
    assert tools["echo"].handler({"text": "still here"}, None) == "still here"


def test_a_server_that_exits_at_start_says_what_it_printed():
    lines: list[str] = []
    crashing = ServerSpec(name="crash", command=sys.executable, args=("-c", "import sys; sys.exit('no config found')"))
    with McpHub(on_problem=lines.append) as hub:
        assert hub.start([crashing]) == []
    assert (
        len(lines) == 1 and lines[0].startswith("MCP server 'crash' failed to start") and "no config found" in lines[0]
    )


def test_one_process_per_session_stopped_with_it():
    with McpHub() as hub:
        [server] = hub.start([spec()])
        tools = {t.name: t for t in hub_tools([server], hub, set(), print)}
        tools["echo"].handler({"text": "a"}, None)
        state = tools["state"].handler({}, None)
        assert state.startswith("calls=2 ")  # the same process answered both calls
        pid = int(state.split("pid=")[1])
        assert alive(pid)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the server process outlived its session"


def test_a_server_that_dies_mid_session_is_one_line_and_its_calls_fail_fast():
    lines: list[str] = []
    with McpHub(on_problem=lines.append) as hub:
        servers = hub.start([spec(), spec("other")])
        tools = {t.name: t for t in hub_tools(servers, hub, set(), lines.append)}
        with pytest.raises(ToolError, match="did not answer"):
            tools["die"].handler({}, None)
        started = time.monotonic()
        with pytest.raises(ToolError, match="'t' stopped"):
            tools["add"].handler({"a": 1, "b": 2}, None)
        assert time.monotonic() - started < 1
        assert tools["other__add"].handler({"a": 1, "b": 2}, None) == "3"  # the other server goes on
    assert [line for line in lines if "stopped" in line] == ["MCP server 't' stopped: MCPError: Connection closed"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_streamable_http_server_is_reached_by_url():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with McpHub() as hub:
            servers = hub.start([ServerSpec(name="web", url=f"http://127.0.0.1:{port}/mcp")])
            tools = {t.name: t for t in hub_tools(servers, hub, set(), print)}
            assert tools["add"].handler({"a": 20, "b": 22}, None) == "42"
            assert tools["add"].source == "mcp:web"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_server_that_never_answers_times_out_as_one_line_and_is_stopped(tmp_path):
    pid_file = tmp_path / "pid"
    silent = ServerSpec(
        name="silent",
        command=sys.executable,
        args=("-c", f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"),
    )
    lines: list[str] = []
    with McpHub(on_problem=lines.append, start_timeout=2) as hub:
        assert hub.start([silent]) == []
    assert lines == ["MCP server 'silent' failed to start: no answer within 2 s"]
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
