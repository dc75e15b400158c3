"""The BFCL AST checker gives the official checker's verdicts; the decoder reads prompting-mode answers."""

import json
from pathlib import Path

import pytest

from agent.bfcl import ast_check, decode_pythonic, standardize

CASES = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "bfcl" / "cases.jsonl").open()]


@pytest.mark.parametrize("entry", CASES, ids=[e["id"] for e in CASES])
def test_verdicts_match_the_official_checker(entry):
    for case in entry["cases"]:
        result = ast_check(
            entry["functions"], decode_pythonic(case["answer"]), entry["ground_truth"], entry["category"]
        )
        assert (result["valid"], result["error_type"]) == (case["valid"], case["error_type"]), case
        assert isinstance(result["error"], str) and (result["valid"] or result["error"])


def test_fixture_covers_the_error_types_named_in_the_issue():
    seen = {case["error_type"] for entry in CASES for case in entry["cases"]}
    assert {
        "simple_function_checker:missing_required",
        "type_error:simple",
        "value_error:string",
        "simple_function_checker:unexpected_param",
        None,
    } <= seen
    assert {e["category"] for e in CASES} == {"simple_python", "multiple", "parallel", "parallel_multiple"}


FUNCTIONS = [
    {
        "name": "area",
        "description": "",
        "parameters": {
            "type": "dict",
            "required": ["base"],
            "properties": {
                "base": {"type": "float"},
                "unit": {"type": "string"},
                "point": {"type": "tuple", "items": {"type": "integer"}},
            },
        },
    }
]
TRUTH = [{"area": {"base": [10.0], "unit": ["square meters", ""], "point": [[1, 2], ""]}}]


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        ("area(base=10)", None),  # int accepted for float
        ("area(base=10.0, unit='Square-Meters')", None),  # string normalisation
        ("area(base=10.0, point=(1, 2))", None),  # tuple compared as list
        ("area(base=10.0, unit='sq m')", "value_error:string"),
        ("area(base='10')", "type_error:simple"),
        ("area(unit='m')", "simple_function_checker:missing_required"),
        ("area(base=10.0, height=2)", "simple_function_checker:unexpected_param"),
        ("volume(base=10.0)", "simple_function_checker:wrong_func_name"),
        ("[area(base=10.0), area(base=10.0)]", "simple_function_checker:wrong_count"),
    ],
)
def test_simple_rules(answer, error_type):
    result = ast_check(FUNCTIONS, decode_pythonic(answer), TRUTH, "simple_python")
    assert (result["valid"], result["error_type"]) == (error_type is None, error_type)


def test_parallel_matches_in_any_order():
    functions = [
        {"name": "f", "parameters": {"type": "dict", "required": ["x"], "properties": {"x": {"type": "integer"}}}}
    ]
    truth = [{"f": {"x": [1]}}, {"f": {"x": [2]}}]
    assert ast_check(functions, decode_pythonic("[f(x=2), f(x=1)]"), truth, "parallel")["valid"]
    wrong = ast_check(functions, decode_pythonic("[f(x=2), f(x=3)]"), truth, "parallel")
    assert wrong["error_type"] == "parallel_function_checker_no_order:cannot_find_match"
    assert (
        ast_check(functions, [{"f": {"x": 1}}], truth, "parallel")["error_type"]
        == "parallel_function_checker_no_order:wrong_count"
    )


def test_output_that_is_not_a_call_list():
    result = ast_check(FUNCTIONS, [{"area": 1}], TRUTH, "simple_python")
    assert result == {
        "valid": False,
        "error_type": "ast_decoder:decoder_wrong_output_format",
        "error": "The decoded output is not a list of {function: {arg: value}}.",
    }


def test_standardize():
    assert standardize("April 1, 2024") == standardize("april 1,2024") == "april12024"
    assert standardize("it's") == 'it"s'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[f(a=1, b="x")]', [{"f": {"a": 1, "b": "x"}}]),
        ("f(a=1), g.h(b=[1, 2])", [{"f": {"a": 1}}, {"g.h": {"b": [1, 2]}}]),
        ("```python\n[f(a=-2.5)]\n```", [{"f": {"a": -2.5}}]),
        ("<think>pick f</think>\n[f(a=(1, 2))]", [{"f": {"a": (1, 2)}}]),
        (
            "[f(a=x, b=math.pi(), c=g(k=1), d=2*3, e='a'+'b')]",
            [{"f": {"a": "x", "b": "math.pi()", "c": {"g": {"k": 1}}, "d": 6, "e": "ab"}}],
        ),
        ("[f(a=true)]", [{"f": {"a": "true"}}]),  # as BFCL's decoder reads a bare name
    ],
)
def test_decode_pythonic(text, expected):
    assert decode_pythonic(text) == expected


@pytest.mark.parametrize(
    "text",
    ["[f(1)]", "[f(a=1]", "I would call f", "[f(a=9**9**9)]", "[f(a=lambda: 1)]", "[f(a=__import__('os').getcwd)]"],
)
def test_decode_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        decode_pythonic(text)
