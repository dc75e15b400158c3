"""The README's two set-up commands exist, and CI runs the test one verbatim."""

from pathlib import Path

from scripts.readme_command import readme_command

ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_both_commands_as_single_lines():
    assert readme_command("run").endswith("optiq")
    assert "pytest" in readme_command("test")
    for which in ("run", "test"):
        assert "\n" not in readme_command(which)


def test_ci_runs_the_readme_test_command():
    assert "scripts/readme_command.py test" in (ROOT / ".ci" / "run").read_text()
