"""Checking a tool call against its tool: coerce argument text by schema, then JSON Schema.

Every error message goes back to the model as the tool result, so each one names the tool, the
argument, what was expected and what came.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from tools.coerce import coerce_arguments, json_type
from tools.registry import Registry
from tools.tool import Tool


@dataclass
class Validation:
    """The verdict on one call: ``arguments`` are after coercion; ``errors`` are for the model."""

    name: str
    arguments: dict[str, Any]
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


ToolLike = Tool | dict[str, Any]


def validate_call(call: Any, tool: ToolLike | Registry | Iterable[ToolLike] | None) -> Validation:
    """Coerce and validate ``call`` against ``tool`` (or the tool of its name in a registry or list).

    ``call`` is anything with ``.name`` and ``.arguments``, or a dict with ``"name"`` and
    ``"arguments"`` (an object or JSON text). Arguments not named in the schema's ``properties``
    are reported unless the schema sets ``additionalProperties`` itself.
    """
    name, arguments, problem = _read_call(call)
    if problem:
        return Validation(name, {}, [problem])
    name_, parameters, available = _find_tool(name, tool)
    if parameters is None:
        return Validation(name, arguments, [_unknown_tool(name, available)])
    arguments = coerce_arguments(arguments, parameters)
    errors = _unexpected(name, parameters, arguments)
    errors += [_describe(name, e) for e in _schema_errors(parameters, arguments)]
    return Validation(name, arguments, list(dict.fromkeys(errors)))


def _read_call(call: Any) -> tuple[str, dict[str, Any], str | None]:
    if isinstance(call, dict):
        name, arguments = call.get("name"), call.get("arguments", {})
    else:
        name, arguments = getattr(call, "name", None), getattr(call, "arguments", {})
    if not isinstance(name, str) or not name:
        return str(name), {}, f"the tool call has no tool name (got {_show(name)}); give the name of one of the tools"
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return name, {}, f"{name}: the arguments are not valid JSON ({exc}); send them as a JSON object"
    if not isinstance(arguments, dict):
        return (
            name,
            {},
            f"{name}: the arguments must be an object of name: value pairs, got {json_type(arguments)} {_show(arguments)}",
        )
    return name, arguments, None


def _find_tool(name: str, tool: Any) -> tuple[str, dict[str, Any] | None, list[str]]:
    """The parameters schema of the tool called ``name``, and the names on offer."""
    candidates = [tool] if isinstance(tool, (Tool, dict)) else list(tool or [])
    available = []
    for candidate in candidates:
        tool_name, parameters = _name_and_parameters(candidate)
        available.append(tool_name)
        if tool_name == name:
            return name, parameters, available
    return name, None, available


def _name_and_parameters(tool: ToolLike) -> tuple[str, dict[str, Any]]:
    if isinstance(tool, Tool):
        return tool.name, tool.parameters
    function = tool.get("function", tool)
    return function.get("name", ""), function.get("parameters") or {"type": "object", "properties": {}}


def _unknown_tool(name: str, available: list[str]) -> str:
    if not available:
        return f"there is no tool named {name!r}, and no tools are available"
    return f"there is no tool named {name!r}; the available tools are: {', '.join(available)}"


def _unexpected(tool: str, parameters: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    """Arguments the schema does not name; a schema that sets ``additionalProperties`` speaks for itself."""
    properties = parameters.get("properties")
    if not isinstance(properties, dict) or "additionalProperties" in parameters:
        return []
    extras = [key for key in arguments if key not in properties]
    return [_unexpected_message(tool, "", extras, properties)] if extras else []


def _unexpected_message(tool: str, where: str, extras: list[str], properties: dict[str, Any]) -> str:
    names = ", ".join(repr(f"{where}.{e}" if where else e) for e in extras)
    takes = f"; {tool} takes: {', '.join(properties)}" if properties and not where else ""
    if where and properties:
        takes = f"; {where!r} takes: {', '.join(properties)}"
    return f"{tool}: unexpected argument {names}{takes}"


def _schema_errors(parameters: dict[str, Any], arguments: dict[str, Any]) -> list[ValidationError]:
    return sorted(_validator(json.dumps(parameters, sort_keys=True)).iter_errors(arguments), key=_order)


def _order(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(p) for p in error.absolute_path)


@lru_cache(maxsize=256)
def _validator(schema_text: str) -> Draft202012Validator:
    schema = json.loads(schema_text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _describe(tool: str, error: ValidationError) -> str:
    """One error as a sentence the model can act on."""
    where = _path(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        return "; ".join(_missing_message(tool, where, key, error.schema) for key in missing)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        properties = error.schema.get("properties") or {}
        return _unexpected_message(tool, where, _extras(error), properties)
    subject = f"argument {where!r}" if where else "the arguments"
    got = f"got {json_type(error.instance)} {_show(error.instance)}"
    if error.validator == "type":
        return f"{tool}: {subject} must be {_type_words(error.validator_value)}, {got}"
    if error.validator == "enum":
        options = ", ".join(_show(v) for v in error.validator_value)
        return f"{tool}: {subject} must be one of {options}; {got}"
    if error.validator == "const":
        return f"{tool}: {subject} must be {_show(error.validator_value)}; {got}"
    return f"{tool}: {subject} is invalid: {error.message}"


def _extras(error: ValidationError) -> list[str]:
    known = error.schema.get("properties") or {}
    return [key for key in error.instance if key not in known] if isinstance(error.instance, dict) else []


def _missing_message(tool: str, where: str, key: str, schema: Any) -> str:
    inner = f"{where}.{key}" if where else key
    return f"{tool}: missing required argument {inner!r}{_expected(_subschema(schema, key))}"


def _subschema(schema: Any, key: str) -> Any:
    return (schema.get("properties") or {}).get(key) if isinstance(schema, dict) else None


def _expected(schema: Any) -> str:
    if not isinstance(schema, dict) or "type" not in schema:
        return ""
    described = f" ({_type_words(schema['type'])}"
    if schema.get("description"):
        described += f": {_clip(str(schema['description']), 80)}"
    return described + ")"


def _type_words(types: Any) -> str:
    names = types if isinstance(types, list) else [types]
    words = {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "a boolean (true or false)",
        "array": "an array (JSON list)",
        "object": "an object (JSON dict)",
        "null": "null",
    }
    return " or ".join(words.get(t, str(t)) for t in names)


def _path(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return _clip(text, 80)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
