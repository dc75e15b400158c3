"""Approval policies and previews."""

from agent.approval import POLICIES, ApprovalDecision, ApprovalRequest, preview
from agent.events import ToolCall


def test_headless_policies():
    request = ApprovalRequest(call=ToolCall(name="write_file", arguments={"path": "a", "content": "b"}), preview="")
    assert POLICIES["all"](request) is ApprovalDecision.ALLOW_ONCE
    assert POLICIES["none"](request) is ApprovalDecision.DENY
    assert request.tool == "write_file"


def test_preview_shows_each_argument_and_keeps_multiline_content():
    text = preview("write_file", {"path": "notes.txt", "content": "line 1\nline 2"})
    assert text.splitlines() == ["write_file:", "path: notes.txt", "content:", "line 1", "line 2"]


def test_preview_is_clipped():
    text = preview("write_file", {"path": "a", "content": "x" * 10000})
    assert len(text) < 2200 and "more characters" in text
