"""Turning argument text into the JSON types a schema asks for, where the text is unambiguous.

Qwen's XML tool calls carry every parameter value as text. A value is converted only when the
schema does not allow a string there and the text reads one way only: ``"3"`` for an integer,
``"2.5"`` for a number, ``"true"`` for a boolean, ``"null"`` for null, JSON text for an array or
object. Anything else is left as it came, for validation to report.
"""

from __future__ import annotations

import json
import re
from typing import Any

_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_JSON_TYPES = {"object": dict, "array": list}


def allowed_types(schema: Any) -> set[str]:
    """The JSON types a schema admits, looking through ``anyOf``/``oneOf`` and ``enum``; empty means any."""
    if not isinstance(schema, dict):
        return set()
    types = schema.get("type")
    if isinstance(types, str):
        return {types}
    if isinstance(types, list):
        return {t for t in types if isinstance(t, str)}
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            branch_types = allowed_types(branch)
            if not branch_types:
                return set()
            found |= branch_types
    if not found and isinstance(schema.get("enum"), list):
        found = {json_type(v) for v in schema["enum"]}
    return found


def json_type(value: Any) -> str:
    """The JSON Schema type name of a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def coerce_value(text: str, schema: Any) -> Any:
    """``text`` read as the type ``schema`` asks for, or ``text`` unchanged when that is not clear."""
    types = allowed_types(schema)
    if not types or "string" in types:
        return text
    stripped = text.strip()
    for kind in ("null", "boolean", "integer", "number", "array", "object"):
        if kind in types:
            ok, value = _read(kind, stripped)
            if ok:
                return value
    return text


def _read(kind: str, text: str) -> tuple[bool, Any]:
    if kind == "null":
        return text == "null", None
    if kind == "boolean":
        return text.lower() in ("true", "false"), text.lower() == "true"
    if kind == "integer":
        return (True, int(text)) if _INTEGER.fullmatch(text) else (False, None)
    if kind == "number":
        if not _NUMBER.fullmatch(text):
            return False, None
        return True, int(text) if _INTEGER.fullmatch(text) else float(text)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False, None
    return isinstance(value, _JSON_TYPES[kind]), value


def coerce_arguments(arguments: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``arguments`` with each top-level string value coerced by its property schema."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return dict(arguments)
    return {
        key: coerce_value(value, properties[key]) if isinstance(value, str) and key in properties else value
        for key, value in arguments.items()
    }
