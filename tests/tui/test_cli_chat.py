"""`optiq chat` refuses bad flags in one line before the screen opens."""

from __future__ import annotations

import subprocess
import sys


def optiq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120)


def test_a_missing_workspace_is_one_line_and_status_2(tmp_path):
    result = optiq("chat", "--workspace", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is not a folder") and "Traceback" not in result.stderr


def test_model_and_base_together_are_refused(tmp_path):
    result = optiq("--model", str(tmp_path), "--base", str(tmp_path))
    assert result.returncode == 2
    assert "not both" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_chat_help_lists_its_flags():
    result = optiq("chat", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--base", "--no-mtp", "--mtp-depth", "--workspace", "--tools"):
        assert flag in result.stdout
