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
