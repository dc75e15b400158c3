"""`optiq tools list` and `optiq tools call` through the real command line, with a real MCP server."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")


def optiq(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=None
    )


@pytest.fixture
def servers(tmp_path) -> str:
    path = tmp_path / "servers.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "t": {"command": sys.executable, "args": [SERVER], "approval": "ask"},
                    "broken": {"command": str(tmp_path / "missing-server")},
                }
            }
        )
    )
    return str(path)


@pytest.fixture
def shell_workspace():
    """A folder commands may enter: as root they run as nobody, who cannot pass pytest's private tmp folders."""
    import shutil
    import tempfile

    from sandbox import hand_to_workers

    folder = Path(tempfile.mkdtemp(prefix="optiq-tools-ws-"))
    hand_to_workers(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_list_shows_every_tool_with_its_source_and_schema(servers, tmp_path):
    tools_file = tmp_path / "mine.py"
    tools_file.write_text(
        "from pydantic import BaseModel\nfrom tools import Tool\n"
        "class A(BaseModel):\n    city: str\n"
        "W = Tool.from_model('weather', 'Weather in a city.', A, lambda a, c: 'sunny')\n"
    )
    result = optiq("tools", "list", "--mcp", servers, "--tools", str(tools_file), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["run_python"]["source"] == "builtin" and rows["weather"]["source"] == "custom"
    assert rows["add"]["source"] == "mcp:t" and rows["add"]["asks_approval"]
    assert rows["add"]["parameters"]["required"] == ["a", "b"] and rows["add"]["description"] == "Add two integers."
    assert rows["t__read_file"]["source"] == "mcp:t" and rows["read_file"]["source"] == "builtin"
    assert "MCP server 'broken' failed to start" in result.stderr and result.stderr.count("\n") == 1


def test_list_as_text(servers, tmp_path):
    result = optiq("tools", "list", "--mcp", servers, cwd=tmp_path)
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("add "))
    assert "mcp:t (asks)" in line and "(a, b)" in line


def test_call_runs_the_tool_and_prints_its_result(servers, tmp_path):
    result = optiq("tools", "call", "add", '{"a": "2", "b": 40}', "--mcp", servers, "--approve", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "name": "add",
        "source": "mcp:t",
        "arguments": {"a": 2, "b": 40},
        "ok": True,
        "content": "42",
        "seconds": json.loads(result.stdout)["seconds"],
    }


def test_a_builtin_runs_without_starting_the_servers(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    result = optiq("tools", "call", "read_file", '{"path": "notes.txt"}', "--workspace", str(tmp_path))
    assert result.returncode == 0 and result.stdout == "hello\n\n"


def test_invalid_arguments_exit_2_without_calling_the_tool(servers, tmp_path):
    marker = tmp_path / "called"
    result = optiq(
        "tools", "call", "record", json.dumps({"path": str(marker)}), "--mcp", servers, "--approve", cwd=tmp_path
    )
    assert result.returncode == 2 and "record: missing required argument 'text' (a string)" in result.stderr
    assert not marker.exists()
    for args in (["nope", "{}"], ["add", "{not json"], ["add", "[1]"]):
        bad = optiq("tools", "call", *args, "--mcp", servers, cwd=tmp_path)
        assert (
            bad.returncode == 2 and bad.stdout == "" and bad.stderr.strip().splitlines()[-1].startswith("optiq: error:")
        )


def test_a_tool_that_asks_runs_only_with_approve(servers, tmp_path):
    marker = tmp_path / "called"
    arguments = json.dumps({"path": str(marker), "text": "x"})
    refused = optiq("tools", "call", "record", arguments, "--mcp", servers, cwd=tmp_path)
    assert refused.returncode == 2 and "pass --approve" in refused.stderr and not marker.exists()
    ran = optiq("tools", "call", "record", arguments, "--mcp", servers, "--approve", cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout == "recorded x\n" and marker.read_text() == "x\n"


def test_a_read_only_shell_command_runs_without_approve_and_a_writing_one_asks(shell_workspace):
    (shell_workspace / "a.txt").write_text("hi\n")
    listed = optiq("tools", "call", "run_shell", '{"command": "ls"}', "--workspace", str(shell_workspace))
    assert listed.returncode == 0 and "a.txt" in listed.stdout
    refused = optiq("tools", "call", "run_shell", '{"command": "touch b.txt"}', "--workspace", str(shell_workspace))
    assert refused.returncode == 2 and "pass --approve" in refused.stderr and not (shell_workspace / "b.txt").exists()


def test_a_tool_error_exits_1(servers, tmp_path):
    result = optiq("tools", "call", "fail", '{"reason": "quota"}', "--mcp", servers, "--approve", cwd=tmp_path)
    assert result.returncode == 1 and "failed on purpose: quota" in result.stderr and result.stdout == ""


def test_run_refuses_a_bad_servers_file_before_loading_a_model(tmp_path):
    (tmp_path / "bad.json").write_text("{}")
    result = optiq("run", "hi", "--mcp", str(tmp_path / "bad.json"), cwd=tmp_path)
    assert result.returncode == 2 and '"mcpServers"' in result.stderr and result.stderr.count("\n") == 1
