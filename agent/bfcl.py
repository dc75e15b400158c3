"""BFCL's AST checker for the Python categories, and its prompting-mode answer decoder.

The verdicts follow the official checker (gorilla-llm's ``bfcl-eval``, Apache-2.0) rule for
rule, quirks included, because a score is only comparable when it is computed the same way:
strings compare after dropping spaces and ``,./-_*^`` and lower-casing; ``""`` in an answer list
means the argument may be left out; an int passes where a float is expected; a tuple is compared
as a list where a tuple is expected; parallel calls are matched greedily in any order.
"""

from __future__ import annotations

import re
from typing import Any

from agent.callformats import CODE_FENCE, parse_pythonic
from agent.toolcalls import THINK_CLOSE

_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
_NESTED = ("array", "tuple")
_PUNCTUATION = re.compile(r"[ ,./\-_*^]")


def ast_check(functions: list[dict], calls: list[dict], ground_truth: list[dict], category: str) -> dict:
    """``{"valid", "error_type", "error"}`` for decoded ``calls`` against BFCL's ``ground_truth``."""
    if not _is_call_list(calls):
        return _fail(
            "ast_decoder:decoder_wrong_output_format", "The decoded output is not a list of {function: {arg: value}}."
        )
    if "parallel" in category:
        result = _parallel(functions, calls, ground_truth)
    elif "multiple" in category:
        result = _multiple(functions, calls, ground_truth)
    elif len(calls) != 1:
        result = _fail("simple_function_checker:wrong_count", "Wrong number of functions.")
    else:
        result = _function(functions[0] if functions else None, calls[0], ground_truth[0])
    return result


def decode_pythonic(text: str) -> list[dict]:
    """A prompting-mode answer such as ``[f(a=1), g(b="x")]`` as ``[{"f": {"a": 1}}, {"g": {"b": "x"}}]``.

    Reasoning before ``</think>`` and a Markdown code fence are removed first; values are read
    as BFCL's decoder reads them, without running anything. Raises ``ValueError`` when the answer
    is not a list of calls with named arguments.
    """
    if THINK_CLOSE in text:
        text = text.rsplit(THINK_CLOSE, 1)[1]
    fence = CODE_FENCE.search(text)
    code = fence.group(1) if fence else text
    code = code.strip("`\n ")
    if not code.startswith("["):
        code = "[" + code
    if not code.endswith("]"):
        code = code + "]"
    decoded = []
    for item in parse_pythonic(code, bfcl=True):
        if item.error is not None:
            raise ValueError(item.error)
        decoded.append({item.name: item.arguments})
    return decoded


def _fail(error_type: str, error: str) -> dict:
    return {"valid": False, "error_type": error_type, "error": error}


_OK: dict = {"valid": True, "error_type": None, "error": ""}


def _is_call_list(calls: Any) -> bool:
    return type(calls) is list and all(
        type(c) is dict and len(c) == 1 and type(next(iter(c.values()))) is dict for c in calls
    )


def _describe(functions: list[dict], answer: dict) -> dict | None:
    name = next(iter(answer))
    return next((f for f in functions if f.get("name") == name), None)


def _parallel(functions: list[dict], calls: list[dict], answers: list[dict]) -> dict:
    if len(calls) != len(answers):
        return _fail("parallel_function_checker_no_order:wrong_count", "Wrong number of functions.")
    matched: set[int] = set()
    for i, answer in enumerate(answers):
        description = _describe(functions, answer)
        errors = []
        for index, call in enumerate(calls):
            if index in matched:
                continue
            result = _function(description, call, answer)
            if result["valid"]:
                matched.add(index)
                break
            errors.append(f"model call {index}: {result['error']}")
        else:
            return _fail(
                "parallel_function_checker_no_order:cannot_find_match",
                f"Could not find a matching function for index {i} of possible answers. " + " ".join(errors),
            )
    return dict(_OK)


def _multiple(functions: list[dict], calls: list[dict], answers: list[dict]) -> dict:
    if len(calls) != len(answers):
        return _fail("multiple_function_checker:wrong_count", "Wrong number of functions.")
    return _function(_describe(functions, answers[0]), calls[0], answers[0])


def _function(description: dict | None, call: dict, answer: dict) -> dict:
    """BFCL's ``simple_function_checker`` for one call against one answer."""
    if description is None:
        return _fail("simple_function_checker:wrong_func_name", f"No function doc for {next(iter(answer))!r}.")
    expected = next(iter(answer.values()))
    name = description["name"]
    properties = description["parameters"]["properties"]
    if name not in call:
        return _fail("simple_function_checker:wrong_func_name", f"Function name {name!r} not found in model output.")
    arguments = call[name]
    for param in description["parameters"].get("required", []):
        if param not in arguments:
            return _fail("simple_function_checker:missing_required", f"Missing required parameter: {param!r}.")
    for param, value in arguments.items():
        if param not in properties or param not in expected:
            return _fail("simple_function_checker:unexpected_param", f"Unexpected parameter: {param!r}.")
        result = _argument(param, value, properties[param], expected[param])
        if not result["valid"]:
            return result
    for param, options in expected.items():
        if param not in arguments and "" not in options:
            return _fail(
                "simple_function_checker:missing_optional",
                f"Optional parameter {param!r} not provided and not marked as optional.",
            )
    return dict(_OK)


