"""The set of tools an agent offers, by name, exported in the OpenAI function format."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tools.tool import Tool


class Registry:
    """Tools by unique name, in the order they were added."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> Tool:
        """Register ``tool``; a second tool with the same name is a ``ValueError``."""
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered; tool names must be unique")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        """The tool a validated call names (validation refused unknown names); ``KeyError`` otherwise."""
        return self._tools[name]

    def names(self) -> list[str]:
        return list(self._tools)

    def openai(self) -> list[dict[str, Any]]:
        """Every tool in the format ``tokenizer.apply_chat_template(tools=...)`` takes."""
        return [tool.openai() for tool in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools
