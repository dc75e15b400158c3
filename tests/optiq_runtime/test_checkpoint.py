"""Resolving and checking a base: every bad input is one BadInputError naming the problem."""

from __future__ import annotations

import json
import shutil

import pytest
from checkpoints import write_random_checkpoint

from optiq_runtime.checkpoint import checkpoint_digest, inspect_checkpoint, open_base, resolve_base
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.errors import BadInputError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("base"), seed=2)


@pytest.fixture
def copy(base, tmp_path):
    return shutil.copytree(base, tmp_path / "copy")


def test_a_good_base_is_described(base):
    checkpoint = open_base(base)
    assert checkpoint.has_mtp
    assert checkpoint.model_type == "qwen3_5"
    assert checkpoint.parameters > 0
    assert any(name.startswith("model.language_model.layers.0.") for name in checkpoint.tensor_names)


def test_default_base_is_the_embedded_model():
    assert resolve_base(None) == embedded_base_path()
    assert open_base(None).has_mtp


def test_missing_path(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        resolve_base(tmp_path / "nowhere")


def test_folder_without_weights(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(BadInputError, match="no weights"):
        inspect_checkpoint(copy)


def test_folder_without_config(copy):
    (copy / "config.json").unlink()
    with pytest.raises(BadInputError, match="no config.json"):
        inspect_checkpoint(copy)


def test_truncated_safetensors(copy):
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BadInputError, match="truncated"):
        inspect_checkpoint(copy)


def test_corrupt_safetensors_header(copy):
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\x00garbage-not-json-at-all-here..."
    weights.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="corrupt"):
        inspect_checkpoint(copy)


def test_unsupported_architecture(copy):
    config = json.loads((copy / "config.json").read_text())
    config["model_type"] = "no_such_model"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="unsupported architecture 'no_such_model'"):
        inspect_checkpoint(copy)


def test_index_naming_a_missing_shard(copy):
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(BadInputError, match="missing weight files"):
        inspect_checkpoint(copy)


def test_hub_id_not_cached_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BadInputError, match="not in the local Hugging Face cache"):
        resolve_base("nobody/no-such-model")


def test_digest_follows_the_weights(base, copy):
    assert checkpoint_digest(open_base(base)) == checkpoint_digest(open_base(copy))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert checkpoint_digest(open_base(base)) != checkpoint_digest(open_base(copy))
