"""User tools from a Python file (``--tools my_tools.py``), declared with the same ``Tool`` API.

The file is imported as a module. Its tools are the ``TOOLS`` list when it defines one, else every
module-level ``Tool`` instance in definition order. Example::

    from pydantic import BaseModel
    from tools import Tool

    class Args(BaseModel):
        city: str

    def weather(arguments, context):
        return f"sunny in {arguments['city']}"

    TOOLS = [Tool.from_model("weather", "Today's weather in a city.", Args, weather)]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from optiq_runtime.errors import BadInputError
from tools.tool import Tool


def load_tools(path: str | Path) -> list[Tool]:
    """The tools declared in the Python file at ``path``; a file that declares none is an error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"--tools: {path} is not a file; give a Python file that declares Tool objects")
    module = _import(path)
    declared = getattr(module, "TOOLS", None)
    if declared is None:
        declared = [value for value in vars(module).values() if isinstance(value, Tool)]
    tools = list(declared) if isinstance(declared, (list, tuple)) else None
    if not tools or not all(isinstance(tool, Tool) for tool in tools):
        raise BadInputError(f"--tools: {path} declares no tools; define Tool objects or a TOOLS list of them")
    missing = [tool.name for tool in tools if tool.handler is None]
    if missing:
        raise BadInputError(f"--tools: {path}: tool(s) {', '.join(missing)} have no handler")
    return tools


def _import(path: Path):
    name = f"optiq_user_tools_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"--tools: cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[name]
        raise BadInputError(f"--tools: {path} is not valid Python: {error}") from error
    except Exception as error:  # the user's module code may raise anything while it loads
        del sys.modules[name]
        raise BadInputError(f"--tools: importing {path} failed: {type(error).__name__}: {error}") from error
    return module
