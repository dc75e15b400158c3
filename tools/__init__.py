"""What a tool is, the registry, BFCL import, argument coercion and validation, built-in tools."""

from tools.bfcl import to_openai_tool
from tools.registry import Registry
from tools.tool import Tool, ToolContext, ToolError
from tools.validate import Validation, validate_call

__all__ = ["Tool", "ToolContext", "ToolError", "Registry", "validate_call", "Validation", "to_openai_tool"]
