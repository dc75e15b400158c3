"""Block-scaled fp8 bases (Qwen's *-FP8 format): written by training.export, dequantized exactly by optiq at load."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from mlx_lm.utils import load as stock_load  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from optiq_runtime import embedded_base_path  # noqa: E402
from optiq_runtime.build import BuildOptions, build  # noqa: E402
from optiq_runtime.checkpoint import read_safetensors_header  # noqa: E402
from optiq_runtime.errors import BadInputError  # noqa: E402
from optiq_runtime.fp8 import block_size, dequantize  # noqa: E402
from optiq_runtime.load import load_network  # noqa: E402
from optiq_runtime.mtp import read_mtp_weights  # noqa: E402
from training.arch import Shape, TinyAgent  # noqa: E402
from training.export import FP8_BLOCK, export, load_exported, to_fp8  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A random tiny-agent-shaped model in fp8, and the bf16 checkpoint of exactly the weights the fp8 one encodes."""
    root = tmp_path_factory.mktemp("fp8")
    shape = Shape(num_hidden_layers=4)
    tokenizer = Tokenizer.from_file(str(embedded_base_path() / "tokenizer.json"))
    fp8 = export(TinyAgent(shape, seed=3), shape, tokenizer, root / "fp8", fp8=True)
    twin = export(load_exported(fp8, shape), shape, tokenizer, root / "bf16")
    for folder in (fp8, twin):
        shutil.copy(embedded_base_path() / "tokenizer_config.json", folder)
    return fp8, twin


def test_matrices_are_e4m3_with_one_scale_per_block_and_half_the_bytes(folders):
    fp8, twin = folders
    header = read_safetensors_header(fp8 / "model.safetensors")
    q_proj = "model.language_model.layers.3.self_attn.q_proj.weight"
    assert header[q_proj]["dtype"] == "F8_E4M3"
    rows, cols = header[q_proj]["shape"]
    assert header[q_proj + "_scale_inv"]["shape"] == [-(-rows // FP8_BLOCK[0]), -(-cols // FP8_BLOCK[1])]
    assert header["model.language_model.embed_tokens.weight"]["dtype"] == "BF16"  # tied to the output head
    assert header["model.language_model.norm.weight"]["dtype"] == "BF16"
    assert block_size(json.loads((fp8 / "config.json").read_text())) == FP8_BLOCK
    embed = 2 * Shape().vocab_size * Shape().hidden_size
    matrices = (twin / "model.safetensors").stat().st_size - embed
    assert (fp8 / "model.safetensors").stat().st_size - embed < 0.55 * matrices


def test_e4m3_keeps_each_matrix_within_a_few_percent():
    weight = torch.randn(300, 200) * torch.linspace(0.01, 3, 200)  # blocks of very different ranges
    quantized, scale = to_fp8(weight)
    assert scale.shape == (3, 2)
    restored = quantized.float() * scale.repeat_interleave(128, 0).repeat_interleave(128, 1)[:300, :200]
    assert (restored - weight).norm() / weight.norm() < 0.04


def test_mlx_dequantizes_exactly_the_weights_torch_wrote(folders):
    fp8, twin = folders
    model, _ = load_network(fp8, upcast=False)
    reference, _ = load_network(twin, upcast=False)
    ids = mx.array([[5, 77, 300, 1200, 9, 4000, 31]])
    assert mx.array_equal(model(ids), reference(ids)).item()
    mine, theirs = read_mtp_weights(fp8), read_mtp_weights(twin)
    assert mine.keys() == theirs.keys() and "fc.weight" in mine
    assert all(mx.array_equal(mine[k], theirs[k]).item() for k in mine)


def test_an_fp8_base_builds_a_folder_stock_mlx_lm_loads(folders, tmp_path):
    fp8, _ = folders
    out = tmp_path / "built"
    build(BuildOptions(out=out, base=fp8, method="uniform"), log=lambda line: None)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == config["quantization"]  # mlx's, not the base's fp8 one
    assert "quant_method" not in config["quantization_config"]
    assert (out / "mtp.safetensors").exists()
    model, _ = stock_load(str(out))
    assert model(mx.array([[5, 77, 300]])).shape == (1, 3, Shape().vocab_size)


def test_bad_fp8_tensors_are_one_line_errors():
    weight, scale = mx.zeros((256, 128), dtype=mx.uint8), mx.ones((2, 1))
    with pytest.raises(BadInputError, match="declares no fp8 quantization_config"):
        dequantize({"w.weight": weight, "w.weight_scale_inv": scale}, None)
    with pytest.raises(BadInputError, match="do not tile a 256x128 weight"):
        dequantize({"w.weight": weight, "w.weight_scale_inv": mx.ones((1, 1))}, (128, 128))
    with pytest.raises(BadInputError, match="has no fp8 matrix"):
        dequantize({"w.weight_scale_inv": scale}, (128, 128))
    with pytest.raises(BadInputError, match="weight_block_size"):
        block_size({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}})
    assert block_size({"quantization_config": {"group_size": 64, "bits": 4}}) is None


def test_other_quantized_bases_are_still_refused(folders, tmp_path):
    fp8, _ = folders
    other = tmp_path / "awq"
    shutil.copytree(fp8, other)
    config = json.loads((other / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="already quantized"):
        build(BuildOptions(out=tmp_path / "out", base=other, method="uniform"), log=lambda line: None)
