"""load_model: HF bases and built folders, float32 scales and parameters on the CPU backend."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten
from mlx_lm.utils import load as mlx_load

from optiq_runtime.load import cpu_backend, load_model

TOKENS = mx.array([[5, 17, 300, 42, 7, 99, 1000, 3]])


@pytest.fixture(scope="module")
def base(random_base):
    return random_base


@pytest.fixture(scope="module")
def uniform(uniform_build):
    return uniform_build


def close(ours, stock) -> bool:
    """Equal up to bf16 rounding: the stock model computes in bf16, ours in float32."""
    stock = stock.astype(mx.float32)
    return (mx.abs(ours - stock).max() <= 0.1 * mx.abs(stock).max()).item()


def float_dtypes(model):
    return {v.dtype for _, v in tree_flatten(model.parameters()) if v.dtype != mx.uint32}


def on_device(device, work):
    previous = mx.default_device()
    mx.set_default_device(device)
    try:
        return work()
    finally:
        mx.set_default_device(previous)


def test_the_cpu_as_default_device_is_the_cpu_backend_and_loads_float32(base):
    assert on_device(mx.cpu, cpu_backend)
    assert on_device(mx.cpu, lambda: float_dtypes(load_model(base).model)) == {mx.float32}
    if mx.metal.is_available():  # a Mac: with the GPU as default device, Metal computes
        assert not on_device(mx.gpu, cpu_backend)


def test_hf_base_loads_in_float32_with_the_same_logits_as_mlx_lm(base):
    ours = load_model(base)
    stock, _ = mlx_load(str(base))
    assert float_dtypes(ours.model) == {mx.float32}
    assert ours.metadata == {}
    assert close(ours.model(TOKENS), stock(TOKENS))
    exact = load_model(base, upcast=False)
    assert mx.array_equal(exact.model(TOKENS), stock(TOKENS)).item()


def test_built_folder_has_float32_scales_and_packed_weights(uniform):
    loaded = load_model(uniform)
    quantized = [
        m
        for _, m in tree_flatten(loaded.model.leaf_modules(), is_leaf=nn.Module.is_module)
        if isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
    ]
    assert quantized
    assert all(m.scales.dtype == mx.float32 and m.biases.dtype == mx.float32 for m in quantized)
    assert all(m.weight.dtype == mx.uint32 for m in quantized)
    assert loaded.metadata["method"] == "uniform"
    assert loaded.tokenizer.encode("hello")


def test_upcast_only_changes_precision(uniform):
    fast, exact = load_model(uniform), load_model(uniform, upcast=False)
    assert close(fast.model(TOKENS), exact.model(TOKENS))
