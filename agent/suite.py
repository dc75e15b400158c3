"""Evaluation suites: BFCL entries and agent tasks read from JSONL files, each line checked on its own.

A BFCL entry has ``id``, ``question`` and ``function``; its ``ground_truth`` is inline or in a
``possible_answer/<same file name>`` beside the file; its category is the ``category`` field or the
id without its number (``parallel_multiple_12`` → ``parallel_multiple``). An agent task has ``id``
and ``prompt``, optional ``files`` (path → content seeded into the workspace), optional ``before``
(earlier requests sent first in the same session, so ``prompt`` is a second or later request) and
checks (``answer_contains``, ``calls_include``, ``no_calls``, ``files_equal``) on the last request. A line that is neither
becomes a ``BadEntry`` naming what is wrong, so one bad line does not stop a run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optiq_runtime.errors import BadInputError

BFCL_CATEGORIES = (
    "simple",
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
)
AGENT_CATEGORY = "agent"
CHECKS = ("answer_contains", "calls_include", "no_calls", "files_equal")
_NUMBERED = re.compile(r"_\d+(-\d+)*$")


@dataclass
class BfclEntry:
    id: str
    category: str
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    ground_truth: list[dict[str, Any]]
    kind: str = "bfcl"


@dataclass
class AgentTask:
    id: str
    category: str
    prompt: str
    files: dict[str, str] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    before: list[str] = field(default_factory=list)
    kind: str = "agent"


@dataclass
class BadEntry:
    """A suite line that cannot run; ``id`` is the entry's id, or ``FILE:LINE`` when it has none."""

    id: str
    category: str
    error: str
    kind: str = "bad"


Entry = BfclEntry | AgentTask | BadEntry


def load_suite(path: str | Path) -> list[Entry]:
    """Every entry of a JSONL file, or of each ``*.jsonl``/``*.json`` file in a folder (sorted)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json") and p.is_file())
        if not files:
            raise BadInputError(f"suite folder {path} holds no .jsonl files")
    elif path.is_file():
        files = [path]
    else:
        raise BadInputError(f"suite {path} does not exist; give a JSONL file or a folder of them")
    entries: list[Entry] = []
    for file in files:
        entries += _load_file(file)
    return entries


def _load_file(file: Path) -> list[Entry]:
    answers = _possible_answers(file)
    entries = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            entries.append(parse_entry(line, f"{file.name}:{number}", answers))
    return entries


def _possible_answers(file: Path) -> dict[str, list | None]:
    """Ground truths by id from ``possible_answer/<file name>`` beside the suite file, if present."""
    answer_file = file.parent / "possible_answer" / file.name
    answers: dict[str, list | None] = {}
    if answer_file.is_file():
        for line in answer_file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a bad answer line shows up as a missing ground truth on its entry
            if isinstance(record, dict) and "id" in record:
                answers[str(record["id"])] = record.get("ground_truth")
    return answers


def parse_entry(line: str, where: str, answers: dict[str, list | None] | None = None) -> Entry:
    """One suite line as an entry, or a ``BadEntry`` saying what is wrong with it."""
    try:
        record = json.loads(line)
    except ValueError as error:
        return BadEntry(where, "?", f"not valid JSON: {error}")
    if not isinstance(record, dict):
        return BadEntry(where, "?", f"expected a JSON object, got {type(record).__name__}")
    entry_id = str(record.get("id") or where)
    if "prompt" in record:
        return _agent_task(entry_id, record)
    if "question" in record or "function" in record:
        return _bfcl_entry(entry_id, record, answers or {})
    return BadEntry(
        entry_id,
        str(record.get("category", "?")),
        "neither a BFCL entry (question, function) nor an agent task (prompt)",
    )


def _agent_task(entry_id: str, record: dict) -> Entry:
    category = str(record.get("category") or AGENT_CATEGORY)
    prompt, files = record.get("prompt"), record.get("files") or {}
    if not isinstance(prompt, str) or not prompt.strip():
        return BadEntry(entry_id, category, "'prompt' must be a non-empty string")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return BadEntry(entry_id, category, "'files' must map paths to file contents (strings)")
    before = record.get("before") or []
    if not _strings(before) or not all(text.strip() for text in before):
        return BadEntry(entry_id, category, "'before' must be a list of earlier requests (non-empty strings)")
    checks = {key: record[key] for key in CHECKS if key in record}
    problem = _check_problem(checks)
    if problem:
        return BadEntry(entry_id, category, problem)
    max_steps = record.get("max_steps")
    steps = max_steps if isinstance(max_steps, int) else None
    return AgentTask(entry_id, category, prompt, files, checks, steps, before)


def _check_problem(checks: dict[str, Any]) -> str | None:
    if not checks:
        return f"an agent task needs at least one check: {', '.join(CHECKS)}"
    contains = checks.get("answer_contains")
    if contains is not None and not (isinstance(contains, str) or _strings(contains)):
        return "'answer_contains' must be a string or a list of strings"
    if "calls_include" in checks and not _strings(checks["calls_include"]):
        return "'calls_include' must be a list of tool names"
    if "no_calls" in checks and not isinstance(checks["no_calls"], bool):
        return "'no_calls' must be true or false"
    files = checks.get("files_equal")
    if files is not None and not (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())):
        return "'files_equal' must map paths to expected contents (strings)"
    return None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _bfcl_entry(entry_id: str, record: dict, answers: dict[str, list | None]) -> Entry:
    category = str(record.get("category") or _NUMBERED.sub("", entry_id))
    if category not in BFCL_CATEGORIES:
        return BadEntry(entry_id, category, f"unknown BFCL category {category!r}; known: {', '.join(BFCL_CATEGORIES)}")
    messages = _messages(record.get("question"))
    if messages is None:
        return BadEntry(entry_id, category, "'question' must be a string, a list of messages or BFCL's list of turns")
    functions = record.get("function")
    if isinstance(functions, dict):
        functions = [functions]
    if not isinstance(functions, list) or not all(isinstance(f, dict) and "name" in f for f in functions):
        return BadEntry(entry_id, category, "'function' must be a list of BFCL function docs (each with a name)")
    truth = record.get("ground_truth", answers.get(entry_id))
    if truth is None and "irrelevance" in category:
        truth = []
    if not isinstance(truth, list):
        return BadEntry(
            entry_id, category, "no 'ground_truth' inline and none in a possible_answer file beside the suite"
        )
    return BfclEntry(entry_id, category, messages, functions, truth)


def _messages(question: Any) -> list[dict[str, Any]] | None:
    """BFCL's question as chat messages: its first turn when it is a list of turns."""
    if isinstance(question, str):
        return [{"role": "user", "content": question}]
    if isinstance(question, list) and question and isinstance(question[0], list):
        question = question[0]
    if (
        isinstance(question, list)
        and question
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in question)
    ):
        return question
    return None
