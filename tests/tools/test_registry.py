"""The registry: unique names, lookup, and the OpenAI export chat templates take."""

import pytest
from pydantic import BaseModel

from tools import Registry, Tool


class ReadArgs(BaseModel):
    path: str
    limit: int = 100


def _read(arguments, ctx):
    return arguments["path"]


def test_registry_exports_openai_function_format():
    registry = Registry([Tool.from_model("read_file", "Read a file.", ReadArgs, _read)])
    [exported] = registry.openai()
    assert exported["type"] == "function"
    assert exported["function"]["name"] == "read_file"
    assert exported["function"]["parameters"]["properties"]["limit"] == {"type": "integer", "default": 100}
    assert exported["function"]["parameters"]["required"] == ["path"]


def test_registry_lookup_iteration_and_membership():
    first = Tool("a", "A.", {"type": "object", "properties": {}})
    second = Tool("b", "B.", {"type": "object", "properties": {}}, side_effects=True)
    registry = Registry([first, second])
    assert registry.names() == ["a", "b"]
    assert registry.get("b") is second and registry.get("c") is None
    assert "a" in registry and "c" not in registry
    assert [t.name for t in registry] == ["a", "b"] and len(registry) == 2


def test_duplicate_name_is_refused_with_the_name():
    registry = Registry([Tool("a", "A.", {})])
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.add(Tool("a", "Another A.", {}))
