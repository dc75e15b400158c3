"""Rebuild ``cases.jsonl`` from BFCL's public data, with verdicts from BFCL's own checker.

Origin: the ``bfcl-eval`` wheel on PyPI (gorilla-llm, Berkeley Function Calling Leaderboard,
Apache-2.0), version noted in ``README.md`` here. This script is not part of the test suite and
is not imported by the project; it only records what the official code answers.

    pip download --no-deps -d /tmp/bfcl bfcl-eval && cd /tmp/bfcl && unzip -q *.whl -d x
    python tests/data/bfcl/derive.py /tmp/bfcl/x/bfcl_eval > tests/data/bfcl/cases.jsonl

Each entry of a sample of ``simple_python``, ``multiple``, ``parallel`` and ``parallel_multiple``
gets prompting-mode answers, one line per entry, (the correct one and mutations of it). The official decoder turns
each answer into calls, the official AST checker gives the verdict, and both are written down.
"""

from __future__ import annotations

import ast
import collections
import enum
import json
import re
import sys
from pathlib import Path

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
PER_CATEGORY = 16


def official(root: Path) -> dict:
    """The official checker and decoder functions, loaded without the package's heavy imports."""

    class Language(enum.Enum):
        PYTHON = "python"
        JAVA = "java"
        JAVASCRIPT = "javascript"

    class Config:
        underscore_to_dot = False

    source = (root / "eval_checker/ast_eval/ast_checker.py").read_text()
    source = source[source.index("#### Constants ####") :]
    space = {
        "re": re,
        "ast": ast,
        "Language": Language,
        "MODEL_CONFIG_MAPPING": collections.defaultdict(Config),
        "JAVA_TYPE_CONVERSION": {},
        "JS_TYPE_CONVERSION": {},
    }
    exec(compile(source, "ast_checker.py", "exec"), space)
    utils = (root / "model_handler/utils.py").read_text()
    tree = ast.parse(utils)
    wanted = {"resolve_ast_call", "resolve_ast_by_type"}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            exec(compile(ast.Module([node], []), "utils.py", "exec"), space)
    space["Language_"] = Language
    return space


def decode(space: dict, answer: str) -> list:
    """BFCL's default_decode_ast_prompting for Python."""
    text = answer.strip("`\n ")
    if not text.startswith("["):
        text = "[" + text
    if not text.endswith("]"):
        text += "]"
    body = ast.parse(text.strip().strip("'"), mode="eval").body
    nodes = [body] if isinstance(body, ast.Call) else body.elts
    return [space["resolve_ast_call"](n) for n in nodes]


def call_text(name: str, arguments: dict) -> str:
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in arguments.items()) + ")"


def answer_text(calls: list[tuple[str, dict]]) -> str:
    return "[" + ", ".join(call_text(n, a) for n, a in calls) + "]"


def pick(options: list, last: bool = False):
    real = [o for o in options if o != ""]
    return (real[-1] if last else real[0]) if real else None


def correct(ground_truth: list, last: bool = False) -> list[tuple[str, dict]]:
    calls = []
    for answer in ground_truth:
        name, params = next(iter(answer.items()))
        calls.append((name, {k: pick(v, last) for k, v in params.items() if pick(v, last) is not None}))
    return calls


def wrong_type(value):
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, str):
        return 12345
    if isinstance(value, (int, float)):
        return "12345"
    if isinstance(value, list):
        return "x"
    return [1]


def wrong_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return "qqq nonsense"
    if isinstance(value, (int, float)):
        return value + 1007
    if isinstance(value, list):
        return value + [value[0] if value else 1]
    if isinstance(value, dict):
        return {**value, "zz_key": 1}
    return value


def types_of(function: dict) -> dict:
    return {k: v.get("type") for k, v in function["parameters"]["properties"].items()}


