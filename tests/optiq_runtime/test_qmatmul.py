"""The project's quantized matmul: MLX's values at every width it takes, and MLX's kernels where it cannot run."""

import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from optiq_runtime import qmatmul
from optiq_runtime.cpuplan import CpuPlan, DualLinear, apply_plan
from optiq_runtime.qmatmul import KernelEmbedding, KernelLinear


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One cache folder for the module: the kernel is compiled once."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("kernel-home")
        patch.setenv("OPTIQ_HOME", str(folder))
        patch.delenv(qmatmul.DISABLE_VAR, raising=False)
        patch.delenv("CC", raising=False)
        yield folder


def _layer(rows: int, cols: int, bits: int, group_size: int, seed: int = 0, bias: bool = False) -> nn.QuantizedLinear:
    mx.random.seed(seed)
    layer = nn.QuantizedLinear.from_linear(nn.Linear(cols, rows, bias=bias), group_size=group_size, bits=bits)
    mx.eval(layer.parameters())
    return layer


def _close(got: mx.array, expected: mx.array) -> bool:
    scale = max(float(mx.abs(expected).max()), 1e-6)
    return float(mx.abs(got - expected).max()) <= 2e-5 * scale * expected.shape[-1] ** 0.5


@pytest.mark.parametrize("bits", qmatmul.BITS)
@pytest.mark.parametrize("group_size", qmatmul.GROUP_SIZES)
def test_kernel_matches_mlx_at_every_width_group_and_pass_length(home, bits, group_size):
    # Odd row counts, a width that is not a multiple of the 2/4/8-bit block (tails take the scalar
    # path), and a layer big enough to be shared between threads.
    for rows, cols in ((37, 3 * group_size), (5, 384 + group_size), (130, 640), (601, 512)):
        layer = _layer(rows, cols, bits, group_size)
        for threads in (1, 2):
            product = KernelLinear(layer, threads)
            for tokens in (1, 2, 3, 5, 8, 11):
                x = mx.random.normal((1, tokens, cols))
                assert _close(product(x), layer(x)), (rows, cols, threads, tokens)


def test_kernel_adds_the_layer_bias_and_keeps_leading_axes(home):
    layer = _layer(48, 256, 4, 64, bias=True)
    x = mx.random.normal((2, 3, 256))
    got = KernelLinear(layer)(x)
    assert got.shape == (2, 3, 48) and _close(got, layer(x))


def test_the_weights_are_read_in_place(home):
    layer = _layer(64, 256, 4, 64)
    product = KernelLinear(layer)
    # The same buffer twice: numpy views of MLX's arrays, not copies.
    again = np.asarray(layer.weight)
    assert product._weights.weight.ctypes.data == again.ctypes.data
    assert product._weights.scales.ctypes.data == np.asarray(layer.scales).ctypes.data


def test_a_tied_output_layer_goes_through_the_kernel_for_short_passes(home):
    mx.random.seed(1)
    embedding = nn.QuantizedEmbedding.from_embedding(nn.Embedding(300, 128), group_size=64, bits=4)
    mx.eval(embedding.parameters())
    served = KernelEmbedding(embedding, short_tokens=4)
    ids = mx.array([[3, 299, 0]])
    assert mx.array_equal(served(ids), embedding(ids)).item()
    for tokens in (1, 4, 6):
        x = mx.random.normal((1, tokens, 128))
        assert _close(served.as_linear(x), embedding.as_linear(x))


def test_plan_with_the_kernel_computes_the_same_values(home):
    model = nn.Sequential(nn.Embedding(64, 64), nn.Linear(64, 128), nn.Linear(128, 64))
    nn.quantize(model, group_size=32, bits=4)
    mx.eval(model.parameters())
    tokens = mx.arange(9)[None]
    expected = {n: model(tokens[:, :n]) for n in (1, 4, 9)}
    apply_plan(model, CpuPlan(decode="kernel", prefill="dense"), short_tokens=4)
    kinds = [type(m) for _, m in model.named_modules()]
    assert DualLinear in kinds and KernelLinear in kinds
    for n, values in expected.items():
        assert mx.allclose(model(tokens[:, :n]), values, atol=1e-4, rtol=1e-4).item()


def test_no_compiler_leaves_mlx_kernels_and_says_why(home, monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    status = qmatmul.status()
    assert not status.available and "no C compiler" in status.detail
    assert not qmatmul.supports_here(_layer(8, 64, 4, 32))
    plan = CpuPlan(decode="kernel", prefill="quantized")
    model = nn.Sequential(_layer(16, 64, 4, 32))
    x = mx.random.normal((1, 64))
    expected = model(x)
    apply_plan(model, plan, short_tokens=4)
    assert isinstance(model.layers[0], nn.QuantizedLinear)  # MLX's kernel, as before
    assert mx.array_equal(model(x), expected).item()


def test_turned_off_by_the_environment(home, monkeypatch):
    monkeypatch.setenv(qmatmul.DISABLE_VAR, "1")
    assert qmatmul.status() == qmatmul.KernelStatus(False, f"turned off by {qmatmul.DISABLE_VAR}")


def _status_in_a_new_process(home) -> subprocess.CompletedProcess:
    """``qmatmul.status()`` in a fresh interpreter (a library this process loaded must not be overwritten)."""
    code = "from optiq_runtime import qmatmul; s = qmatmul.status(); print(s.available, s.detail)"
    env = {**os.environ, "OPTIQ_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_a_broken_cached_library_is_rebuilt_with_a_note(tmp_path):
    first = _status_in_a_new_process(tmp_path)
    assert first.stdout.startswith("True"), first.stderr
    (library,) = (tmp_path / "kernels").glob("qmatmul-*.so")
    library.write_bytes(b"not a shared library")
    again = _status_in_a_new_process(tmp_path)
    assert again.stdout.startswith("True"), again.stderr
    notes = [line for line in again.stderr.splitlines() if "rebuilding" in line]
    assert len(notes) == 1 and str(library) in notes[0]
    assert library.read_bytes()[:4] == b"\x7fELF"


def test_products_from_several_python_threads_at_once(home):
    """The pool serves one product at a time; a concurrent caller computes alone, rightly."""
    from concurrent.futures import ThreadPoolExecutor

    layer = _layer(1024, 512, 4, 64)
    library, weights = qmatmul._loaded(), KernelLinear(layer)._weights
    inputs = [np.asarray(mx.random.normal((2, 512))) for _ in range(16)]
    expected = [layer(mx.array(x)) for x in inputs]
    with ThreadPoolExecutor(4) as pool:  # numpy only in the threads: MLX's streams belong to one thread
        got = list(pool.map(lambda x: qmatmul._multiply(library, x, weights, 2), inputs))
    assert all(_close(mx.array(g), e) for g, e in zip(got, expected))


def test_an_mlp_runs_on_the_host_in_short_passes(home):
    from mlx_lm.models.qwen3_5 import MLP

    mx.random.seed(2)
    mlp = MLP(128, 320)
    nn.quantize(mlp, group_size=64, bits=4)
    mx.eval(mlp.parameters())
    x = {n: mx.random.normal((1, n, 128)) for n in (1, 3, 7)}
    expected = {n: mlp(v) for n, v in x.items()}
    model = nn.Sequential(mlp)
    apply_plan(model, CpuPlan(decode="kernel", prefill="quantized"), short_tokens=4)
    assert isinstance(model.layers[0], qmatmul.KernelMLP)
    for n, v in x.items():
        assert _close(model(v), expected[n])
