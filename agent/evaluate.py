"""Scripted evaluation: run a suite on one or more models, append a result per task, summarise.

BFCL entries get one greedy generation with the entry's functions as tools; the calls are parsed
(never run) and scored by the BFCL AST checker (irrelevance entries pass when no call is made).
Agent tasks run the full agent loop in a fresh temporary workspace with writes approved there,
then their checks are applied. Results are appended to ``results.jsonl`` as they complete, so an
interrupted run keeps them and ``resume`` skips the finished ones.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.agent import Agent
from agent.approval import approve_all
from agent.bfcl import ast_check
from agent.chat import ChatRenderer
from agent.engine import Engine
from agent.suite import AgentTask, BadEntry, BfclEntry, Entry
from agent.toolcalls import parse_tool_calls
from optiq_runtime.guide import CallGuide
from optiq_runtime.progress import Progress, ProgressCallback
from optiq_runtime.sampling import Sampling
from tools.bfcl import to_openai_tool
from tools.tool import Tool
from tools.validate import validate_call

BFCL_MAX_TOKENS = 256
AGENT_MAX_STEPS = 6


@dataclass
class TaskResult:
    """One task on one model: the verdict, what went wrong, the costs, and the trace."""

    model: str
    id: str
    category: str
    kind: str
    passed: bool
    error: str | None = None
    detail: str = ""
    calls: int = 0
    invalid_calls: int = 0
    steps: int = 0
    tokens: int = 0
    decode_s: float = 0.0
    seconds: float = 0.0
    trace: list[dict[str, Any]] = field(default_factory=list)


def run_entry(
    engine: Engine,
    entry: Entry,
    model: str,
    sampling: Sampling | None = None,
    guide_calls: bool = True,
    extra_tools: Sequence[Tool] = (),
) -> TaskResult:
    """Score one entry; a bad entry becomes a failed result carrying its error.

    extra_tools: offered to agent tasks beside the built-ins (``optiq eval --mcp``); BFCL entries bring their own.
    """
    started = time.monotonic()
    if isinstance(entry, BadEntry):
        return TaskResult(model, entry.id, entry.category, "bad", False, error=entry.error)
    try:
        if isinstance(entry, BfclEntry):
            chosen = sampling or Sampling(max_tokens=BFCL_MAX_TOKENS)
            result = run_bfcl(engine, entry, model, replace(chosen, guide_calls=guide_calls))
        else:
            result = run_agent_task(
                engine, entry, model, replace(sampling or Sampling(), guide_calls=guide_calls), extra_tools
            )
    except ValueError as error:  # e.g. a function doc with a type BFCL does not define
        return TaskResult(model, entry.id, entry.category, entry.kind, False, error=str(error))
    result.seconds = time.monotonic() - started
    return result


def run_bfcl(engine: Engine, entry: BfclEntry, model: str, sampling: Sampling) -> TaskResult:
    """One generation over the entry's functions, parsed and checked; nothing is executed."""
    tools = [to_openai_tool(doc) for doc in entry.functions]
    renderer = ChatRenderer(engine.tokenizer, tools)
    prompt = renderer.full(entry.messages)
    text, tokens = _generate(engine, prompt, sampling, tools)
    parsed = parse_tool_calls(text, tools, in_reasoning=renderer.ending_thinking())
    invalid = len(parsed.errors) + sum(not validate_call(call, tools).ok for call in parsed.calls)
    calls = [{call.name: call.arguments} for call in parsed.calls]
    if "irrelevance" in entry.category:
        made = len(parsed.calls) + len(parsed.errors)
        verdict = {"valid": made == 0, "error": "" if made == 0 else f"made {made} call(s) where none was relevant"}
    elif parsed.errors and not parsed.calls:
        verdict = {"valid": False, "error": "; ".join(e.message for e in parsed.errors)}
    else:
        verdict = ast_check(entry.functions, calls, entry.ground_truth, _checker_category(entry.category))
    stats = engine.last_stats
    return TaskResult(
        model,
        entry.id,
        entry.category,
        "bfcl",
        bool(verdict["valid"]),
        detail=str(verdict.get("error") or ""),
        calls=len(parsed.calls) + len(parsed.errors),
        invalid_calls=invalid,
        steps=1,
        tokens=len(tokens),
        decode_s=_decode_seconds(len(tokens), stats.decode_tok_s),
        trace=[{"type": "output", "text": text, "calls": calls}],
    )


def _checker_category(category: str) -> str:
    """The AST checker's name for a category (it reads ``parallel`` and ``multiple`` from it)."""
    return "simple_python" if category in ("simple", "live_simple") else category


def _generate(engine: Engine, prompt: list[int], sampling: Sampling, tools: list[dict]) -> tuple[str, list[int]]:
    text, tokens = [], []
    guide = CallGuide.for_tools(engine.tokenizer, tools) if sampling.guide_calls else None
    for step in engine.stream(prompt, sampling, guide=guide):
        text.append(step.text)
        tokens += list(step.tokens)
    return "".join(text), tokens


def _decode_seconds(tokens: int, tok_s: float) -> float:
    return tokens / tok_s if tok_s else 0.0


