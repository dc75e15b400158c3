"""Scripted evaluation: suites, bad entries, task checks, resumable results, summary and table."""

import json

import pytest

from agent.evaluate import ModelSpec, ResultsFile, check_task, evaluate
from agent.events import DoneEvent, ToolCall, ToolCallEvent, ToolValidatedEvent
from agent.report import format_table, summarize
from agent.suite import AgentTask, BadEntry, BfclEntry, load_suite
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from optiq_runtime.sampling import Sampling

AREA = {
    "name": "circle_area",
    "description": "Area of a circle.",
    "parameters": {"type": "dict", "properties": {"radius": {"type": "float"}}, "required": ["radius"]},
}
LINES = [
    {
        "id": "simple_0",
        "question": [[{"role": "user", "content": "Area of a circle of radius 3?"}]],
        "function": [AREA],
        "ground_truth": [{"circle_area": {"radius": [3.0]}}],
    },
    {"id": "irrelevance_0", "question": "Tell me a joke.", "function": [AREA]},
    {
        "id": "mul",
        "prompt": "What is 37 * 91? Use Python.",
        "answer_contains": "3367",
        "calls_include": ["run_python"],
        "max_steps": 2,
    },
]
BAD_LINES = [
    "not json",
    json.dumps({"id": "weird_3", "question": "x", "function": [AREA]}),
    json.dumps({"id": "nochecks", "prompt": "hi"}),
    json.dumps({"id": "simple_9", "question": "x", "function": [AREA]}),
    json.dumps({"id": "what"}),
]


def write_suite(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_suite_entries_and_bad_lines_each_carry_their_id(tmp_path):
    entries = load_suite(write_suite(tmp_path / "s.jsonl", LINES + BAD_LINES))
    assert [type(e) for e in entries[:3]] == [BfclEntry, BfclEntry, AgentTask]
    assert entries[0].category == "simple" and entries[1].ground_truth == []
    bad = {e.id: e.error for e in entries[3:]}
    assert all(isinstance(e, BadEntry) for e in entries[3:])
    assert "not valid JSON" in bad["s.jsonl:4"]
    assert "unknown BFCL category 'weird'" in bad["weird_3"]
    assert "at least one check" in bad["nochecks"]
    assert "ground_truth" in bad["simple_9"]
    assert "neither" in bad["what"]


def test_ground_truth_from_a_possible_answer_file_beside_the_suite(tmp_path):
    entry = {k: v for k, v in LINES[0].items() if k != "ground_truth"}
    write_suite(tmp_path / "BFCL_simple.json", [entry])
    (tmp_path / "possible_answer").mkdir()
    write_suite(
        tmp_path / "possible_answer" / "BFCL_simple.json",
        [{"id": "simple_0", "ground_truth": LINES[0]["ground_truth"]}],
    )
    [loaded] = load_suite(tmp_path)
    assert loaded.ground_truth == LINES[0]["ground_truth"]


def test_a_missing_suite_is_bad_input(tmp_path):
    with pytest.raises(BadInputError):
        load_suite(tmp_path / "none.jsonl")


def test_task_checks(tmp_path):
    (tmp_path / "out.txt").write_text("hello\n")
    task = AgentTask(
        "t",
        "agent",
        "p",
        checks={
            "answer_contains": ["THREE", "67"],
            "calls_include": ["run_python"],
            "files_equal": {"out.txt": "hello"},
        },
    )
    call = ToolCall(name="run_python", arguments={"code": "1"})
    done = DoneEvent(answer="three thousand 3367", stop_reason="answered", steps=2, tokens=5, seconds=1)
    assert check_task(task, [ToolCallEvent(call=call), ToolValidatedEvent(call=call), done], tmp_path) == []
    failures = check_task(task, [done], tmp_path)
    assert failures == ["run_python was not called"]
    quiet = AgentTask("q", "agent", "p", checks={"no_calls": True, "files_equal": {"missing.txt": ""}})
    assert check_task(quiet, [ToolCallEvent(call=call), done], tmp_path) == [
        "a tool was called where none should be",
        "missing.txt does not hold the expected content",
    ]


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp="on")


def run_suite(engine, suite, out, specs=None):
    results = ResultsFile(out)
    specs = specs or [ModelSpec("tiny", lambda: engine)]
    evaluate(load_suite(suite), specs, results, sampling=Sampling(max_tokens=8))
    return results


