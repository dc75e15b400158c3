"""Coercion by schema and JSON Schema validation, with errors a model can act on."""

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tools import Registry, Tool, validate_call
from tools.coerce import coerce_value

WEATHER = Tool(
    "get_weather",
    "Weather for a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "integer"},
            "scale": {"type": "number"},
            "metric": {"type": "boolean"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "hours": {"type": "array", "items": {"type": "integer"}},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}},
                "required": ["lat"],
                "additionalProperties": False,
            },
            "note": {"type": ["string", "null"]},
        },
        "required": ["city"],
    },
)


def check(arguments, tool=WEATHER):
    return validate_call({"name": "get_weather", "arguments": arguments}, tool)


@pytest.mark.parametrize(
    ("text", "schema", "expected"),
    [
        ("3", {"type": "integer"}, 3),
        ("-12", {"type": "integer"}, -12),
        ("2.5", {"type": "number"}, 2.5),
        ("4", {"type": "number"}, 4),
        ("1e3", {"type": "number"}, 1000.0),
        ("true", {"type": "boolean"}, True),
        ("False", {"type": "boolean"}, False),
        ("null", {"type": "null"}, None),
        ("[1, 2]", {"type": "array"}, [1, 2]),
        ('{"a": 1}', {"type": "object"}, {"a": 1}),
        (" 7 ", {"anyOf": [{"type": "integer"}, {"type": "null"}]}, 7),
        ("2", {"enum": [1, 2, 3]}, 2),
    ],
)
def test_text_is_coerced_where_the_schema_asks(text, schema, expected):
    value = coerce_value(text, schema)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        ("3", {"type": "string"}),
        ("3", {"type": ["string", "integer"]}),
        ("3", {}),
        ("2.5", {"type": "integer"}),
        ("three", {"type": "integer"}),
        ("yes", {"type": "boolean"}),
        ("[1, 2", {"type": "array"}),
        ('{"a": 1}', {"type": "array"}),
        ("nan", {"type": "number"}),
        ("0x10", {"type": "integer"}),
    ],
)
def test_ambiguous_or_string_typed_text_is_left_alone(text, schema):
    assert coerce_value(text, schema) == text


def test_xml_style_string_arguments_are_coerced_then_valid():
    result = check(
        {
            "city": "Paris",
            "days": "3",
            "scale": "2.5",
            "metric": "true",
            "hours": "[9, 17]",
            "where": '{"lat": 48.8}',
            "note": "null",
        }
    )
    assert result.ok, result.errors
    assert result.arguments == {
        "city": "Paris",
        "days": 3,
        "scale": 2.5,
        "metric": True,
        "hours": [9, 17],
        "where": {"lat": 48.8},
        "note": "null",
    }  # a string is allowed there: ambiguous


def test_integer_is_accepted_for_number():
    assert check({"city": "Oslo", "scale": 2}).ok


def test_string_parameter_keeps_numeric_text():
    result = check({"city": "123"})
    assert result.ok and result.arguments["city"] == "123"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "get_weather: missing required argument 'city' (a string: City name)"),
        ({"city": "Oslo", "days": "three"}, "get_weather: argument 'days' must be an integer, got string \"three\""),
        (
            {"city": "Oslo", "unit": "kelvin"},
            'get_weather: argument \'unit\' must be one of "c", "f"; got string "kelvin"',
        ),
        (
            {"city": "Oslo", "hours": [9, "noon"]},
            "get_weather: argument 'hours[1]' must be an integer, got string \"noon\"",
        ),
        ({"city": "Oslo", "where": {}}, "get_weather: missing required argument 'where.lat' (a number)"),
        (
            {"city": "Oslo", "where": {"lat": 1, "lon": 2}},
            "get_weather: unexpected argument 'where.lon'; 'where' takes: lat",
        ),
        (
            {"city": "Oslo", "country": "NO"},
            "get_weather: unexpected argument 'country'; get_weather takes: city, days, scale, metric, unit, hours, where, note",
        ),
        (
            {"city": "Oslo", "metric": "maybe"},
            "get_weather: argument 'metric' must be a boolean (true or false), got string \"maybe\"",
        ),
    ],
)
def test_each_error_names_tool_argument_expected_and_got(arguments, message):
    result = check(arguments)
    assert not result.ok
    assert result.errors == [message]


def test_all_errors_are_reported_at_once():
    result = check({"days": "x", "unit": "k"})
    assert len(result.errors) == 3
    assert all(e.startswith("get_weather: ") for e in result.errors)


def test_unknown_tool_lists_the_available_ones():
    registry = Registry([WEATHER, Tool("get_time", "Time.", {"type": "object", "properties": {}})])
    result = validate_call({"name": "get_wether", "arguments": {}}, registry)
    assert result.errors == ["there is no tool named 'get_wether'; the available tools are: get_weather, get_time"]
    listed = validate_call({"name": "x", "arguments": {}}, [WEATHER.openai()])
    assert listed.errors == ["there is no tool named 'x'; the available tools are: get_weather"]
    assert validate_call({"name": "x"}, None).errors == ["there is no tool named 'x', and no tools are available"]


def test_call_object_openai_dict_and_json_string_arguments():
    call = SimpleNamespace(name="get_weather", arguments={"city": "Rome", "days": "2"})
    assert validate_call(call, WEATHER.openai()).arguments == {"city": "Rome", "days": 2}
    assert validate_call({"name": "get_weather", "arguments": '{"city": "Rome"}'}, WEATHER).ok
    broken = validate_call({"name": "get_weather", "arguments": '{"city": '}, WEATHER)
    assert broken.errors[0].startswith("get_weather: the arguments are not valid JSON")
    listed = validate_call({"name": "get_weather", "arguments": [1]}, WEATHER)
    assert listed.errors == ["get_weather: the arguments must be an object of name: value pairs, got array [1]"]
    assert validate_call({"arguments": {}}, WEATHER).errors[0].startswith("the tool call has no tool name")


def test_pydantic_tool_schema_validates():
    class Args(BaseModel):
        query: str
        limit: int | None = None

    tool = Tool.from_model("search", "Search.", Args, lambda a, c: "")
    assert validate_call({"name": "search", "arguments": {"query": "x", "limit": "5"}}, tool).arguments["limit"] == 5
    assert not validate_call({"name": "search", "arguments": {"limit": 5}}, tool).ok


def test_schema_that_closes_itself_is_respected():
    tool = Tool("t", "T.", {"type": "object", "properties": {"a": {}}, "additionalProperties": True})
    assert validate_call({"name": "t", "arguments": {"b": 1}}, tool).ok


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
        max_size=5,
    )
)
def test_validation_never_raises(arguments):
    result = check(arguments)
    assert result.ok == (not result.errors)
    assert all(isinstance(e, str) and e for e in result.errors)
