"""Calibration and held-out data: JSONL checks, chat rendering with tools, per-domain shares."""

from __future__ import annotations

import json

import pytest

from optiq_runtime.calibration import (
    CALIBRATION_FILE,
    HELDOUT_FILE,
    Sample,
    calibration_tokens,
    heldout_tokens,
    read_samples,
    render,
    stratify,
)
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.errors import BadInputError
from optiq_runtime.load import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(embedded_base_path())


def test_shipped_mix_has_six_domains_of_forty():
    samples = read_samples(CALIBRATION_FILE)
    counts = {}
    for sample in samples:
        counts[sample.domain] = counts.get(sample.domain, 0) + 1
    assert len(counts) == 6 and set(counts.values()) == {40}


def test_heldout_is_not_calibration_text():
    calibration = {json.dumps(vars(s), sort_keys=True) for s in read_samples(CALIBRATION_FILE)}
    heldout = {json.dumps(vars(s), sort_keys=True) for s in read_samples(HELDOUT_FILE)}
    assert not calibration & heldout


def test_not_jsonl_is_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"domain": "prose", "text": "fine"}\nnot json at all\n')
    with pytest.raises(BadInputError, match="line 2 is not JSON"):
        read_samples(bad)


def test_sample_without_text_or_messages_is_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"domain": "prose"}\n')
    with pytest.raises(BadInputError, match="line 1"):
        read_samples(bad)


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        read_samples(tmp_path / "none.jsonl")


def test_chat_samples_render_through_the_template_with_tools(tokenizer):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_weather",
                "description": "weather",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    sample = Sample("tool_calls", messages=[{"role": "user", "content": "Rain in Oslo?"}], tools=tools)
    text = tokenizer.decode(render(sample, tokenizer))
    assert "lookup_weather" in text and "Rain in Oslo?" in text
    plain = Sample("prose", text="Rain in Oslo?")
    assert tokenizer.decode(render(plain, tokenizer)) == "Rain in Oslo?"


def test_token_cap_gives_every_domain_its_share(tokenizer):
    tokens = calibration_tokens(tokenizer, seq_len=64, max_tokens=1536)
    assert tokens.rows.shape == (24, 64)
    assert len(tokens.domains) == 6
    assert set(tokens.domains.values()) == {256}


def test_heldout_keeps_whole_samples(tokenizer):
    tokens = heldout_tokens(tokenizer, seq_len=256)
    assert tokens.tokens >= 256 * 10


def test_stratify_interleaves_domains():
    samples = [Sample(d, text=f"{d}{i}") for d in "ab" for i in range(4)]
    picked = stratify(samples, 0.5)
    assert [s.domain for s in picked] == ["a", "b", "a", "b"]


class Plain:
    """A tokenizer without a chat template (a pretrained-only base)."""

    chat_template = None
    eos_token_id = 0

    def encode(self, text, add_special_tokens=True):
        return [ord(c) for c in text]


def test_chats_without_a_template_render_as_plain_turns():
    sample = Sample(
        "agent_traces", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    )
    assert "".join(map(chr, render(sample, Plain()))) == "user: hi\n\nassistant: yo"
