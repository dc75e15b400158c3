"""The generation engine: MTP decoding is exact, stops where asked, and reuses prompt caches."""

from __future__ import annotations

import threading

import mlx.core as mx
import pytest
from checkpoints import write_random_checkpoint

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from optiq_runtime.load import load_model
from optiq_runtime.mtp import MTPHead, load_mtp_head
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import MtpHistory


def _prompt() -> list[int]:
    from optiq_runtime.load import load_tokenizer

    tokenizer = load_tokenizer(embedded_base_path())
    messages = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


PROMPT = _prompt()


def agreeable_head(model, noise: float, seed: int = 0) -> MTPHead:
    """A head whose drafts repeat the main model's last prediction (plus noise): often right, often wrong.

    With fc passing h_t through and the layer's output projections zeroed, the head's logits at t
    are the main model's logits at t, i.e. its guess for token t+2 is the main model's token t+1.
    Random models repeat tokens in runs, so drafts are accepted in runs and rejected at their ends.
    """
    text = getattr(model, "language_model", model)
    head = MTPHead(text.args)
    hidden = text.args.hidden_size
    mx.random.seed(seed)
    head.fc.weight = mx.concatenate([noise * mx.random.normal((hidden, hidden)), mx.eye(hidden)], axis=1)
    layer = head.layers[0]
    layer.self_attn.o_proj.weight = mx.zeros_like(layer.self_attn.o_proj.weight)
    layer.mlp.down_proj.weight = mx.zeros_like(layer.mlp.down_proj.weight)
    head.norm.weight = text.model.norm.weight
    mx.eval(head.parameters())
    return head


@pytest.fixture(scope="module")
def random_folder(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("random"), seed=3, num_hidden_layers=4)


@pytest.fixture(scope="module")
def loaded(random_folder):
    return load_model(random_folder)


def engine_with(loaded, head, depth=2, mtp=True) -> Engine:
    engine = Engine(loaded.model, loaded.tokenizer, loaded.path, head, mtp=mtp, mtp_depth=depth)
    engine.auto_fallback = False
    return engine


def plain_tokens(loaded, prompt=PROMPT, **kwargs) -> list[int]:
    return engine_with(loaded, None, mtp=False).generate(prompt, Sampling(**kwargs))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_greedy_mtp_matches_plain_when_drafts_are_rejected(loaded, random_folder, depth):
    engine = engine_with(loaded, load_mtp_head(random_folder, loaded.model.language_model.args), depth)
    assert engine.generate(PROMPT, Sampling(max_tokens=48)) == plain_tokens(loaded, max_tokens=48)
    assert engine.last_stats.mtp_used and engine.last_stats.steps > 0


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_greedy_mtp_matches_plain_with_partial_acceptance(loaded, depth, noise):
    engine = engine_with(loaded, agreeable_head(loaded.model, noise), depth)
    expected = plain_tokens(loaded, max_tokens=64)
    assert engine.generate(PROMPT, Sampling(max_tokens=64)) == expected
    stats = engine.last_stats
    # Both full acceptance and rejections happened, so rollback was exercised.
    assert 0 < stats.acceptance < 1, stats.acceptance_per_position
    assert stats.tokens_per_step > 1.0


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_greedy_mtp_matches_plain_on_embedded_model(depth):
    engine = Engine.load(embedded_base_path(), mtp="on", mtp_depth=depth)
    engine.auto_fallback = False
    assert engine.mtp_available and engine.mtp_enabled
    tokens = engine.generate(PROMPT, Sampling(max_tokens=40))
    engine.mtp_enabled = False
    engine.reset()
    assert engine.generate(PROMPT, Sampling(max_tokens=40)) == tokens
    assert not engine.last_stats.mtp_used


@pytest.fixture(scope="module")
def built_folder(tmp_path_factory):
    """The embedded base built into a quantized folder (uniform 4-bit: the format of an OptiQ build, without probes)."""
    from optiq_runtime.build import BuildOptions, build

    out = tmp_path_factory.mktemp("built") / "tiny-agent-4bit"
    build(BuildOptions(out=out, method="uniform"), log=lambda line: None)
    return out


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_greedy_mtp_matches_plain_on_built_model(built_folder, depth):
    engine = Engine.load(built_folder, mtp="on", mtp_depth=depth)
    engine.auto_fallback = False
    assert engine.mtp_available
    tokens = engine.generate(PROMPT, Sampling(max_tokens=40))
    engine.mtp_enabled = False
    engine.reset()
    assert engine.generate(PROMPT, Sampling(max_tokens=40)) == tokens


