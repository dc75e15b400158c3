"""KL measurement: exact against the textbook formula, zero for a model against itself, held-out by default."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from agent.cli import main
from optiq_runtime.calibration import heldout_tokens
from optiq_runtime.kl import Reference, log_softmax, measure_kl, per_token_kl, summarize, token_kl
from optiq_runtime.load import load_model


@pytest.fixture(scope="module")
def base(random_base):
    return random_base


@pytest.fixture(scope="module")
def uniform(uniform_build):
    return uniform_build


def test_prepared_reference_matches_the_definition():
    mx.random.seed(0)
    reference = mx.random.normal((2, 7, 300)) * 4
    model = reference + mx.random.normal(reference.shape) * 0.3
    expected = token_kl(log_softmax(reference), model)
    assert mx.allclose(Reference.from_logits(reference).kl(model), expected, atol=1e-5).item()
    assert (mx.abs(Reference.from_logits(reference).kl(reference)) < 1e-5).all().item()


def test_summary_statistics():
    report = summarize(np.arange(101, dtype=np.float64))
    assert (report.mean, report.median, report.p95, report.tokens) == (50.0, 50.0, 95.0, 101)


def test_a_model_is_at_zero_kl_from_itself(base):
    model = load_model(base).model
    rows = mx.array(np.random.default_rng(0).integers(0, 4000, (3, 32)), dtype=mx.int32)
    values = per_token_kl(model, model, rows)
    assert values.shape == (96,) and np.abs(values).max() < 1e-4


def test_quantized_model_on_heldout_by_default(base, uniform):
    report = measure_kl(uniform, base, max_tokens=768)
    tokenizer = load_model(uniform).tokenizer
    assert report.tokens == heldout_tokens(tokenizer, max_tokens=768).tokens == 768
    assert 0 < report.median <= report.p95 and report.mean > 0


def test_cli_json(base, uniform, tmp_path, capsys):
    data = tmp_path / "held.jsonl"
    data.write_text("\n".join(json.dumps({"domain": "prose", "text": "a b c d e f g " * 60}) for _ in range(3)))
    assert main(["kl", "--model", str(uniform), "--reference", str(base), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"mean", "median", "p95", "tokens"} and report["tokens"] >= 256


def test_cli_missing_model_exits_2(base, tmp_path, capsys):
    assert main(["kl", "--model", str(tmp_path / "none"), "--reference", str(base)]) == 2
    assert "does not exist" in capsys.readouterr().err
