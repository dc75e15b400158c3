"""`optiq bench decode`: plain and MTP decoding of the same prompts in one run."""

from __future__ import annotations

import json

import pytest
from checkpoints import write_random_checkpoint

from agent.cli import main
from agent.cli.bench import DecodeResult, measure_decode, read_prompts
from optiq_runtime.errors import BadInputError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("bench"), seed=4)


def test_json_report(folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Say hello.\n\nCount to five.\n")
    assert (
        main(
            [
                "bench",
                "decode",
                "--model",
                str(folder),
                "--tokens",
                "12",
                "--repeat",
                "1",
                "--prompts",
                str(prompts),
                "--json",
                "--mtp",
                "on",
                "--mtp-depth",
                "2",
                "--depths",
                "1",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert {"plain_tok_s", "mtp_tok_s", "speedup", "acceptance", "identical"} <= set(result)
    assert result["identical"] is True
    assert result["plain_tok_s"] > 0 and result["mtp_tok_s"] > 0
    assert len(result["speedup_pairs"]) == 2  # one back-to-back pair per prompt
    assert "round_cost" in result and "cpu_time_speedup" in result
    assert min(result["speedup_pairs"]) <= result["speedup"] <= max(result["speedup_pairs"])
    assert len(result["acceptance"]) == 2 and result["prompts"] == 2
    roof = result["roofline"]  # this machine's limits measured in the same run, and the shares of them
    assert roof["gemm_gflops"] > 0 and roof["read_gb_s"] > 0 and roof["params"] > 0 and roof["weight_bytes"] > 0
    assert roof["prefill_fraction"] == pytest.approx(
        result["prefill_tok_s"]["plain"] / roof["prefill_limit_tok_s"], rel=0.05
    )
    assert roof["decode_fraction"] == pytest.approx(result["plain_tok_s"] / roof["decode_limit_tok_s"], rel=0.05)
    assert (
        result["policy"]["mtp"] is True and result["policy"]["depth"] == 2 and "--mtp on" in result["policy"]["reason"]
    )
    assert set(result["depths"]) == {"1"} and result["depths"]["1"]["identical"] is True
    assert len(result["depths"]["1"]["acceptance"]) == 1
    assert result["depths"]["1"]["cpu_time_speedup"] > 0


def test_every_run_decodes_the_asked_tokens(folder):
    from optiq_runtime.engine import Engine

    engine = Engine.load(folder, mtp="on")
    eos = set(engine.tokenizer.eos_token_ids)
    result = measure_decode(engine, ["Hi.", "Bye."], tokens=10, repeat=1, ignore_eos=True)
    assert result.plain_tokens == result.mtp_tokens == 2 * 9  # after the first (prefill) token
    assert set(engine.tokenizer.eos_token_ids) == eos  # restored


def test_text_report(folder, capsys):
    assert (
        main(
            [
                "bench",
                "decode",
                "--model",
                str(folder),
                "--tokens",
                "8",
                "--repeat",
                "1",
                "--mtp",
                "on",
                "--mtp-depth",
                "3",
                "--no-fallback",
                "--depths",
                "none",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fell back" not in out
    assert "speedup" in out and "greedy outputs identical: yes" in out and "depth 3" in out
    assert "of the GEMM limit" in out and "of the read limit" in out


def test_no_head_is_an_error(tmp_path):
    plain = write_random_checkpoint(tmp_path / "plain", seed=4, mtp=False)
    assert main(["bench", "decode", "--model", str(plain), "--tokens", "4"]) == 2


def test_default_prompts_are_held_out_agent_turns():
    prompts = read_prompts(None)
    assert len(prompts) == 24
    assert all(p.messages[-1]["role"] in ("user", "tool") for p in prompts)
    assert sum(bool(p.tools) for p in prompts) >= len(prompts) // 2
    assert any(p.messages[-1]["role"] == "tool" for p in prompts)  # answers from tool results too


def test_jsonl_prompts_take_chats_and_texts(tmp_path):
    chat = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye!"},
        ]
    }
    file = tmp_path / "prompts.jsonl"
    file.write_text(json.dumps(chat) + "\n" + json.dumps({"text": "Count to three."}) + "\n")
    prompts = read_prompts(str(file))
    assert [len(p.messages) for p in prompts] == [1, 3, 1]
    assert prompts[2].messages[0] == {"role": "user", "content": "Count to three."}


def test_runs_stop_at_the_end_of_the_turn_unless_told():
    from optiq_runtime.embedded import embedded_base_path
    from optiq_runtime.engine import Engine

    engine = Engine.load(embedded_base_path(), mtp="on")  # trained: it answers "Hi." in a few tokens
    ended = measure_decode(engine, ["Hi."], tokens=40, repeat=1)
    assert engine.last_stats.finish_reason == "eos"
    assert ended.plain_tokens == ended.mtp_tokens < 39
    told = measure_decode(engine, ["Hi."], tokens=40, repeat=1, ignore_eos=True)
    assert engine.last_stats.finish_reason == "length" and told.plain_tokens == told.mtp_tokens == 39


def test_prompts_file_errors(tmp_path):
    with pytest.raises(BadInputError):
        read_prompts(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(BadInputError):
        read_prompts(str(tmp_path / "empty.txt"))


def test_result_arithmetic():
    result = DecodeResult(
        depth=2,
        tokens=10,
        prompts=1,
        plain_tokens=100,
        plain_s=1.0,
        mtp_tokens=150,
        mtp_s=1.0,
        mtp_steps=60,
        drafted=[60, 60],
        accepted=[45, 30],
        pair_speedups=[1.4, 3.0, 1.5],
    )
    assert result.speedup == pytest.approx(1.5)  # the median pair, not the outlier
    assert result.mtp_tok_s / result.plain_tok_s == pytest.approx(1.5)
    assert result.acceptance == [0.75, 0.5]
    assert result.tokens_per_step == pytest.approx(2.5)
