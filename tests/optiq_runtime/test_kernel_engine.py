"""The engine with the project's quantized matmul: the tokens MLX's own kernels give, plain and with MTP."""

import mlx.core as mx
import mlx.nn as nn
import pytest
from test_engine import PROMPT

from optiq_runtime.backbone import MAX_FAST_TOKENS
from optiq_runtime.cpuplan import CpuPlan, apply_plan
from optiq_runtime.engine import Engine
from optiq_runtime.load import load_model
from optiq_runtime.mtp import load_mtp_head
from optiq_runtime.qmatmul import KernelEmbedding, KernelLinear, KernelMLP, status
from optiq_runtime.sampling import Sampling


@pytest.fixture(scope="module")
def built_folder(tmp_path_factory):
    """tiny-agent built uniform 4-bit (a tied embedding, so the output layer goes through the kernel too)."""
    from optiq_runtime.build import BuildOptions, build

    out = tmp_path_factory.mktemp("built") / "tiny-agent-4bit"
    build(BuildOptions(out=out, method="uniform"), log=lambda line: None)
    return out


def _engine(folder, plan: CpuPlan | None, depth: int) -> Engine:
    loaded = load_model(folder)
    head = load_mtp_head(loaded.path, loaded.model.language_model.args)
    if plan is not None:
        for module in (loaded.model, head):
            apply_plan(module, plan, MAX_FAST_TOKENS)
    engine = Engine(loaded.model, loaded.tokenizer, loaded.path, head, mtp="on", mtp_depth=depth)
    engine.auto_fallback = False
    return engine


@pytest.mark.parametrize("prefill", ["kernel", "dense", "quantized"])
def test_kernel_decoding_gives_the_tokens_of_mlx_kernels(built_folder, prefill):
    assert status().available, status().detail
    reference = _engine(built_folder, None, 2)
    reference.mtp_enabled = False
    expected = reference.generate(PROMPT, Sampling(max_tokens=40))
    engine = _engine(built_folder, CpuPlan(decode="kernel", prefill=prefill), 2)
    kinds = {type(m) for _, m in engine.model.named_modules()}
    assert {KernelLinear, KernelEmbedding, KernelMLP} <= kinds and nn.QuantizedLinear in kinds
    assert not engine.backbone.compiled  # a host product cannot sit in a compiled graph
    engine.mtp_enabled = False
    assert engine.generate(PROMPT, Sampling(max_tokens=40)) == expected
    engine.mtp_enabled = True
    engine.reset()
    assert engine.generate(PROMPT, Sampling(max_tokens=40)) == expected
    assert engine.last_stats.mtp_used and engine.last_stats.steps > 0


def test_short_passes_through_host_segments_match_the_eager_pass(built_folder):
    """A kernel model's short passes run as compiled segments between host products: the eager pass's values."""
    engine = _engine(built_folder, CpuPlan(decode="kernel", prefill="quantized"), 2)
    backbone = engine.backbone
    assert backbone.host_pass is not None
    prompt = mx.array(engine.tokenizer.encode("List the files in the current folder, then read the largest one."))
    eager, segmented = backbone.new_cache(False), backbone.new_cache(False)
    for cache in (eager, segmented):
        mx.eval(backbone.forward(prompt[None], cache))
    for tokens in ([5], [7, 8, 9], [11]):
        tokens = mx.array(tokens)
        expected = backbone.forward(tokens[None], eager)
        hidden = backbone.host_pass(backbone.embed(tokens[None]), segmented.main)
        assert mx.allclose(hidden, expected, atol=1e-4).item()
        assert mx.array_equal(mx.argmax(backbone.logits(hidden), -1), mx.argmax(backbone.logits(expected), -1)).item()
    for i in segmented.linear_ids:
        for got, want in zip(segmented.main[i].cache, eager.main[i].cache):
            assert mx.allclose(got, want, atol=1e-4).item()
    for i in segmented.kv_ids:
        used = eager.main[i].offset
        assert segmented.main[i].offset == used
        assert mx.allclose(segmented.main[i].keys[:, :, :used], eager.main[i].keys[:, :, :used], atol=1e-4).item()


