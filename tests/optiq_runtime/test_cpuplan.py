"""The CPU plan: measured once per machine and shape, applied as float32 copies where it says."""

import json

import mlx.core as mx
import mlx.nn as nn
import pytest

from optiq_runtime import cpuplan
from optiq_runtime.cpuplan import CpuPlan, DualLinear, apply_plan, plan_for


def _quantized_model(seed=0):
    mx.random.seed(seed)
    model = nn.Sequential(nn.Embedding(64, 64), nn.Linear(64, 128), nn.Linear(128, 64))
    nn.quantize(model, group_size=32, bits=4)
    mx.eval(model.parameters())
    return model


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path))
    return tmp_path


def test_plan_is_measured_once_and_recorded(home):
    model = _quantized_model()
    plan = plan_for([model], dense_bytes=1)
    assert plan.decode in ("dense", "quantized", "kernel") and plan.prefill in ("dense", "quantized", "kernel")
    assert plan.decode_threads in (1, 2) and {"decode_quantized", "prefill_dense_1t"} <= set(plan.timings_ms)
    recorded = json.loads((home / cpuplan.PLAN_FILE).read_text())
    assert recorded[plan.key]["timings_ms"] == plan.timings_ms
    assert plan_for([model], dense_bytes=1).timings_ms == plan.timings_ms  # read back, not measured again
    assert cpuplan.describe()["plans"] == recorded


def test_no_float32_copies_beyond_the_memory_available(home):
    model = _quantized_model()
    measured = plan_for([model], dense_bytes=1)
    # Recorded timings where the float32 copies win every kind of pass (measured ones depend on the
    # machine and its load: the kernel may win them all), read back by the next plan.
    plans = json.loads((home / cpuplan.PLAN_FILE).read_text())
    plans[measured.key]["timings_ms"] = {
        name: 1e-6 if "_dense_" in name else ms for name, ms in measured.timings_ms.items()
    }
    (home / cpuplan.PLAN_FILE).write_text(json.dumps(plans))
    assert plan_for([model], dense_bytes=1).dense
    plan = plan_for([model], dense_bytes=4 * cpuplan.available_memory())  # free memory moves with other processes
    assert plan.memory_limited and not plan.dense


def test_nothing_quantized_needs_no_plan(home):
    assert plan_for([nn.Linear(4, 4)], dense_bytes=1) is None


@pytest.mark.parametrize("decode,prefill", [("dense", "dense"), ("quantized", "dense"), ("dense", "quantized")])
def test_applied_plan_computes_the_same_values(decode, prefill):
    model, reference = _quantized_model(), _quantized_model()
    apply_plan(model, CpuPlan(decode=decode, prefill=prefill), short_tokens=4)
    kinds = {type(m) for _, m in model.named_modules()}
    assert (DualLinear in kinds) == (decode != prefill)
    assert (nn.QuantizedEmbedding in kinds) == (decode == "quantized")
    for length in (1, 4, 9):  # short passes, and a long one
        tokens = mx.arange(length)[None]
        assert mx.allclose(model(tokens), reference(tokens), atol=1e-4, rtol=1e-4).item()


def test_dual_linear_picks_its_form_by_the_tokens_of_the_pass():
    layer = _quantized_model().layers[1]
    dual = DualLinear(layer, cpuplan.dense_linear(layer), 4)
    short, long = mx.random.normal((1, 4, 64)), mx.random.normal((1, 5, 64))
    assert mx.array_equal(dual(short), layer(short)).item()
    assert mx.array_equal(dual(long), dual.long(long)).item()


def test_large_layers_are_dequantized_in_blocks(monkeypatch):
    monkeypatch.setattr(cpuplan, "_ROWS_AT_ONCE", 24)
    layer = _quantized_model().layers[0]  # 64 rows: three blocks, the last one short
    expected = mx.dequantize(layer.weight, layer.scales, layer.biases, group_size=32, bits=4)
    assert mx.array_equal(cpuplan.dense_embedding(layer).weight, expected).item()


def test_the_kernel_is_chosen_only_where_it_saves_more_than_compiled_graphs_give():
    timings = {
        f"{kind}_{form}": 1.0
        for kind in ("decode", "verify", "prefill")
        for form in ("dense_1t", "dense_2t", "quantized", "kernel_2t")
    }
    timings.update({f"{kind}_kernel_1t": 0.6 for kind in ("decode", "verify", "prefill")})
    plan = cpuplan._choose(timings, "k")
    assert plan.decode != "kernel" and plan.prefill == "kernel"  # 0.6x the others: enough for prefill only
    timings.update({f"{kind}_kernel_1t": 0.1 for kind in ("decode", "verify")})
    plan = cpuplan._choose(timings, "k")
    assert (plan.decode, plan.decode_threads, plan.prefill) == ("kernel", 1, "kernel")