def _argument(param: str, value: Any, spec: dict, options: list) -> dict:
    kind = spec["type"]
    expected_type = _TYPES[kind]
    nested_type = _TYPES[spec["items"]["type"]] if kind in _NESTED else None
    if kind == "tuple" and type(value) is tuple:
        value = list(value)
    if kind == "float" and type(value) is int:
        value = float(value)
    checked = _type_check(param, value, options, kind, expected_type, nested_type)
    if not checked["valid"]:
        return _fail(checked["error_type"], checked["error"])
    if not checked["is_variable"]:
        if expected_type is dict:
            return _dict_check(param, value, options)
        if expected_type is list and nested_type is dict:
            return _list_of_dicts_check(param, value, options)
        if expected_type is str:
            return _string_check(param, value, options)
        if expected_type is list:
            return _list_check(param, value, options)
    if value not in options:
        return _fail(
            "value_error:others", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {options}."
        )
    return dict(_OK)


def _answer_type(options: list) -> type | None:
    return next((type(o) for o in options if o != ""), None)


def _type_check(param: str, value: Any, options: list, kind: str, expected: type, nested: type | None) -> dict:
    """BFCL's ``type_checker``: a value of the answers' own type counts as a variable, not an error."""
    answer_type = _answer_type(options)
    is_variable = answer_type is not None and answer_type is not expected
    error_type = "type_error:simple"
    if type(value) is expected:
        if nested is None:
            return {"valid": True, "is_variable": is_variable}
        if _nested_ok(param, value, options, nested):
            return {"valid": True, "is_variable": is_variable}
        error_type = "type_error:nested"
        if answer_type is not None and type(value) is answer_type:
            return {
                "valid": False,
                "is_variable": True,
                "error_type": error_type,
                "error": f"Nested type checking failed for parameter {param!r}. Expected outer type {kind} "
                f"with inner type {nested.__name__}. Parameter value: {value!r}.",
            }
    if answer_type is not None and type(value) is answer_type:
        return {"valid": True, "is_variable": True}
    return {
        "valid": False,
        "is_variable": False,
        "error_type": "type_error:simple",
        "error": f"Incorrect type for parameter {param!r}. Expected type {kind}, got {type(value).__name__}. "
        f"Parameter value: {value!r}.",
    }


def _nested_ok(param: str, value: Any, options: list, nested: type) -> bool:
    """True when some answer admits every item's type (an answer that is not a list admits all)."""
    for option in options:
        if type(option) is not list:
            return True
        if all(_type_check(param, item, option, nested.__name__, nested, None)["valid"] for item in value):
            return True
    return False


def standardize(text: str) -> str:
    """BFCL's string normal form: no spaces or ``,./-_*^``, lower case, single quotes as double."""
    return _PUNCTUATION.sub("", text).lower().replace("'", '"')


def _std(value: Any) -> Any:
    return standardize(value) if type(value) is str else value


def _string_check(param: str, value: str, options: list) -> dict:
    if standardize(value) not in [standardize(o) for o in options if type(o) is str]:
        return _fail(
            "value_error:string",
            f"Invalid value for parameter {param!r}: {value!r}. Expected one of {options}. Case insensitive.",
        )
    return dict(_OK)


def _list_check(param: str, value: list, options: list) -> dict:
    if [_std(v) for v in value] not in [[_std(o) for o in option] for option in options]:
        return _fail(
            "value_error:list/tuple", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {options}."
        )
    return dict(_OK)


def _dict_check(param: str, value: dict, options: list) -> dict:
    result = _fail("dict_checker:unclear", "")
    for option in options:
        if option == "":
            continue
        result = _one_dict(value, option)
        if result["valid"]:
            return result
    return result


def _one_dict(value: Any, option: Any) -> dict:
    if type(value) is not dict or type(option) is not dict:
        return _fail("dict_checker:unclear", f"Cannot compare {value!r} with {option!r}.")
    result = dict(_OK)
    for key, item in value.items():
        if key not in option:
            result = _fail("value_error:dict_key", f"Unexpected dict key parameter: {key!r}.")
            break
        allowed = [_std(o) for o in option[key]]
        if _std(item) not in allowed:
            result = _fail(
                "value_error:dict_value", f"Invalid value for parameter {key!r}: {item!r}. Expected one of {allowed}."
            )
            break
    for key, allowed in option.items():
        if key not in value and "" not in allowed:
            message = f"Missing dict key parameter: {key!r}."
            error = f"{result['error']} {message}".strip()
            return _fail("value_error:dict_key", error)
    return result


def _list_of_dicts_check(param: str, value: list, options: list) -> dict:
    result = _fail("list_dict_checker:unclear", "")
    for option in options:
        if len(value) != len(option):
            result = _fail("value_error:list_dict_count", "Wrong number of dictionaries in the list.")
            continue
        for item, expected in zip(value, option):
            result = _dict_check(param, item, [expected])
            if not result["valid"]:
                break
        else:
            return dict(_OK)
    return result
