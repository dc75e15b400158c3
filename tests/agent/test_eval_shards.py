"""Evaluation over several processes: --shard I/N, optiq eval merge, mlx.launch ranks, a rank that dies."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agent.shard import Plan, merge, parse_shard
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.errors import BadInputError
from tests.agent.test_eval import LINES, write_suite
from tests.ranks import launch, launch_argv

SAME = ("model", "id", "category", "kind", "passed", "error", "detail", "calls", "invalid_calls", "steps", "tokens")
MORE = [
    {
        **LINES[0],
        "id": f"simple_{i}",
        "question": f"Area of a circle of radius {i}?",
        "ground_truth": [{"circle_area": {"radius": [float(i)]}}],
    }
    for i in range(1, 6)
]


def optiq_eval(*args, **kwargs):
    argv = [sys.executable, "-m", "agent.cli", "eval", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)


def verdicts(folder):
    """The results of a folder as a set of comparable rows (timings left out)."""
    records = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    return sorted(tuple(json.dumps(r[k]) for k in SAME) for r in records)


def table_without_speed(text):
    """The table with the tok/s column blanked (the one cell timing changes)."""
    rows = [line.split("|") for line in text.strip().splitlines()]
    column = [cell.strip() for cell in rows[0]].index("tok/s")
    return [[c if i != column or n < 2 else "" for i, c in enumerate(row)] for n, row in enumerate(rows)]


def test_a_shard_takes_every_nth_pair_and_bad_shards_are_refused():
    pairs = Plan(["a", "b"], [str(i) for i in range(5)]).pairs()
    shares = [parse_shard(f"{i}/3").take(pairs) for i in range(3)]
    assert set().union(*shares) == set(pairs) and sum(map(len, shares)) == len(pairs)
    assert shares[1] == {pairs[1], pairs[4], pairs[7]}
    for text in ("3/3", "-1/2", "x", "1"):
        with pytest.raises(BadInputError):
            parse_shard(text)


def test_merging_folders_of_another_run_is_refused(tmp_path):
    for name, ids in (("x", ["1"]), ("y", ["2"])):
        (tmp_path / name).mkdir()
        Plan(["a"], ids).write(tmp_path / name)
    with pytest.raises(BadInputError, match="other models or tasks"):
        merge([tmp_path / "x", tmp_path / "y"], tmp_path / "out")
    with pytest.raises(BadInputError, match="no plan.json"):
        merge([tmp_path], tmp_path / "out")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("suite") / "s.jsonl", LINES + MORE)


@pytest.fixture(scope="module")
def one_process(suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    result = optiq_eval(str(suite), "--model", str(embedded_base_path()), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.slow
def test_shards_in_separate_folders_merge_into_the_one_process_results(suite, one_process, tmp_path):
    model = str(embedded_base_path())
    folders = [tmp_path / "host0", tmp_path / "host1"]
    for i, folder in enumerate(folders):
        shard = optiq_eval(str(suite), "--model", model, "--out", str(folder), "--shard", f"{i}/2")
        assert shard.returncode == 0 and shard.stdout == "", shard.stderr
        assert "optiq eval merge" in shard.stderr

    partial = optiq_eval("merge", str(folders[0]), "--out", str(tmp_path / "partial"))
    assert (
        partial.returncode == 1
        and "4 task(s) not recorded: tiny-agent/irrelevance_0, tiny-agent/simple_1" in partial.stderr
    )

    merged = optiq_eval("merge", *map(str, folders), "--out", str(tmp_path / "all"))
    assert merged.returncode == 0, merged.stderr
    assert verdicts(tmp_path / "all") == verdicts(one_process[0])
    assert table_without_speed(merged.stdout) == table_without_speed(one_process[1])

    assert optiq_eval(str(suite), "--model", model, "--shard", "0/2").returncode == 2  # no --out
    again = optiq_eval(str(suite), "--model", model, "--out", str(folders[0]), "--shard", "0/2")
    assert again.returncode == 2 and "--resume" in again.stderr

    shard0 = (folders[0] / "parts" / "shard-0-of-2.jsonl").read_text().splitlines()
    rest = optiq_eval(
        str(suite), "--model", model, "--out", str(folders[0]), "--resume"
    )  # one process finishes the run
    assert rest.returncode == 0, rest.stderr
    assert verdicts(folders[0]) == verdicts(one_process[0])
    kept = {line for line in (folders[0] / "results.jsonl").read_text().splitlines()}
    assert set(shard0) <= kept  # shard 0's results were kept, not run again


@pytest.mark.slow
def test_two_ranks_under_mlx_launch_equal_one_process_and_resume(suite, one_process, tmp_path):
    out = tmp_path / "ranks"
    argv = ["-m", "agent.cli", "eval", str(suite), "--model", str(embedded_base_path()), "--out", str(out)]
    run = launch(*argv)
    assert run.returncode == 0, run.stderr
    assert verdicts(out) == verdicts(one_process[0])
    assert table_without_speed(run.stdout) == table_without_speed(one_process[1])  # printed once, by rank 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["tiny-agent"]["overall"]["n"] == len(LINES + MORE)

    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:3]) + "\n")
    for part in (out / "parts").glob("*.jsonl"):
        part.unlink()
    resumed = launch(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "results.jsonl").read_text().splitlines()[:3] == lines[:3]  # kept, not run again
    assert verdicts(out) == verdicts(one_process[0])


@pytest.mark.slow
def test_a_rank_that_dies_leaves_its_results_and_the_missing_tasks_are_named(suite, tmp_path):
    out = tmp_path / "ranks"
    argv = launch_argv("-m", "agent.cli", "eval", str(suite), "--model", str(embedded_base_path()), "--out", str(out))
    launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part, alive = out / "parts" / "shard-1-of-2.jsonl", out / "parts" / "shard-1-of-2.alive"
    deadline = time.monotonic() + 300
    while not (part.exists() and part.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(int(alive.read_text()), signal.SIGKILL)
    stdout, stderr = launcher.communicate(timeout=300)
    recorded = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert "not recorded" in stderr and "--resume" in stderr, stderr
    assert stdout.startswith("| model")
    missing = stderr.split("not recorded: ")[1].split(";")[0].split(", ")
    assert set(recorded).isdisjoint(m.split("/", 1)[1] for m in missing)
    assert len(recorded) + len(missing) == len(LINES + MORE) and len(recorded) >= 1


def test_ranks_refuses_what_it_cannot_do(suite, capsys):
    from agent.cli import main

    assert main(["eval", str(suite), "--ranks", "0"]) == 2
    assert "--ranks must be at least 1" in capsys.readouterr().err
    assert main(["eval", str(suite), "--ranks", "2", "--shard", "0/2", "--out", "x"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["eval", "merge", "x", "--ranks", "2"]) == 2
    assert "leave out --ranks" in capsys.readouterr().err


@pytest.mark.slow
def test_ranks_under_mlx_launch_is_refused(suite, tmp_path):
    run = launch("-m", "agent.cli", "eval", str(suite), "--ranks", "2", "--out", str(tmp_path / "out"))
    assert run.stderr.count("under mlx.launch leave it out") == 2, run.stderr


@pytest.mark.slow
def test_two_ranks_started_with_ranks_equal_one_process(suite, one_process, tmp_path):
    out = tmp_path / "ranks"
    run = optiq_eval(str(suite), "--model", str(embedded_base_path()), "--out", str(out), "--ranks", "2")
    assert run.returncode == 0, run.stderr
    assert verdicts(out) == verdicts(one_process[0])
    assert table_without_speed(run.stdout) == table_without_speed(one_process[1])  # rank 0's table, nothing else
    assert "rank 1: [1] tiny-agent" in run.stderr and "\n[0] tiny-agent" in run.stderr  # rank 1's progress, prefixed


def start_ranks(suite, out):
    """``optiq eval --ranks 2`` running; returns it once rank 1 has recorded a task (it has three more, rank 0 its four)."""
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
        "--ranks",
        "2",
    ]
    launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = out / "parts" / "shard-1-of-2.jsonl"
    deadline = time.monotonic() + 300
    while not (part.exists() and part.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    return launcher


def rank_pid(out, rank):
    return int((out / "parts" / f"shard-{rank}-of-2.alive").read_text())


def assert_missing_named(out, stderr):
    recorded = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert "not recorded" in stderr and "--resume" in stderr, stderr
    missing = stderr.split("not recorded: ")[1].split(";")[0].split(", ")
    assert set(recorded).isdisjoint(m.split("/", 1)[1] for m in missing)
    assert len(recorded) + len(missing) == len(LINES + MORE) and len(recorded) >= 1


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_with_ranks_a_rank_that_dies_stops_the_run_and_rank_0_names_the_missing_tasks(suite, tmp_path):
    out = tmp_path / "ranks"
    launcher = start_ranks(suite, out)
    os.kill(rank_pid(out, 1), signal.SIGKILL)
    stdout, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode == 1, stderr
    assert "optiq eval: rank 1 was ended by signal 9; stopping the other ranks" in stderr
    assert stdout.startswith("| model")
    assert_missing_named(out, stderr)


@pytest.mark.slow
def test_with_ranks_ctrl_c_stops_every_rank_and_rank_0_merges_what_was_recorded(suite, tmp_path):
    out = tmp_path / "ranks"
    launcher = start_ranks(suite, out)
    pids = [rank_pid(out, r) for r in range(2)]
    launcher.send_signal(signal.SIGINT)
    stdout, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode == 130, stderr
    assert "optiq eval: interrupted; merging what was recorded" in stderr, stderr
    assert stdout.startswith("| model")
    assert_missing_named(out, stderr)
    assert all(map(gone, pids))  # rank 1 interrupted too (or done): test_local_ranks checks every rank gets the signal


def test_a_stop_that_comes_while_a_tool_runs_stops_the_rank_not_the_tool(tmp_path):
    """Session 22's CI: SIGTERM landed inside run_python, the tool boundary turned it into the tool's error,
    and rank 0 ran its last tasks and hung on the dead rank until the launcher killed it (137, not 1)."""
    import threading

    from agent.cli.eval_ranks import Stopped, _raise_stopped
    from agent.toolrun import ToolRunner
    from tools.builtin import builtin_tools
    from tools.registry import Registry

    runner, run_python = ToolRunner(tmp_path), Registry(builtin_tools())["run_python"]
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    stop = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        runner.execute(run_python, {"code": "print(1)"})  # the sandbox is up
        stop.start()
        with pytest.raises(Stopped):
            runner.execute(run_python, {"code": "while True:\n    pass"})
    finally:
        stop.cancel()
        signal.signal(signal.SIGTERM, previous)
        runner.close()
