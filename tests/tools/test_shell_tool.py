"""run_shell: which commands skip approval (the read-only allow-list), and the tool through the real
agent loop, approvals and sandbox."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from agent.approval import POLICIES, ApprovalDecision, approve_all, approve_none
from tests.agent.test_agent_dispatch import call, run, tokenizer  # noqa: F401  (fixture)
from tools.builtin.shell import needs_approval, read_only, render, run_shell_tool

READ_ONLY = [
    "ls",
    "ls -la src",
    "cat README.md",
    "grep -n TODO main.py",
    "git status",
    "git diff",
    "git log -n 3 --oneline",
    "git show HEAD",
    "wc -l a.txt b.txt",
    "head -n 5 'my file.txt'",
    "pwd",
    "tail -n 20 log.txt",
    "diff a.txt b.txt",
]
ASKS = [
    "rm -rf x",
    "touch a",
    "ls; rm x",
    "ls && rm x",
    "ls || rm x",
    "cat a | tee b",
    "cat a | sh",
    "ls > x",
    "ls >> x",
    "cat < /etc/passwd",
    "echo $(rm x)",
    "echo `rm x`",
    "echo ${HOME}",
    "cat a\nrm b",
    "ls & rm x",
    "git diff --output=x",
    "git diff --output x",
    "git -c core.pager=rm status",
    "git branch new",
    "git commit -m x",
    "git checkout .",
    "git log --ext-diff",
    "git diff --textconv",
    "ls *",
    "cat ~/.ssh/id_rsa",
    "ls \\; rm x",
    "python3 -c 'print(1)'",
    "find . -delete",
    "sed -i s/a/b/ f",
    "echo 'unbalanced",
    "",
    "   ",
    "ls # comment",
    "grep -O x .",
    "(ls)",
    "{ ls; }",
    "!ls",
    "cat a;rm b",
    "ls\trm",
]


@pytest.mark.parametrize("command", READ_ONLY)
def test_read_only_commands_skip_approval(command):
    assert read_only(command)
    assert not needs_approval({"command": command})


@pytest.mark.parametrize("command", ASKS)
def test_everything_else_asks(command):
    assert not read_only(command)
    assert needs_approval({"command": command})


def test_the_tool_asks_per_call():
    tool = run_shell_tool()
    assert tool.side_effects and tool.sandboxed
    assert tool.needs_approval({"command": "rm x"}) and not tool.needs_approval({"command": "ls"})


def test_render_says_how_it_ended():
    from sandbox import CommandResult

    assert render(CommandResult(0, stdout="a\n")) == "exit code 0\na"
    text = render(CommandResult(None, stdout="x", error_kind="timeout", error="timed out after 1 s"))
    assert text.startswith("killed") and "Error (timeout): timed out after 1 s" in text
    assert "stderr:\nboom" in render(CommandResult(2, stderr="boom\n"))


def test_approve_shell_policy_allows_only_the_shell():
    from agent.approval import ApprovalRequest
    from agent.events import ToolCall

    shell = ApprovalRequest(ToolCall(name="run_shell", arguments={"command": "touch a"}, raw=""), "")
    write = ApprovalRequest(ToolCall(name="write_file", arguments={"path": "a", "content": ""}, raw=""), "")
    assert POLICIES["shell"](shell) is ApprovalDecision.ALLOW_ONCE
    assert POLICIES["shell"](write) is ApprovalDecision.DENY


@pytest.fixture
def workspace():
    folder = tempfile.mkdtemp(prefix="optiq-shell-ws-")
    if os.geteuid() == 0:  # as root, commands run as nobody
        os.chown(folder, 65534, 65534)
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _confined() -> bool:
    from sandbox import confinement
    from sandbox.oslayer import is_confined

    return sys.platform.startswith("linux") and is_confined(confinement())


linux_only = pytest.mark.skipif(not _confined(), reason="no OS layer on this machine (see optiq doctor)")


@linux_only
def test_a_writing_command_is_denied_without_approval(tokenizer, workspace):  # noqa: F811
    _, events = run(
        tokenizer, workspace, [call("run_shell", command="touch made.txt"), "I was not allowed."], approve_none
    )
    request = next(e for e in events if e.type == "approval_request")
    assert "touch made.txt" in request.preview
    assert next(e for e in events if e.type == "approval").decision == "deny"
    assert not (workspace / "made.txt").exists()


@linux_only
def test_an_approved_command_runs_in_the_workspace(tokenizer, workspace):  # noqa: F811
    _, events = run(tokenizer, workspace, [call("run_shell", command="touch made.txt && ls"), "Done."], approve_all)
    result = next(e for e in events if e.type == "tool_result")
    assert result.ok and result.content == "exit code 0\nmade.txt"
    assert (workspace / "made.txt").exists()


@linux_only
def test_a_read_only_command_runs_without_asking(tokenizer, workspace):  # noqa: F811
    (workspace / "notes.txt").write_text("hello\n")
    _, events = run(tokenizer, workspace, [call("run_shell", command="cat notes.txt"), "It says hello."], approve_none)
    assert not [e for e in events if e.type == "approval_request"]
    assert next(e for e in events if e.type == "tool_result").content == "exit code 0\nhello"
