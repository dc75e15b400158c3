"""The optiq command line: help, version, one-line errors with exit status 2."""

import subprocess
import sys

import pytest

from agent.cli import COMMANDS, MODULES, _with_default_command, build_parser, main


def optiq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    result = optiq("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"    {name} " in result.stdout


def test_version_prints_the_package_version():
    result = optiq("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("optiq ")


@pytest.mark.parametrize("argv", [["--bogus"], ["quantize"], ["bench", "nothing"], ["run", "hi", "--max-steps", "x"]])
def test_bad_arguments_give_one_line_and_status_2(argv):
    result = optiq(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_means_chat():
    assert _with_default_command([]) == ["chat"]
    assert _with_default_command(["--base", "x"]) == ["chat", "--base", "x"]
    assert _with_default_command(["run", "hi"]) == ["run", "hi"]
    assert build_parser().parse_args(["chat", "--base", "x"]).base == "x"


def test_every_command_runs_its_modules_run_and_shows_its_help(capsys):
    import argparse
    import importlib

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in COMMANDS:
        module = importlib.import_module(f"agent.cli.{MODULES.get(name, name)}")
        assert commands[name].get_default("handler") is module.run
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert exit_info.value.code == 0 and help_text.startswith(f"usage: optiq {name} ") and module.HELP in help_text


def test_version_exits_cleanly_in_process():
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0


def test_chat_passes_the_call_guide_setting_to_its_agent(tmp_path):
    from agent.cli.chat import _launcher
    from agent.toolset import plan_tools
    from optiq_runtime.embedded import embedded_base_path

    for flags, guided in (([], True), (["--no-guide-calls"], False)):
        # --mtp off: the guide setting is what this checks, not the MTP cost measurement a fresh home would run.
        args = build_parser().parse_args(["chat", "--model", str(embedded_base_path()), "--mtp", "off", *flags])
        agent = _launcher(args, plan_tools(None, None, tmp_path), tmp_path)(None, None, None)
        try:
            assert agent.sampling.guide_calls is guided
        finally:
            agent.close()
