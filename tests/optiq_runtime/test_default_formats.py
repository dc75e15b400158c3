"""The default formats on the embedded model: a first-run build with 3- to 8-bit layers that stock mlx-lm loads,
within the mission's size promise (at most 5% over uniform 4-bit)."""

from __future__ import annotations

import json

import mlx.core as mx
import pytest
from mlx_lm.utils import load as mlx_load

from optiq_runtime.build import BuildOptions, build
from optiq_runtime.build_metadata import RECIPE_VERSION
from optiq_runtime.build_options import EXTRA_WIDTHS
from optiq_runtime.firstrun import FIRST_RUN_SETTINGS
from optiq_runtime.load import load_model

TOKENS = mx.array([[5, 17, 300, 42, 7, 99, 1000, 3, 64, 2]])


@pytest.fixture(scope="module")
def first_run_build(tmp_path_factory):
    """tiny-agent built as ``optiq``'s first run builds it (every format setting at its default)."""
    out = tmp_path_factory.mktemp("default") / "tiny-agent-OptiQ-4bit"
    return build(BuildOptions(out=out, **FIRST_RUN_SETTINGS), log=lambda _: None)


@pytest.mark.slow
def test_the_default_build_mixes_3_to_8_bit_layers_within_5_percent_of_uniform(first_run_build):
    meta = first_run_build.metadata
    assert EXTRA_WIDTHS == (3, 5, 6) and meta["recipe"] == RECIPE_VERSION
    assert {int(bits) for bits, n in meta["counts"].items() if n} >= {3, 4}  # insensitive layers pay at 3 bits
    assert any(int(bits) > 4 and n for bits, n in meta["counts"].items())  # ... for sensitive ones above 4
    assert meta["bytes"]["optiq"] <= meta["bytes"]["limit"] <= 1.05 * meta["bytes"]["uniform"]
    weights = mx.load(str(first_run_build.path / "model.safetensors"))
    on_disk = sum(weights[f"{p}.{part}"].nbytes for p in meta["layers"] for part in ("weight", "scales", "biases"))
    assert on_disk == meta["bytes"]["optiq"]


@pytest.mark.slow
def test_stock_mlx_lm_loads_the_default_build_with_our_logits(first_run_build):
    folder = first_run_build.path
    stock, tokenizer = mlx_load(str(folder))
    ours = load_model(folder, upcast=False).model
    assert mx.array_equal(stock(TOKENS), ours(TOKENS)).item()
    config = json.loads((folder / "config.json").read_text())
    bits = {entry["bits"] for entry in config["quantization"].values() if isinstance(entry, dict)}
    assert 3 in bits and max(bits) > 4
    assert tokenizer.decode(tokenizer.encode("hello world")).strip() == "hello world"
