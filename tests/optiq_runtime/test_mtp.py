"""Loading the MTP head: Hugging Face ``mtp.*`` tensors (norm offsets), built ``mtp.safetensors``, none at all."""

from __future__ import annotations

import json
import logging

import mlx.core as mx
import mlx.nn as nn
import pytest
from checkpoints import write_random_checkpoint
from mlx.utils import tree_flatten

from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from optiq_runtime.load import load_model
from optiq_runtime.mtp import MTP_FILE, MTPHead, load_mtp_head, mtp_sources

NORMS = (
    "pre_fc_norm_embedding.weight",
    "pre_fc_norm_hidden.weight",
    "norm.weight",
    "layers.0.input_layernorm.weight",
    "layers.0.post_attention_layernorm.weight",
    "layers.0.self_attn.q_norm.weight",
    "layers.0.self_attn.k_norm.weight",
)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("hf"), seed=1)


@pytest.fixture(scope="module")
def text_args(hf_folder):
    return load_model(hf_folder).model.language_model.args


def stored(folder) -> dict[str, mx.array]:
    return {k: v for k, v in mx.load(str(folder / "model.safetensors")).items() if k.startswith("mtp.")}


def test_hf_head_has_15_tensors_loaded_with_norm_offsets(hf_folder, text_args):
    raw = stored(hf_folder)
    assert len(raw) == 15
    head = load_mtp_head(hf_folder, text_args)
    params = dict(tree_flatten(head.parameters()))
    assert sorted("mtp." + k for k in params) == sorted(raw)
    for name, value in params.items():
        expected = raw["mtp." + name].astype(mx.float32) + (1.0 if name in NORMS else 0.0)
        assert value.shape == expected.shape, name
        assert value.dtype == mx.float32, name  # upcast on the CPU backend
        assert mx.allclose(value, expected).item(), name
    assert params["fc.weight"].shape == (text_args.hidden_size, 2 * text_args.hidden_size)
    assert not head.layers[0].is_linear  # one full-attention decoder layer


def test_head_puts_the_embedding_first(text_args):
    head = MTPHead(text_args)
    hidden = text_args.hidden_size
    head.fc.weight = mx.concatenate([mx.eye(hidden), mx.zeros((hidden, hidden))], axis=1)
    embedding, state = mx.random.normal((1, 1, hidden)), mx.random.normal((1, 1, hidden))
    projected = head.project(embedding, state)
    assert mx.allclose(projected, head.pre_fc_norm_embedding(embedding), atol=1e-5).item()


def test_built_mtp_safetensors_loads_as_stored(hf_folder, text_args, tmp_path):
    """A built folder stores absolute norms (its conv1d is already in mlx layout) and may quantize the head."""
    head = load_mtp_head(hf_folder, text_args)
    nn.quantize(head, group_size=64, bits=4, class_predicate=lambda p, m: p == "fc" or p.endswith("mlp.up_proj"))
    built = tmp_path / "built"
    built.mkdir()
    mx.save_safetensors(str(built / "model.safetensors"), {"layers.0.linear_attn.conv1d.weight": mx.zeros((8, 4, 1))})
    mx.save_safetensors(str(built / MTP_FILE), {"mtp." + k: v for k, v in tree_flatten(head.parameters())})
    again = load_mtp_head(built, text_args)
    assert isinstance(again.fc, nn.QuantizedLinear) and again.fc.bits == 4 and again.fc.group_size == 64
    assert isinstance(again.layers[0].mlp.up_proj, nn.QuantizedLinear)
    x = mx.random.normal((1, 3, text_args.hidden_size))
    assert mx.allclose(again(x, x, None), head(x, x, None), atol=1e-5).item()
    assert mtp_sources(built) == [built / MTP_FILE]


def test_wrong_shape_is_a_clear_error(hf_folder, text_args, tmp_path):
    tensors = stored(hf_folder)
    tensors["mtp.fc.weight"] = mx.zeros((4, 4))
    bad = tmp_path / "bad"
    bad.mkdir()
    mx.save_safetensors(str(bad / MTP_FILE), tensors)
    with pytest.raises(BadInputError, match="mtp.fc.weight"):
        load_mtp_head(bad, text_args)


def test_missing_tensor_is_a_clear_error(hf_folder, text_args, tmp_path):
    tensors = stored(hf_folder)
    del tensors["mtp.norm.weight"]
    bad = tmp_path / "bad"
    bad.mkdir()
    mx.save_safetensors(str(bad / MTP_FILE), tensors)
    with pytest.raises(BadInputError, match="missing.*mtp.norm.weight"):
        load_mtp_head(bad, text_args)


def test_checkpoint_without_head_decodes_plainly_with_a_notice(tmp_path, caplog):
    folder = write_random_checkpoint(tmp_path / "nohead", seed=2, mtp=False)
    assert json.loads((folder / "config.json").read_text())["text_config"]["mtp_num_hidden_layers"] == 0
    with caplog.at_level(logging.WARNING, logger="optiq"):
        engine = Engine.load(folder)
    notices = [r.getMessage() for r in caplog.records if "no MTP head" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert not engine.mtp_available and not engine.mtp_enabled
    tokens = engine.generate([1, 5, 9, 13], max_tokens=8)
    assert len(tokens) > 0 and not engine.last_stats.mtp_used
