"""Fused greedy MTP rounds: one graph verifies the drafts and drafts the next round for every outcome."""

from __future__ import annotations

import pytest

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.sampling import KeyStream, Sampling
from optiq_runtime.speculative import Decoder


@pytest.fixture(scope="module")
def engine():
    engine = Engine.load(embedded_base_path(), mtp="on")
    engine.auto_fallback = False
    return engine


def _prompt(engine) -> list[int]:
    messages = [{"role": "user", "content": "What is in `notes/plan.txt`?"}]
    return list(engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def _decoder(engine) -> Decoder:
    cache = engine.backbone.new_cache(True)
    return Decoder(
        engine.backbone,
        engine.drafter,
        cache,
        Sampling(temperature=0.0, top_p=1.0, top_k=0),
        KeyStream(0),
        engine.fused,
    )


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_next_drafts_equal_drafting_step_by_step(engine, depth):
    """Row n of a round's drafts is what catching up and chaining one pass at a time gives after it."""
    decoder = _decoder(engine)
    last = decoder.prefill(_prompt(engine))
    decoder.prime(last, depth)
    compared = 0
    for _ in range(12):
        proposal = decoder.mtp_round(last, depth)
        proposal.commit(len(proposal.tokens))
        last = proposal.tokens[-1]
        fused = decoder.fused._ahead.drafts  # the next round, started with row n's drafts
        decoder.cancel_ahead()
        before = decoder.cache.mtp.offset
        assert decoder._fresh_drafts(last, depth) == fused  # re-pairs the last position, then chains
        assert decoder.cache.mtp.offset == before
        compared += 1
    assert compared == 12


@pytest.mark.parametrize("depth", [1, 2])
def test_fused_and_step_by_step_rounds_generate_the_same(engine, depth):
    prompt = _prompt(engine)
    outputs = {}
    for fuse in (True, False):
        engine.fuse_rounds, engine.mtp_depth = fuse, depth
        engine.reset()
        outputs[fuse] = engine.generate(prompt, Sampling(max_tokens=48))
        assert engine.last_stats.mtp_used and sum(engine.last_stats.drafted) > 0
    engine.fuse_rounds, engine.mtp_depth = True, 2
    assert outputs[True] == outputs[False]


@pytest.mark.parametrize("extra", [0, 1])
def test_generating_again_from_the_cached_sequence(engine, extra):
    """After a fused run the head has paired every kept position (the last with its guess of the
    next token) and the tail is empty; a run from exactly that sequence re-pairs the last position."""
    prompt = _prompt(engine)
    engine.reset()
    first = engine.generate(prompt, Sampling(max_tokens=6))
    sequence = list(engine._state.tokens) + first[-1:] * extra
    assert engine._state.tail == [] and sequence[: len(prompt)] == prompt
    again = engine.generate(sequence, Sampling(max_tokens=24))
    assert engine.last_stats.reused_prompt_tokens == len(sequence) - extra
    engine.mtp_enabled = False
    engine.reset()
    plain = engine.generate(sequence, Sampling(max_tokens=24))
    engine.mtp_enabled = True
    assert again == plain


def test_a_generation_in_another_thread_continues_the_cached_sequence(engine):
    """MLX evaluates arrays on their thread's stream; the cache left by one thread's run is settled."""
    import threading

    prompt = _prompt(engine)
    engine.reset()
    results = {}

    def run(name, tokens):
        try:
            results[name] = engine.generate(tokens, Sampling(max_tokens=8))
        except Exception as error:  # surfaced below
            results[name] = error

    first = threading.Thread(target=run, args=("first", prompt))
    first.start()
    first.join()
    second = threading.Thread(target=run, args=("second", prompt + results["first"]))
    second.start()
    second.join()
    assert isinstance(results["second"], list) and engine.last_stats.reused_prompt_tokens > len(prompt)