def test_cpu_backend_runs_quantized_models_as_the_measured_plan_says(built_folder):
    import mlx.nn as nn

    # MTP off: each load would otherwise measure its MTP costs (the three run the weights three ways).
    planned = Engine.load(built_folder, mtp="off")
    assert planned.cpu_plan is not None and planned.dequantized == planned.cpu_plan.dense
    engine = Engine.load(built_folder, mtp="off", dequantize=True)
    assert engine.dequantized
    assert not any(isinstance(m, nn.QuantizedLinear) for _, m in engine.model.named_modules())
    assert not any(isinstance(m, nn.QuantizedLinear) for _, m in engine.head.named_modules())
    kept = Engine.load(built_folder, mtp="off", dequantize=False)
    assert not kept.dequantized and any(isinstance(m, nn.QuantizedLinear) for _, m in kept.model.named_modules())
    # The same weights, so the same greedy tokens.
    tokens = engine.generate(PROMPT, Sampling(max_tokens=24))
    assert tokens == kept.generate(PROMPT, Sampling(max_tokens=24)) == planned.generate(PROMPT, Sampling(max_tokens=24))


def test_long_prompt_and_growing_kv_buffers(loaded, monkeypatch):
    """A prompt prefilled in chunks, then decoding across KV buffer growth (256 -> 512 -> 1024 positions)."""
    import optiq_runtime.speculative as speculative

    monkeypatch.setattr(speculative, "PREFILL_CHUNK", 128)
    prompt = (PROMPT * 20)[:500]
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 3)
    tokens = engine.generate(prompt, Sampling(max_tokens=40))
    assert tokens == plain_tokens(loaded, prompt, max_tokens=40)
    longer = prompt + tokens + PROMPT
    assert engine.generate(longer, Sampling(max_tokens=40)) == plain_tokens(loaded, longer, max_tokens=40)
    assert engine.last_stats.reused_prompt_tokens == len(prompt) + len(tokens) - 1


def test_normed_draft_chain_is_exact_too(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 3)
    engine.drafter.chain_normed = True
    assert engine.generate(PROMPT, Sampling(max_tokens=40)) == plain_tokens(loaded, max_tokens=40)
    assert engine.last_stats.steps > 0


def test_compiled_passes_match_mlx_lm_modules(loaded, monkeypatch):
    """OPTIQ_EAGER=1 runs mlx-lm's own modules for every pass: the same tokens, plain and MTP."""
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 2)
    compiled = engine.generate(PROMPT, Sampling(max_tokens=40))
    monkeypatch.setenv("OPTIQ_EAGER", "1")
    engine.reset()
    assert engine.generate(PROMPT, Sampling(max_tokens=40)) == compiled
    assert engine.last_stats.tokens_per_step > 1
    assert plain_tokens(loaded, max_tokens=40) == compiled


def test_steps_stream_text_that_decodes_the_tokens(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 3)
    steps = list(engine.stream(PROMPT, Sampling(max_tokens=40)))
    tokens = [t for s in steps for t in s.tokens]
    assert all(1 <= len(s.tokens) <= 4 for s in steps if s.tokens)
    assert any(len(s.tokens) > 1 for s in steps)
    assert "".join(s.text for s in steps) == loaded.tokenizer.decode(tokens)


def test_max_tokens_and_stop_cut_inside_a_step(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 3)
    full = plain_tokens(loaded, max_tokens=40)
    assert engine.generate(PROMPT, Sampling(max_tokens=7)) == full[:7]
    assert engine.last_stats.finish_reason == "length"
    engine.reset()
    assert engine.generate(PROMPT, Sampling(max_tokens=40), stop=lambda toks: len(toks) == 5) == full[:5]
    assert engine.last_stats.finish_reason == "stop"


def test_eos_ends_generation_and_is_not_emitted(loaded):
    full = plain_tokens(loaded, max_tokens=30)
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 2)
    engine.tokenizer.eos_token_ids = set(engine.tokenizer.eos_token_ids) | {full[9]}
    try:
        out = engine.generate(PROMPT, Sampling(max_tokens=30))
    finally:
        engine.tokenizer.eos_token_ids = set(engine.tokenizer.eos_token_ids) - {full[9]}
    assert out == full[: full.index(full[9])]
    assert engine.last_stats.finish_reason == "eos"


def test_should_stop_interrupts_between_steps(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 2)
    seen = []
    for step in engine.stream(PROMPT, Sampling(max_tokens=200), should_stop=lambda: len(seen) >= 3):
        seen.append(step)
    assert len(seen) == 3
    assert engine.last_stats.finish_reason == "interrupted"


@pytest.mark.parametrize("mtp", [False, True])
def test_prompt_cache_reuse_gives_the_same_tokens(loaded, mtp):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.05), 2, mtp=mtp)
    first = engine.generate(PROMPT, Sampling(max_tokens=20))
    # The conversation grows by a turn: the previous prompt, the reply, and more.
    grown = PROMPT + first + [2, 198, 1, 872, 198, 99, 2]
    second = engine.generate(grown, Sampling(max_tokens=20))
    assert engine.last_stats.reused_prompt_tokens == len(PROMPT) + len(first) - 1
    assert second == plain_tokens(loaded, grown, max_tokens=20)
    unrelated = PROMPT[:3] + [5, 6, 7]
    assert engine.generate(unrelated, Sampling(max_tokens=20)) == plain_tokens(loaded, unrelated, max_tokens=20)
    assert engine.last_stats.reused_prompt_tokens == 0


