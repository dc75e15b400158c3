"""`optiq run`: JSON events, exit statuses, bad arguments; on the real embedded model."""

import os
import shutil
import subprocess
import sys

import pytest
from pydantic import TypeAdapter

from agent.events import AgentEvent
from optiq_runtime.embedded import embedded_base_path

MODEL = str(embedded_base_path())


def optiq_run(*args: str, home, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTIQ_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", *args], capture_output=True, text=True, timeout=240, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def measured_home(tmp_path_factory):
    """A home where `optiq run` has measured the embedded model's MTP costs once (a minute on this machine)."""
    home = tmp_path_factory.mktemp("measured-home")
    result = optiq_run("hi", "--model", MODEL, "--max-tokens", "1", "--workspace", str(home), home=home)
    assert list((home / "mtp_costs").glob("*.json")), result.stderr
    return home


def home_measured_in(measured_home, tmp_path):
    """A fresh home that shares only the measured MTP costs (its sessions stay its own)."""
    shutil.copytree(measured_home / "mtp_costs", tmp_path / "mtp_costs")
    return tmp_path


def test_json_mode_prints_one_event_per_line_ending_with_done(tmp_path, measured_home):
    result = optiq_run(
        "Say hi.",
        "--model",
        MODEL,
        "--max-tokens",
        "8",
        "--max-steps",
        "1",
        "--json",
        "--workspace",
        str(tmp_path),
        home=home_measured_in(measured_home, tmp_path),
    )
    events = [TypeAdapter(AgentEvent).validate_json(line) for line in result.stdout.splitlines()]
    assert events[0].type == "user" and events[-1].type == "done"
    assert result.returncode == (0 if events[-1].answered else 1)
    assert "Traceback" not in result.stderr
    [trace] = (tmp_path / "sessions").glob("*.jsonl")
    assert len(trace.read_text().splitlines()) == len(events)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-steps", "0"], "--max-steps must be at least 1"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--workspace", "/nonexistent/folder"], "is not a folder"),
        (["--tools", "/nonexistent/tools.py"], "is not a file"),
        (["--model", MODEL, "--base", MODEL], "not both"),
        (["--approve", "maybe"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    result = optiq_run("hi", *args, home=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_limit_stop_exits_1_and_says_why_on_stderr(tmp_path, measured_home):
    home = home_measured_in(measured_home, tmp_path)
    result = optiq_run(
        "Write a long poem.", "--model", MODEL, "--max-tokens", "2", "--workspace", str(tmp_path), home=home
    )
    if result.returncode == 1:
        assert "optiq run: stopped (" in result.stderr
    else:  # the model answered in under two tokens
        assert result.returncode == 0
