"""The built-in tools with real files in temporary folders and a real sandbox."""

import os

import pytest

from sandbox import Sandbox
from tools.builtin import builtin_tools
from tools.tool import ToolContext, ToolError


@pytest.fixture(scope="module")
def shared_sandbox():
    with Sandbox() as box:
        yield box


@pytest.fixture
def ctx(tmp_path, shared_sandbox):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("alpha\nbeta\ngamma beta\n")
    (workspace / "src").mkdir()
    (workspace / "src" / "main.py").write_text("def main():\n    return 'beta'\n")
    (tmp_path / "secret.txt").write_text("top secret beta")
    return ToolContext(workspace=workspace, sandbox=shared_sandbox)


def call(name, ctx, **arguments):
    tool = {t.name: t for t in builtin_tools()}[name]
    return tool.handler(arguments, ctx)


def test_tools_in_order_with_flags():
    tools = builtin_tools()
    assert [t.name for t in tools] == [
        "run_python",
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
        "search_files",
        "run_shell",
    ]
    flags = {t.name: (t.side_effects, t.sandboxed) for t in tools}
    assert flags["run_python"] == (False, True)
    assert flags["write_file"] == (True, False) and flags["edit_file"] == (True, False)
    assert flags["read_file"] == (False, False)
    assert flags["run_shell"] == (True, True)
    for tool in tools:
        assert tool.description and tool.parameters["type"] == "object"
        assert tool.openai()["function"]["name"] == tool.name


def test_run_python_shows_stdout_then_value(ctx):
    assert call("run_python", ctx, code="print('hi')\n6 * 7") == "hi\n42"
    assert call("run_python", ctx, code="x = 1") == "(no output)"


def test_run_python_errors_are_compact(ctx):
    text = call("run_python", ctx, code="print('before')\nx = 1 / 0")
    assert text == "before\nError (runtime): ZeroDivisionError: division by zero (line 2)"
    assert call("run_python", ctx, code="import os").startswith("Error (policy): import of module 'os'")


def test_run_python_creates_sandbox_lazily(tmp_path):
    ctx = ToolContext(workspace=tmp_path)
    try:
        assert call("run_python", ctx, code="1 + 1") == "2"
        assert ctx.sandbox is not None
    finally:
        ctx.sandbox.close()


def test_read_file(ctx):
    assert call("read_file", ctx, path="notes.txt") == "alpha\nbeta\ngamma beta\n"
    assert "main" in call("read_file", ctx, path="./src/../src/main.py")


def test_read_missing_and_binary(ctx):
    with pytest.raises(ToolError, match="does not exist"):
        call("read_file", ctx, path="nope.txt")
    (ctx.workspace / "blob.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ToolError, match="not UTF-8"):
        call("read_file", ctx, path="blob.bin")


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "src/../../secret.txt"])
def test_paths_outside_are_refused(ctx, path):
    with pytest.raises(ToolError, match=f"path '{path}' is outside the workspace"):
        call("read_file", ctx, path=path)
    with pytest.raises(ToolError, match="outside the workspace"):
        call("write_file", ctx, path=path, content="x")


def test_symlinks_out_are_refused(ctx, tmp_path):
    os.symlink(tmp_path / "secret.txt", ctx.workspace / "link.txt")
    os.symlink(tmp_path, ctx.workspace / "up")
    with pytest.raises(ToolError, match="outside the workspace"):
        call("read_file", ctx, path="link.txt")
    with pytest.raises(ToolError, match="outside the workspace"):
        call("write_file", ctx, path="up/new.txt", content="x")
    assert not (tmp_path / "new.txt").exists()
    assert "secret" not in call("search_files", ctx, pattern="beta")


def test_write_file_creates_folders(ctx):
    assert "wrote 5 characters to out/a.txt" == call("write_file", ctx, path="out/a.txt", content="hello")
    assert (ctx.workspace / "out" / "a.txt").read_text() == "hello"


def test_edit_file_replaces_unique_snippet(ctx):
    call("edit_file", ctx, path="notes.txt", old="alpha", new="ALPHA")
    assert (ctx.workspace / "notes.txt").read_text() == "ALPHA\nbeta\ngamma beta\n"


def test_edit_file_refuses_missing_or_repeated(ctx):
    with pytest.raises(ToolError, match="not found"):
        call("edit_file", ctx, path="notes.txt", old="delta", new="x")
    with pytest.raises(ToolError, match="occurs 2 times"):
        call("edit_file", ctx, path="notes.txt", old="beta", new="x")
    assert (ctx.workspace / "notes.txt").read_text() == "alpha\nbeta\ngamma beta\n"


def test_list_dir(ctx):
    assert call("list_dir", ctx) == "notes.txt\nsrc/"
    assert call("list_dir", ctx, path="src") == "main.py"
    with pytest.raises(ToolError, match="does not exist"):
        call("list_dir", ctx, path="missing")


def test_search_files(ctx):
    assert call("search_files", ctx, pattern="beta").splitlines() == [
        "notes.txt:2: beta",
        "notes.txt:3: gamma beta",
        "src/main.py:2: return 'beta'",
    ]
    assert call("search_files", ctx, pattern="zzz") == "no matches for 'zzz'"


def test_search_is_capped(ctx):
    (ctx.workspace / "many.txt").write_text("hit\n" * 500)
    lines = call("search_files", ctx, pattern="hit", path="many.txt").splitlines()
    assert len(lines) == 51 and "stopped at 50 matches" in lines[-1]


def test_read_is_capped(ctx):
    (ctx.workspace / "big.txt").write_text("x" * 50_000)
    text = call("read_file", ctx, path="big.txt")
    assert len(text) < 21_000 and "cut" in text