def mutations(entry: dict, truth: list) -> list[tuple[str, list]]:
    base = correct(truth)
    out = [("correct", base), ("correct_last_option", correct(truth, last=True))]
    name, args = base[0]
    function = next((f for f in entry["function"] if f["name"] == name), entry["function"][0])
    types = types_of(function)
    required = function["parameters"].get("required", [])

    def with_args(new_args, calls=base):
        return [(name, new_args)] + list(calls[1:])

    present_required = [r for r in required if r in args]
    if present_required:
        out.append(("missing_required", with_args({k: v for k, v in args.items() if k != present_required[0]})))
    out.append(("unexpected_param", with_args({**args, "zz_extra": 1})))
    out.append(("wrong_name", [(name + "_v2", args)] + base[1:]))
    for key, value in args.items():
        kind = types.get(key)
        out.append((f"wrong_type:{kind}", with_args({**args, key: wrong_type(value)})))
        out.append((f"wrong_value:{kind}", with_args({**args, key: wrong_value(value)})))
        if isinstance(value, list) and value:
            out.append((f"wrong_item_type:{kind}", with_args({**args, key: [wrong_type(v) for v in value]})))
        if isinstance(value, dict) and value:
            out.append(("dict_key_missing", with_args({**args, key: dict(list(value.items())[1:])})))
        if isinstance(value, str):
            out.append(("string_normalised", with_args({**args, key: value.upper().replace(" ", "-") + "."})))
        if kind == "float" and isinstance(value, float) and value.is_integer():
            out.append(("int_for_float", with_args({**args, key: int(value)})))
        if kind in ("array", "tuple") and isinstance(value, list):
            out.append((f"tuple_for_{kind}", with_args({**args, key: tuple(value)})))
    optional = [k for k, v in next(iter(truth[0].values())).items() if "" in v and k in args]
    if optional:
        out.append(("optional_omitted", with_args({k: v for k, v in args.items() if k != optional[0]})))
    strict = [k for k, v in next(iter(truth[0].values())).items() if "" not in v and k in args and k not in required]
    if strict:
        out.append(("optional_dropped", with_args({k: v for k, v in args.items() if k != strict[0]})))
    if len(base) > 1:
        out.append(("reordered", list(reversed(base))))
        out.append(("one_call_missing", base[:-1]))
    return out


def sample(entries: list[dict]) -> list[dict]:
    """Entries with the rarer parameter types first, then an even spread of the rest."""

    def rare(entry):
        kinds = {t for f in entry["function"] for t in types_of(f).values()}
        return bool(kinds & {"tuple", "dict", "float", "any"})

    chosen = [e for e in entries if rare(e)][: PER_CATEGORY // 2]
    rest = [e for e in entries if e not in chosen]
    step = max(1, len(rest) // (PER_CATEGORY - len(chosen)))
    return chosen + rest[::step][: PER_CATEGORY - len(chosen)]


def main(root: Path) -> None:
    space = official(root)
    for category in CATEGORIES:
        entries = [json.loads(line) for line in (root / f"data/BFCL_v4_{category}.json").open()]
        truths = {
            e["id"]: e["ground_truth"]
            for e in map(json.loads, (root / f"data/possible_answer/BFCL_v4_{category}.json").open())
        }
        for entry in sample(entries):
            truth = truths[entry["id"]]
            cases = []
            for label, calls in mutations(entry, truth):
                answer = answer_text(calls)
                decoded = decode(space, answer)
                verdict = space["ast_checker"](
                    entry["function"], decoded, truth, space["Language_"].PYTHON, category, "local"
                )
                cases.append(
                    {
                        "case": label,
                        "answer": answer,
                        "valid": verdict["valid"],
                        "error_type": None if verdict["valid"] else verdict["error_type"],
                    }
                )
            print(
                json.dumps(
                    {
                        "id": entry["id"],
                        "category": category,
                        "functions": entry["function"],
                        "ground_truth": truth,
                        "cases": cases,
                    }
                )
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
