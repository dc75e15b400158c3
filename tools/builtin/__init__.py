"""The tools every agent has: sandboxed Python and workspace-confined file access."""

from tools.builtin.files import file_tools
from tools.builtin.python import run_python_tool
from tools.tool import Tool


def builtin_tools() -> list[Tool]:
    """run_python, read_file, write_file, edit_file, list_dir, search_files (in that order)."""
    return [run_python_tool(), *file_tools()]


__all__ = ["builtin_tools"]