def test_results_repeat_and_resume_skips_finished_tasks(engine, tmp_path):
    suite = write_suite(tmp_path / "s.jsonl", LINES + BAD_LINES[:1])
    first = run_suite(engine, suite, tmp_path / "a.jsonl")
    records = first.read()
    assert [r["id"] for r in records] == ["simple_0", "irrelevance_0", "mul", "s.jsonl:4"]
    assert records[3]["error"] and not records[3]["passed"]
    assert records[2]["trace"][0]["type"] == "user" and records[2]["trace"][-1]["type"] == "done"

    again = run_suite(engine, suite, tmp_path / "b.jsonl").read()
    same = ("passed", "calls", "invalid_calls", "steps", "tokens", "detail")
    assert [[r[k] for k in same] for r in again] == [[r[k] for k in same] for r in records]

    lines = first.path.read_text().splitlines()
    first.path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # interrupted while writing the third
    run_suite(engine, suite, first.path)
    resumed = first.path.read_text().splitlines()
    assert resumed[:2] == lines[:2]
    assert sorted(r["id"] for r in first.read()) == sorted(r["id"] for r in records)


def test_a_model_that_fails_to_load_is_reported_per_entry(engine, tmp_path):
    def broken():
        raise OSError("no such model folder")

    suite = write_suite(tmp_path / "s.jsonl", LINES[:2])
    specs = [ModelSpec("broken", broken), ModelSpec("tiny", lambda: engine)]
    records = run_suite(engine, suite, tmp_path / "r.jsonl", specs).read()
    assert [(r["model"], r["id"]) for r in records] == [
        ("broken", "simple_0"),
        ("broken", "irrelevance_0"),
        ("tiny", "simple_0"),
        ("tiny", "irrelevance_0"),
    ]
    assert all("failed to load" in r["error"] and "no such model folder" in r["error"] for r in records[:2])
    summary = summarize(records, ["broken", "tiny"])
    assert summary["models"]["broken"]["errors"] == 2 and summary["models"]["tiny"]["errors"] == 0
    assert summary["models"]["tiny"]["overall"]["n"] == 2


def test_summary_and_table():
    def record(model, id, category, passed, calls=1, invalid=0, steps=1, error=None):
        return {
            "model": model,
            "id": id,
            "category": category,
            "passed": passed,
            "error": error,
            "calls": calls,
            "invalid_calls": invalid,
            "steps": steps,
            "tokens": 10,
            "decode_s": 0.5,
        }

    records = [
        record("a", "1", "simple", True),
        record("a", "2", "simple", False, invalid=1),
        record("a", "3", "agent", True, steps=3),
        record("a", "x", "?", False, error="bad"),
        record("b", "1", "simple", True),
    ]
    summary = summarize(records, ["a", "b"])
    a = summary["models"]["a"]
    assert summary["categories"] == ["agent", "simple"]
    assert a["categories"]["simple"] == {"n": 2, "passed": 1, "accuracy": 0.5}
    assert a["overall"]["passed"] == 2 and a["overall"]["n"] == 3
    assert a["invalid_call_share"] == pytest.approx(1 / 3)
    assert a["mean_steps"] == pytest.approx(5 / 3)
    assert a["tok_s"] == pytest.approx(20.0) and a["errors"] == 1
    table = format_table(summary).splitlines()
    assert table[0].split("|")[1].strip() == "model" and len(table) == 4
    assert "50.0% (1/2)" in table[2] and "33.3%" in table[2] and table[3].count(" - ") == 1


def test_the_eval_command_prints_the_table_and_refuses_to_overwrite(tmp_path):
    import subprocess
    import sys

    suite = write_suite(tmp_path / "s.jsonl", [LINES[1], BAD_LINES[0]])
    out = tmp_path / "out"

    def optiq_eval(*extra):
        argv = [
            sys.executable,
            "-m",
            "agent.cli",
            "eval",
            str(suite),
            "--model",
            str(embedded_base_path()),
            "--out",
            str(out),
            *extra,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=240)

    first = optiq_eval()
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0].startswith("| model") and "| tiny-agent" in first.stdout
    assert "2/2" in first.stderr  # the progress bar
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["tiny-agent"]["errors"] == 1
    assert len((out / "results.jsonl").read_text().splitlines()) == 2

    refused = optiq_eval()
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = optiq_eval("--resume", "--json")
    assert resumed.returncode == 0 and json.loads(resumed.stdout) == summary
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


