"""The shipped data files, written by the corpus generator with seeds training never uses.

- ``calibration.jsonl``: the quantizer's six-domain mix, 40 samples per domain.
- ``heldout.jsonl``: the same shapes, other seeds, for KL measurement.
- ``eval_suite.jsonl``: BFCL-format entries and agent tasks for ``optiq eval``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training import corpus as C
from training import words as W

DOMAINS = ("prose", "reasoning", "code", "agent_traces", "tool_calls", "instructions")


def domain_record(rng: random.Random, domain: str) -> dict:
    """One calibration/held-out line: ``{"domain", "text"}`` or ``{"domain", "messages", "tools"}``."""
    if domain == "prose":
        return {"domain": domain, "text": C.prose_text(rng)}
    if domain == "reasoning":
        question, answer = C.reasoning_text(rng)
        return {"domain": domain, "text": f"{question}\n{answer}"}
    if domain == "code":
        _, code = C.code_text(rng)
        return {"domain": domain, "text": code.removeprefix("```python\n").removesuffix("\n```")}
    if domain == "instructions":
        question, answer = C.constraint_text(rng)
        return {"domain": domain, "messages": [C.user(question), C.assistant(answer)]}
    chat = C.agent_chat(rng) if domain == "agent_traces" else C.bfcl_chat(rng)
    return {"domain": domain, "messages": chat.messages, "tools": chat.tools}


def domain_records(name: str, per_domain: int, exclude: list[dict] = ()) -> list[dict]:
    """``per_domain`` lines per domain, interleaved, none equal to a line of ``exclude``.

    ``name`` seeds them (``calibration``, ``heldout``).
    """
    seen = {json.dumps(r, sort_keys=True) for r in exclude}
    columns = []
    for domain in DOMAINS:
        column, i = [], 0
        while len(column) < per_domain:
            record = domain_record(random.Random(f"{name}:{domain}:{i}"), domain)
            i += 1
            key = json.dumps(record, sort_keys=True)
            if key not in seen:
                seen.add(key)
                column.append(record)
        columns.append(column)
    return [record for row in zip(*columns) for record in row]


def bfcl_entry(category: str, index: int) -> dict:
    """One BFCL-format entry with inline ``ground_truth`` (none for irrelevance)."""
    task = C.bfcl_task(random.Random(f"eval:{category}:{index}"), category)
    entry = {
        "id": f"{category}_{index}",
        "question": [[{"role": "user", "content": task.question}]],
        "function": task.docs,
    }
    if task.calls:
        truth = []
        for name, args in task.calls:
            expected = {k: [v] for k, v in args.items()}
            expected.update({k: [""] for k in task.optional.get(name, {}) if k not in args})
            truth.append({name: expected})
        entry["ground_truth"] = truth
    return entry


def agent_task(kind: str, index: int) -> dict:
    """One agent task over the built-in tools, with its checks."""
    rng = random.Random(f"eval:agent:{kind}:{index}")
    task = {"id": f"agent_{kind}_{index}"}
    if kind == "arithmetic":
        if index == 0:
            expr, value = "37 * 91", 3367
            prompt = "What is 37 * 91? Use Python."
        else:
            expr, value = C._arith(rng)
            prompt = rng.choice(["What is {e}? Use Python.", "Use Python to compute {e}."]).format(e=expr)
        return {**task, "prompt": prompt, "answer_contains": str(value), "calls_include": ["run_python"]}
    if kind == "read":
        path, code = C.file_name(rng, "txt"), str(rng.randint(1000, 99999))
        return {
            **task,
            "prompt": f"Read `{path}` and tell me what it says.",
            "files": {path: f"The secret code is {code}."},
            "answer_contains": code,
            "calls_include": ["read_file"],
        }
    if kind == "write":
        path, text = C.file_name(rng, "txt"), C.sentence(rng)
        return {
            **task,
            "prompt": f"Write `{text}` to `{path}`.",
            "calls_include": ["write_file"],
            "files_equal": {path: text},
        }
    if kind == "edit":
        path, old, new = C.file_name(rng, "txt"), C.pseudo_word(rng), C.pseudo_word(rng)
        before = f"name = {old}\n"
        return {
            **task,
            "prompt": f"In `{path}`, replace `{old}` with `{new}`.",
            "files": {path: before},
            "calls_include": ["edit_file"],
            "files_equal": {path: before.replace(old, new)},
        }
    if kind == "list":
        folder = rng.choice(["docs", "data", "notes"])
        names = sorted({C.file_name(rng, "txt").split("/")[-1] for _ in range(2)})
        return {
            **task,
            "prompt": f"List the files in `{folder}`.",
            "files": {f"{folder}/{n}": "x\n" for n in names},
            "answer_contains": names[0],
            "calls_include": ["list_dir"],
        }
    question, answer = rng.choice(W.FACTS[:5] + W.SMALL_TALK[:4])
    checks = {"no_calls": True}
    if question in dict(W.FACTS[:5]):
        checks["answer_contains"] = answer.split()[-1].rstrip(".")
    return {**task, "prompt": question, **checks}


def eval_suite() -> list[dict]:
    """About 60 BFCL entries and 20 agent tasks."""
    counts = {"simple_python": 20, "multiple": 15, "parallel": 10, "irrelevance": 15}
    entries = [bfcl_entry(cat, i) for cat, n in counts.items() for i in range(n)]
    agent = {"arithmetic": 5, "read": 4, "write": 3, "edit": 3, "list": 2, "no_tool": 3}
    entries += [agent_task(kind, i) for kind, n in agent.items() for i in range(n)]
    return entries


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def write_datasets(folder: Path) -> None:
    """Write the three shipped files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    calibration = domain_records("calibration", 40)
    _write_jsonl(folder / "calibration.jsonl", calibration)
    _write_jsonl(folder / "heldout.jsonl", domain_records("heldout", 20, exclude=calibration))
    _write_jsonl(folder / "eval_suite.jsonl", eval_suite())


if __name__ == "__main__":
    write_datasets(Path(__file__).resolve().parent.parent / "data")