def test_prompt_end_snapshot_is_reused(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.05), 2)
    engine.generate(PROMPT, Sampling(max_tokens=20))
    branch = PROMPT + [5, 6, 7]
    out = engine.generate(branch, Sampling(max_tokens=20))
    assert engine.last_stats.reused_prompt_tokens == len(PROMPT)
    assert out == plain_tokens(loaded, branch, max_tokens=20)
    again = engine.generate(branch, Sampling(max_tokens=20))  # the same prompt again: nothing to prefill
    assert engine.last_stats.reused_prompt_tokens == len(branch)
    assert again == out


def test_stats_describe_the_generation(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 2)
    out = engine.generate(PROMPT, Sampling(max_tokens=30))
    stats = engine.last_stats
    assert stats.tokens == len(out) == 30
    assert stats.prompt_tokens == len(PROMPT)
    assert stats.prefill_tok_s > 0 and stats.decode_tok_s > 0
    assert len(stats.drafted) == len(stats.accepted) == 2
    assert stats.drafted[0] == stats.drafted[1] == stats.steps
    assert stats.accepted[0] >= stats.accepted[1]
    assert stats.tokens_per_step == pytest.approx(stats.decode_tokens / stats.steps)
    assert stats.to_dict()["acceptance_per_position"] == stats.acceptance_per_position


def test_unprofitable_mtp_falls_back_to_plain_and_says_so(loaded, random_folder):
    engine = engine_with(loaded, load_mtp_head(random_folder, loaded.model.language_model.args), 2)
    engine.auto_fallback = True
    out = engine.generate(PROMPT, Sampling(max_tokens=64))
    stats = engine.last_stats
    assert stats.fallback_reason and "MTP off" in stats.fallback_reason
    assert stats.round_cost > 1.0  # a round (draft + verify) costs more than a plain step
    assert stats.steps < 64 and stats.drafted[0] < stats.steps  # plain steps after the fallback
    assert out == plain_tokens(loaded, max_tokens=64)


def test_runs_skip_mtp_while_recent_runs_lost_with_it(loaded, random_folder):
    engine = engine_with(loaded, load_mtp_head(random_folder, loaded.model.language_model.args), 2)
    engine.auto_fallback = True
    for _ in range(3):
        engine.reset()
        engine.generate(PROMPT, Sampling(max_tokens=48))
        assert engine.last_stats.mtp_used and "MTP off" in engine.last_stats.fallback_reason
    engine.reset()
    assert engine.generate(PROMPT, Sampling(max_tokens=48)) == plain_tokens(loaded, max_tokens=48)
    stats = engine.last_stats
    assert not stats.mtp_used and stats.drafted == [] and "last 3 runs" in stats.fallback_reason


def test_mtp_history_retries_now_and_then():
    history = MtpHistory(keep=2, retry_every=3)
    assert history.skip_reason() is None
    history.record(0.6)
    history.record(1.3)
    assert history.skip_reason() is None  # one recent run won
    history.record(0.7)
    assert history.skip_reason() is None  # the win is still among the last two
    history.record(0.8)
    reasons = [history.skip_reason() for _ in range(8)]
    assert [r is None for r in reasons] == [False, False, False, True, False, False, False, True]
    assert "0.80x" in reasons[0]


def test_sampling_with_a_seed_repeats(loaded):
    engine = engine_with(loaded, agreeable_head(loaded.model, 0.0), 2)
    a = engine.generate(PROMPT, Sampling(max_tokens=30, temperature=0.8, top_p=0.9, top_k=40, seed=7))
    engine.reset()
    b = engine.generate(PROMPT, Sampling(max_tokens=30, temperature=0.8, top_p=0.9, top_k=40, seed=7))
    assert a == b
    assert engine.last_stats.drafted[0] > 0


def test_one_generation_at_a_time(loaded):
    engine = engine_with(loaded, None, mtp=False)
    stream = engine.stream(PROMPT, Sampling(max_tokens=50))
    next(stream)
    other = threading.Thread(target=lambda: engine.generate(PROMPT, Sampling(max_tokens=3)))
    other.start()
    other.join(timeout=0.5)
    assert other.is_alive()  # waits for the lock
    stream.close()
    other.join(timeout=30)
    assert not other.is_alive()


def test_bad_arguments_are_user_errors(loaded):
    engine = engine_with(loaded, None, mtp=False)
    with pytest.raises(BadInputError):
        engine.generate([], Sampling(max_tokens=5))
    with pytest.raises(BadInputError):
        engine.generate(PROMPT, Sampling(max_tokens=0))
    with pytest.raises(BadInputError):
        Engine(loaded.model, loaded.tokenizer, loaded.path, None, mtp_depth=0)
