"""The tools every agent has: sandboxed Python, a confined shell and workspace-confined file access."""

from tools.builtin.files import file_tools
from tools.builtin.python import run_python_tool
from tools.builtin.shell import run_shell_tool
from tools.tool import Tool


def builtin_tools() -> list[Tool]:
    """run_python, read_file, write_file, edit_file, list_dir, search_files, run_shell (in that order)."""
    return [run_python_tool(), *file_tools(), run_shell_tool()]


__all__ = ["builtin_tools"]