FROBNICATE = {
    "name": "zq_frobnicate",
    "description": "Frobnicate a folder.",
    "parameters": {
        "type": "dict",
        "properties": {"target_folder": {"type": "string", "description": "the folder"}},
        "required": ["target_folder"],
    },
}
NEW_TOOL = {
    "id": "simple_python_7",
    "question": [[{"role": "user", "content": "Frobnicate the zq with target_folder `docs`."}]],
    "function": [FROBNICATE],
    "ground_truth": [{"zq_frobnicate": {"target_folder": ["docs"]}}],
}


def test_guided_and_unguided_runs_are_scored_apart(engine, tmp_path):
    suite = write_suite(tmp_path / "s.jsonl", [NEW_TOOL])
    specs = [ModelSpec("tiny", lambda: engine), ModelSpec("tiny (unguided)", lambda: engine, guide_calls=False)]
    results = ResultsFile(tmp_path / "r.jsonl")
    evaluate(load_suite(suite), specs, results, sampling=Sampling(max_tokens=128))
    verdicts = {r["model"]: r for r in results.read()}
    # Unguided, tiny-agent does not write the offered name (it writes one it remembers, or the offered
    # one inside other words); guided, it can only write the offered one.
    assert verdicts["tiny"]["passed"], verdicts["tiny"]["detail"]
    assert not verdicts["tiny (unguided)"]["passed"]
    assert "<function=zq_frobnicate>" not in verdicts["tiny (unguided)"]["trace"][0]["text"]


def test_the_eval_command_labels_unguided_runs(tmp_path):
    from agent.cli import main

    suite = write_suite(tmp_path / "s.jsonl", [NEW_TOOL])
    assert (
        main(
            [
                "eval",
                str(suite),
                "--guide-calls",
                "both",
                "--json",
                "--out",
                str(tmp_path / "out"),
                "--model",
                str(embedded_base_path()),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["models"]) == ["tiny-agent", "tiny-agent (unguided)"]
    with pytest.raises(SystemExit) as bad:
        main(["eval", str(suite), "--guide-calls", "sometimes"])
    assert bad.value.code == 2


def test_earlier_requests_run_first_in_the_same_session(tmp_path):
    import sys
    from pathlib import Path

    from agent.evaluate import run_agent_task

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))
    from scripted import ScriptedEngine, call

    replies = [
        call("write_file", path="draft.txt", content="draft one"),
        "Saved.",
        call("edit_file", path="draft.txt", old="one", new="two"),
        "Changed.",
    ]
    engine = ScriptedEngine(replies)
    [task] = load_suite(
        write_suite(
            tmp_path / "s.jsonl",
            [
                {
                    "id": "second",
                    "before": ["Write 'draft one' to draft.txt"],
                    "prompt": "Now change 'one' to 'two'.",
                    "calls_include": ["edit_file"],
                    "files_equal": {"draft.txt": "draft two"},
                }
            ],
        )
    )
    result = run_agent_task(engine, task, "scripted", Sampling(max_tokens=64))
    assert result.passed, result.detail
    assert "Write 'draft one'" in engine.tokenizer.decode(engine.prompts[-1])  # the first request is in the context
    assert [e["type"] for e in result.trace][0] == "user" and result.trace[0]["text"] == "Now change 'one' to 'two'."
    one_request = AgentTask("first", "agent", "Now change 'one' to 'two'.", checks=task.checks)
    assert not run_agent_task(ScriptedEngine(replies[2:]), one_request, "scripted", Sampling(max_tokens=64)).passed


def test_before_must_be_a_list_of_requests(tmp_path):
    lines = [
        {"id": "a", "prompt": "p", "no_calls": True, "before": "hi"},
        {"id": "b", "prompt": "p", "no_calls": True, "before": ["hi", " "]},
    ]
    entries = load_suite(write_suite(tmp_path / "s.jsonl", lines))
    assert all(isinstance(e, BadEntry) and "'before'" in e.error for e in entries)


def test_the_hand_written_people_suite_loads_whole():
    from agent.cli.eval import _suite_path

    entries = load_suite(_suite_path("people"))
    assert all(isinstance(e, AgentTask) for e in entries) and len(entries) >= 60
    second = [e for e in entries if e.category == "second"]
    assert len(second) >= 20 and all(e.before for e in second)
    assert all(not e.before for e in entries if e.category == "first")
    assert _suite_path(None).name == "eval_suite.jsonl"
