"""The reduced draft vocabulary: drafts over the K most frequent tokens, outputs unchanged, recorded in the build."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import pytest
from test_guide import prompt_ids, unseen_schema_chats

from optiq_runtime.calibration import CALIBRATION_FILE, read_samples
from optiq_runtime.draft_vocab import (
    DRAFT_VOCAB_FILE,
    DraftProjection,
    frequent_tokens,
    read_draft_vocab,
    write_draft_vocab,
)
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from optiq_runtime.guide import CallGuide
from optiq_runtime.sampling import Sampling

K = 256  # of tiny-agent's 4096 tokens: small enough that many drafts fall outside it


@pytest.fixture(scope="module")
def engine():
    engine = Engine.load(embedded_base_path(), mtp="on")
    engine.auto_fallback = False
    vocab = engine.backbone.args.vocab_size
    engine.use_draft_vocab(frequent_tokens(engine.tokenizer, read_samples(CALIBRATION_FILE), K, vocab))
    return engine


def test_frequent_tokens_rank_by_count_then_fill_by_id(engine):
    vocab = engine.backbone.args.vocab_size
    top = frequent_tokens(engine.tokenizer, read_samples(CALIBRATION_FILE)[:5], 3000, vocab)
    assert len(top) == len(set(top)) == 3000 and all(0 <= t < vocab for t in top)
    newline = engine.tokenizer.encode("\n")[-1]
    assert newline in top[:50]  # chats are full of newlines


def test_projection_scores_only_the_draft_tokens(engine):
    output = engine.backbone.body.embed_tokens
    tokens = [5, 17, 300]
    projection = DraftProjection(output, tokens, engine.backbone.args.vocab_size)
    normed = mx.random.normal((1, 2, engine.backbone.args.hidden_size))
    logits, full = projection(normed), engine.backbone.output(normed)
    assert logits.shape == full.shape
    assert mx.allclose(logits[..., tokens], full[..., tokens], atol=1e-4).item()
    assert mx.isinf(logits).sum().item() == 2 * (logits.shape[-1] - len(tokens))


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_greedy_outputs_equal_plain_ones(engine, depth, fused):
    engine.fuse_rounds, engine.mtp_depth = fused, depth
    try:
        for chat in unseen_schema_chats(3):
            ids = prompt_ids(engine.tokenizer, chat)
            for guide in (None, CallGuide.for_tools(engine.tokenizer, chat.tools)):
                engine.mtp_enabled = False
                plain = engine.generate(ids, Sampling(max_tokens=64), guide=guide)
                engine.mtp_enabled = True
                assert engine.generate(ids, Sampling(max_tokens=64), guide=guide) == plain
                assert engine.last_stats.mtp_used and sum(engine.last_stats.drafted)
    finally:
        engine.fuse_rounds, engine.mtp_depth = True, 2


def test_drafts_stay_inside_the_draft_vocabulary_when_sampling(engine):
    chat = unseen_schema_chats(1)[0]
    out = engine.generate(prompt_ids(engine.tokenizer, chat), Sampling(max_tokens=32, temperature=1.0, seed=3))
    assert out and engine.last_stats.mtp_used


def test_the_build_records_it_and_the_engine_loads_it(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(embedded_base_path(), folder)
    entry = write_draft_vocab(folder, [3, 1, 2], "calibration.jsonl")
    assert entry == {"file": DRAFT_VOCAB_FILE, "k": 3}
    assert json.loads((folder / DRAFT_VOCAB_FILE).read_text())["tokens"] == [3, 1, 2]
    assert Engine.load(folder, mtp="on").draft_tokens == [3, 1, 2]
    (folder / DRAFT_VOCAB_FILE).write_text(json.dumps({"k": 3, "tokens": [1, 1, 2]}))
    with pytest.raises(BadInputError):
        read_draft_vocab(folder)
