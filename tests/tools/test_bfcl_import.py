"""BFCL function docs become OpenAI tools with Draft 2020-12 schemas."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tools import to_openai_tool, validate_call

CASES = Path(__file__).parents[1] / "data" / "bfcl" / "cases.jsonl"

DOC = {
    "name": "geo.route",
    "description": "Plan a route.",
    "parameters": {
        "type": "dict",
        "properties": {
            "stops": {"type": "array", "items": {"type": "string"}, "description": "Stops in order."},
            "origin": {"type": "tuple", "items": {"type": "float"}},
            "mode": {"type": "string", "enum": ["car", "bike"], "default": "car"},
            "avoid": {"type": "dict", "properties": {"tolls": {"type": "boolean"}}, "required": ["tolls"]},
            "max_stops": {"type": "integer", "optional": True},
            "extra": {"type": "any", "description": "Anything."},
        },
        "required": ["stops", "origin"],
    },
}


def test_bfcl_types_map_to_json_schema():
    tool = to_openai_tool(DOC)
    assert tool["type"] == "function" and tool["function"]["name"] == "geo.route"
    params = tool["function"]["parameters"]
    props = params["properties"]
    assert params["type"] == "object" and params["required"] == ["stops", "origin"]
    assert props["stops"] == {"type": "array", "description": "Stops in order.", "items": {"type": "string"}}
    assert props["origin"] == {"type": "array", "items": {"type": "number"}}
    assert props["mode"] == {"type": "string", "enum": ["car", "bike"], "default": "car"}
    assert props["avoid"] == {"type": "object", "properties": {"tolls": {"type": "boolean"}}, "required": ["tolls"]}
    assert props["max_stops"] == {"type": "integer"}
    assert props["extra"] == {"description": "Anything."}
    Draft202012Validator.check_schema(params)


def test_converted_schema_validates_calls():
    tool = to_openai_tool(DOC)
    good = {"name": "geo.route", "arguments": {"stops": ["a"], "origin": [1, 2.5], "extra": [1]}}
    assert validate_call(good, tool).ok
    bad = validate_call({"name": "geo.route", "arguments": {"stops": "a", "origin": [1]}}, tool)
    assert bad.errors == ["geo.route: argument 'stops' must be an array (JSON list), got string \"a\""]


def test_unknown_bfcl_type_is_refused():
    with pytest.raises(ValueError, match="'complex'"):
        to_openai_tool({"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "complex"}}}})


def test_every_function_doc_in_the_fixture_converts_keeping_its_required_and_known_parameters():
    from agent.callformats import parse_pythonic

    rows = [json.loads(line) for line in CASES.open()]
    refused: dict[str, list[bool]] = {"missing_required": [], "unexpected_param": []}
    for row in rows:
        tools = [to_openai_tool(doc) for doc in row["functions"]]
        for case in row["cases"]:
            if case["case"] in refused:  # BFCL's own answers with a required argument left out, or one made up
                calls = parse_pythonic(case["answer"])
                refused[case["case"]].append(not all(validate_call(call, tools).ok for call in calls))
    assert refused == {name: [True] * len(rows) for name in refused}