def run_agent_task(
    engine: Engine, task: AgentTask, model: str, sampling: Sampling, extra_tools: Sequence[Tool] = ()
) -> TaskResult:
    """The full loop in a fresh workspace seeded with the task's files; writes are approved there.

    A task's ``before`` requests run first in the same session; the checks look at the last request.
    """
    from sandbox import hand_to_workers
    from tools.builtin import builtin_tools
    from tools.registry import Registry

    with tempfile.TemporaryDirectory(prefix="optiq-eval-") as folder:
        workspace = Path(folder)
        for relative, content in task.files.items():
            (workspace / relative).parent.mkdir(parents=True, exist_ok=True)
            (workspace / relative).write_text(content, encoding="utf-8")
        hand_to_workers(workspace)  # run_shell's commands may write there, also when we run as root
        steps = task.max_steps or AGENT_MAX_STEPS
        registry = Registry([*builtin_tools(), *extra_tools])
        with Agent(engine, registry, workspace, approve_all, max_steps=steps, sampling=sampling) as agent:
            for earlier in task.before:
                for _ in agent.send(earlier):
                    pass  # earlier requests stay in the session; only the last one is checked
            events = list(agent.send(task.prompt))
        failures = check_task(task, events, workspace)
    return _agent_result(model, task, events, failures)


def _agent_result(model: str, task: AgentTask, events: list, failures: list[str]) -> TaskResult:
    done = events[-1]
    stats = [e for e in events if e.type == "stats"]
    return TaskResult(
        model,
        task.id,
        task.category,
        "agent",
        not failures,
        detail="; ".join(failures),
        calls=sum(e.type in ("tool_call", "error") for e in events),
        invalid_calls=sum(e.type == "error" or (e.type == "tool_rejected" and e.reason == "invalid") for e in events),
        steps=done.steps,
        tokens=done.tokens,
        decode_s=sum(_decode_seconds(s.tokens, s.decode_tok_s) for s in stats),
        trace=[e.model_dump() for e in events],
    )


def check_task(task: AgentTask, events: list, workspace: Path) -> list[str]:
    """The checks an agent task failed, each as a sentence; empty when it passed."""
    checks, failures = task.checks, []
    answer = events[-1].answer.lower()
    wanted = checks.get("answer_contains", [])
    for text in [wanted] if isinstance(wanted, str) else wanted:
        if text.lower() not in answer:
            failures.append(f"the answer does not contain {text!r}")
    called = {e.call.name for e in events if e.type == "tool_validated"}
    for name in checks.get("calls_include", []):
        if name not in called:
            failures.append(f"{name} was not called")
    if checks.get("no_calls") and any(e.type in ("tool_call", "error") for e in events):
        failures.append("a tool was called where none should be")
    for relative, expected in (checks.get("files_equal") or {}).items():
        file = workspace / relative
        actual = file.read_text(encoding="utf-8") if file.is_file() else None
        if actual is None or _one_trailing_newline(actual) != _one_trailing_newline(expected):
            failures.append(f"{relative} does not hold the expected content")
    return failures


def _one_trailing_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


# -- a whole run


class ResultsFile:
    """``results.jsonl``: one line per task and model, appended and flushed as each completes."""

    def __init__(self, path: Path):
        self.path = path

    def finished(self) -> set[tuple[str, str]]:
        """(model, id) pairs already written; a torn last line (interrupted write) is ignored."""
        return {(r["model"], r["id"]) for r in self.read()}

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def append(self, result: TaskResult) -> None:
        line = json.dumps(asdict(result), default=str) + "\n"
        with self.path.open("a+b") as file:
            file.seek(0, 2)
            if file.tell():
                file.seek(-1, 2)
                if file.read(1) != b"\n":  # a write cut short by an interruption: start a fresh line
                    line = "\n" + line
            file.write(line.encode("utf-8"))


@dataclass
class ModelSpec:
    """A model to evaluate: a short ``label`` for the table and a loader that gives its engine."""

    label: str
    load: Callable[[], Engine]
    guide_calls: bool = True  # tool-call names guided to the offered ones (optiq_runtime.guide)


def evaluate(
    entries: list[Entry],
    models: Iterable[ModelSpec],
    results: ResultsFile,
    progress: ProgressCallback | None = None,
    sampling: Sampling | None = None,
    extra_tools: Sequence[Tool] = (),
    only: set[tuple[str, str]] | None = None,
) -> None:
    """Run every entry on every model, skipping pairs ``results`` already holds.

    sampling: overrides the defaults (greedy, seeded; 256 tokens for BFCL, 512 per agent step).
    only: the (model label, entry id) pairs this process runs (its share of a sharded run; default all).
    """
    finished = results.finished()
    for spec in models:
        share = [e for e in entries if only is None or (spec.label, e.id) in only]
        todo = [e for e in share if (spec.label, e.id) not in finished]
        if not todo:
            continue
        bar = Progress(spec.label, len(share), progress, done=len(share) - len(todo))
        try:
            engine = spec.load()
        except Exception as error:  # any loader failure is reported per entry; the other models still run
            message = f"the model failed to load: {type(error).__name__}: {error}"
            for entry in todo:
                results.append(TaskResult(spec.label, entry.id, entry.category, entry.kind, False, error=message))
                bar.advance()
            continue
        for entry in todo:
            results.append(run_entry(engine, entry, spec.label, sampling, spec.guide_calls, extra_tools))
            bar.advance()
