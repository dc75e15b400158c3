"""What a tool is: a JSON Schema for its arguments, a handler, and flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class ToolError(Exception):
    """A tool failed in a way the model can act on; the message becomes the tool result."""


@dataclass
class ToolContext:
    """What a handler may use: the workspace root its file access is confined to, and the sandbox.

    ``sandbox`` is a ``sandbox.Sandbox`` (typed loosely so tools/ does not import it at load time).
    """

    workspace: Path
    sandbox: Any = None


Handler = Callable[[dict[str, Any], ToolContext], str]


@dataclass(frozen=True)
class Tool:
    """A callable tool: name, description, JSON Schema parameters, handler and flags.

    ``side_effects`` tools ask for approval before they run; ``sandboxed`` tools run model-written
    code in the sandbox. ``args_model`` is set when the schema came from a pydantic model.
    ``source`` says where the tool came from: ``builtin``, ``custom`` (``--tools``) or ``mcp:SERVER``.
    ``side_effects`` tools ask for approval before they run, unless ``asks`` (given the call's
    arguments) says this call need not; ``sandboxed`` tools run model-written code in the sandbox.
    ``args_model`` is set when the schema came from a pydantic model.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler | None = None
    side_effects: bool = False
    sandboxed: bool = False
    args_model: type[BaseModel] | None = field(default=None, compare=False)
    source: str = field(default="builtin", compare=False)
    asks: Callable[[dict[str, Any]], bool] | None = field(default=None, compare=False)

    @classmethod
    def from_model(
        cls, name: str, description: str, args_model: type[BaseModel], handler: Handler, **flags: Any
    ) -> Tool:
        """A tool whose parameters are a pydantic model's JSON Schema."""
        return cls(name, description, schema_of(args_model), handler, args_model=args_model, **flags)

    def needs_approval(self, arguments: dict[str, Any]) -> bool:
        """Whether this call must be approved before it runs."""
        return self.side_effects and (self.asks is None or self.asks(arguments))

    def openai(self) -> dict[str, Any]:
        """The OpenAI function format that ``apply_chat_template(tools=...)`` takes."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON Schema, without the titles that only add tokens to the prompt."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema
