"""`optiq doctor`: the sandbox's layers, BLAS, cache and default model, as text and as JSON."""

import json
import subprocess
import sys

from agent.cli import build_parser
from sandbox import confinement


def optiq(*args: str, home: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "OPTIQ_HOME": home, "OPTIQ_NO_OPENBLAS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_json_names_every_layer_and_the_paths(tmp_path):
    result = optiq("doctor", "--json", home=str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {k: v for k, v in report["sandbox"].items() if k != "confined"} == confinement()
    assert report["cache"] == str(tmp_path)
    assert report["model"] == {
        "name": "tiny-agent-OptiQ-4bit",
        "path": str(tmp_path / "models" / "tiny-agent-OptiQ-4bit"),
        "built": False,
    }
    assert set(report["blas"]) == {"path", "active"} and report["blas"]["active"] is False


def test_text_report_has_one_line_per_item(tmp_path):
    result = optiq("doctor", home=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("sandbox ") and any(line.strip().startswith("filesystem") for line in lines)
    assert any(line.startswith("cache        " + str(tmp_path)) for line in lines)
    assert any(line.startswith("model        tiny-agent-OptiQ-4bit (built on first run") for line in lines)


def test_run_takes_the_shell_approval_and_unconfined_flags():
    args = build_parser().parse_args(["run", "hi", "--approve", "shell", "--allow-unconfined-shell"])
    assert args.approve == "shell" and args.allow_unconfined_shell
    assert build_parser().parse_args(["chat", "--allow-unconfined-shell"]).allow_unconfined_shell


def test_the_cpu_plans_measured_here_are_listed(tmp_path, monkeypatch):
    import mlx.nn as nn

    from optiq_runtime.cpuplan import plan_for

    before = optiq("doctor", home=str(tmp_path))
    assert (
        "none measured yet" in before.stdout
        and json.loads(optiq("doctor", "--json", home=str(tmp_path)).stdout)["cpu_plan"]["plans"] == {}
    )
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path))
    layer = nn.QuantizedLinear(256, 512, bits=4, group_size=64)
    plan = plan_for([layer], dense_bytes=256 * 512 * 4)
    report = json.loads(optiq("doctor", "--json", home=str(tmp_path)).stdout)
    assert list(report["cpu_plan"]["plans"]) == [plan.key]
    line = next(line for line in optiq("doctor", home=str(tmp_path)).stdout.splitlines() if plan.key in line)
    assert f"prefill {plan.prefill} x{plan.prefill_threads} threads, decode {plan.decode}" in line