def test_a_prefill_only_kernel_leaves_short_passes_compiled(built_folder):
    """Prefill on the kernel, decoding on MLX's kernels: decode passes and MTP rounds stay compiled graphs."""
    reference = _engine(built_folder, None, 2)
    reference.mtp_enabled = False
    expected = reference.generate(PROMPT, Sampling(max_tokens=40))
    engine = _engine(built_folder, CpuPlan(decode="quantized", prefill="kernel"), 2)
    assert any(isinstance(m, KernelLinear) for _, m in engine.model.named_modules())
    assert engine.backbone.compiled and not engine.backbone.on_host
    for mtp in (False, True):
        engine.mtp_enabled = mtp
        engine.reset()
        assert engine.generate(PROMPT, Sampling(max_tokens=40)) == expected


def _prefilled(engine, text: str):
    from optiq_runtime.sampling import KeyStream
    from optiq_runtime.speculative import Decoder

    cache = engine.backbone.new_cache(True)
    decoder = Decoder(engine.backbone, engine.drafter, cache, Sampling(), KeyStream(None))
    first = decoder.prefill(engine.tokenizer.encode(text))
    return decoder, cache, first


def test_a_kernel_models_verification_keeps_every_positions_caches(built_folder):
    """Taking back a verification's rejected tail picks the kept position's DeltaNet caches (no replay): the caches a
    pass over the kept tokens alone leaves."""
    from optiq_runtime.hybrid_cache import Rewind

    engine = _engine(built_folder, CpuPlan(decode="kernel", prefill="quantized"), 2)
    backbone = engine.backbone
    (decoder, verified, _), (_, alone, _) = (_prefilled(engine, "Read the notes file.") for _ in range(2))
    rewind = Rewind(verified.linear_state())
    backbone.step(mx.array([7, 8, 9]), verified, rewind)
    assert set(rewind.positions) == set(verified.linear_ids) and not rewind.inputs
    assert all(len(states) == 3 for states in rewind.positions.values())
    verified.tokens.extend([7, 8, 9])
    alone.tokens.extend([7, 8])
    verified.rewind(rewind, 2, backbone.replay)
    backbone.step(mx.array([7, 8]), alone)
    for i in verified.linear_ids:
        for got, want in zip(verified.main[i].cache, alone.main[i].cache):
            assert mx.allclose(got, want, atol=1e-5).item()
    assert all(verified.main[i].offset == alone.main[i].offset == len(alone.tokens) for i in verified.kv_ids)


def test_a_kernel_model_starts_no_plain_step_ahead_and_its_head_catches_up_in_the_prefill(built_folder):
    """A host pass is computed before it returns: nothing is fed ahead of the tokens a plain step returned. Rounds
    that are not fused draft in the round, so priming feeds the head every prompt position but the last."""
    engine = _engine(built_folder, CpuPlan(decode="kernel", prefill="quantized"), 2)
    assert engine.backbone.on_host and not engine.backbone.compiled
    decoder, cache, first = _prefilled(engine, "List the files in the current folder.")
    prompt = len(cache.tokens)
    decoder.prime(first, 2)
    assert cache.head.offset == prompt - 1 and sum(chunk.shape[1] for chunk in cache.tail) == 1
    token = decoder.plain_step(first)
    assert len(cache.tokens) == prompt + 1 and all(cache.main[i].offset == prompt + 1 for i in cache.kv_ids)
    proposal = decoder.mtp_round(token, 2)
    proposal.commit(len(proposal.tokens))
    assert all(cache.main[i].offset == len(cache.tokens) for i in cache.kv_ids)


def test_the_reduced_draft_projection_goes_through_the_kernel(built_folder):
    """Where the kernel serves the output layer's short passes, the draft vocabulary's projection uses it too."""
    from optiq_runtime.draft_vocab import DraftProjection

    engine = _engine(built_folder, CpuPlan(decode="kernel", prefill="quantized"), 2)
    output = engine.backbone.body.embed_tokens
    assert isinstance(output, KernelEmbedding)
    tokens = [5, 17, 300, 2048]
    vocab = engine.backbone.args.vocab_size
    projection, plain = DraftProjection(output, tokens, vocab), DraftProjection(output.layer, tokens, vocab)
    assert projection.host is not None and plain.host is None
    normed = mx.random.normal((1, 2, engine.backbone.args.hidden_size))
    assert mx.allclose(projection(normed)[..., tokens], plain(normed)[..., tokens], rtol=1e-4, atol=1e-4).item()
    assert mx.allclose(projection(normed)[..., tokens], output.as_linear(normed)[..., tokens], atol=1e-4).item()
