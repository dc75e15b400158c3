"""The engine with the project's quantized matmul: the tokens MLX's own kernels give, plain and with MTP."""

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
