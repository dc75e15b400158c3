"""BFCL function docs as OpenAI tools with JSON Schema (Draft 2020-12) parameters.

BFCL writes its own type names (``dict``, ``float``, ``tuple``, ``any``) and an ``optional``
flag; this maps them onto JSON Schema. Dotted names such as ``math.factorial`` are kept: chat
templates accept them, and BFCL's answers use them.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

_TYPES = {
    "dict": "object",
    "object": "object",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "string": "string",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "boolean": "boolean",
    "null": "null",
}
_KEPT = ("description", "enum", "default", "format", "minimum", "maximum", "minItems", "maxItems", "pattern")


def to_openai_tool(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI tool for one BFCL function doc; raises ``ValueError`` on a type BFCL does not use."""
    parameters = to_json_schema(doc.get("parameters") or {"type": "dict", "properties": {}})
    parameters.setdefault("type", "object")
    Draft202012Validator.check_schema(parameters)
    return {
        "type": "function",
        "function": {"name": doc["name"], "description": doc.get("description", ""), "parameters": parameters},
    }


def to_json_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """One BFCL parameter spec, recursively, as JSON Schema."""
    schema: dict[str, Any] = {}
    kind = spec.get("type")
    if kind is not None and kind != "any":
        if kind not in _TYPES:
            raise ValueError(f"BFCL type {kind!r} has no JSON Schema equivalent; known: {', '.join(_TYPES)}, any")
        schema["type"] = _TYPES[kind]
    for key in _KEPT:
        if key in spec:
            schema[key] = spec[key]
    if isinstance(spec.get("properties"), dict):
        schema["properties"] = {name: to_json_schema(sub) for name, sub in spec["properties"].items()}
    if isinstance(spec.get("items"), dict):
        schema["items"] = to_json_schema(spec["items"])
    if isinstance(spec.get("required"), list):
        schema["required"] = list(dict.fromkeys(spec["required"]))
    return schema
