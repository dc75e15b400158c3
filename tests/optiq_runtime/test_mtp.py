"""Loading the MTP head: Hugging Face ``mtp.*`` tensors (norm offsets), built ``mtp.safetensors``, none at all."""

from __future__ import annotations

import json
import logging

import mlx.core as mx
import mlx.nn as nn
import pytest
from checkpoints import write_random_checkpoint
from mlx.utils import tree_flatten

from optiq_runtime.build_mtp import write_mtp
from optiq_runtime.checkpoint import inspect_checkpoint
from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from optiq_runtime.load import load_model
from optiq_runtime.mtp import MTP_FILE, MTPHead, load_mtp_head, mtp_sources
from optiq_runtime.sampling import Sampling

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


def test_built_mtp_safetensors_loads_quantized(hf_folder, text_args, tmp_path):
    """A built folder's mtp.safetensors, as the quantizer writes it: HF names and offsets, projections quantized."""
    built = tmp_path / "built"
    built.mkdir()
    write_mtp(inspect_checkpoint(hf_folder), built, bits=4, group_size=64)
    assert mtp_sources(built) == [built / MTP_FILE]
    head = load_mtp_head(built, text_args)
    assert isinstance(head.layers[0].mlp.up_proj, nn.QuantizedLinear) and head.layers[0].mlp.up_proj.bits == 4
    reference = load_mtp_head(hf_folder, text_args)
    for name in NORMS:
        assert mx.allclose(
            dict(tree_flatten(head.parameters()))[name], dict(tree_flatten(reference.parameters()))[name], atol=1e-2
        ).item()
    x = mx.random.normal((1, 3, text_args.hidden_size))
    error = mx.abs(head(x, x, None) - reference(x, x, None)).max().item()
    assert error < 0.5  # 4-bit projections: close, not equal


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
    tokens = engine.generate([1, 5, 9, 13], Sampling(max_tokens=8))
    assert len(tokens) > 0 and not engine.last_stats.mtp_used
