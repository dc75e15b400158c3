"""training.soup: the uniform average of exported checkpoints of one lineage."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from tokenizers import Tokenizer  # noqa: E402

from optiq_runtime import embedded_base_path  # noqa: E402
from training.arch import Shape, TinyAgent  # noqa: E402
from training.export import export, read_tensors  # noqa: E402
from training.soup import main  # noqa: E402

SHAPE = Shape(num_hidden_layers=4)


def _exported(folder, seed, fp8=False):
    tokenizer = Tokenizer.from_file(str(embedded_base_path() / "tokenizer.json"))
    return export(TinyAgent(SHAPE, seed=seed), SHAPE, tokenizer, folder, fp8=fp8)


@pytest.fixture
def two_models(tmp_path):
    """A bf16 checkpoint, and a copy whose every tensor is three times as large."""
    first = _exported(tmp_path / "a", seed=1)
    second = tmp_path / "b"
    shutil.copytree(first, second)
    tensors = safetensors_torch.load_file(str(first / "model.safetensors"))
    tripled = {k: (t.float() * 3).to(t.dtype) for k, t in tensors.items()}
    safetensors_torch.save_file(tripled, str(second / "model.safetensors"), metadata={"format": "pt"})
    return first, second, tensors


def test_the_soup_is_the_mean_of_each_tensor_in_its_dtype(two_models, tmp_path):
    first, second, tensors = two_models
    assert main(["--out", str(tmp_path / "soup"), str(first), str(second)]) == 0
    soup = safetensors_torch.load_file(str(tmp_path / "soup" / "model.safetensors"))
    assert set(soup) == set(tensors)
    for key, tensor in tensors.items():
        assert soup[key].dtype == tensor.dtype
        expected = ((tensor.float() + (tensor.float() * 3).to(tensor.dtype).float()) / 2).to(tensor.dtype)
        assert torch.equal(soup[key], expected), key
    assert (tmp_path / "soup" / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()


def test_fp8_checkpoints_are_averaged_as_the_weights_they_encode(tmp_path):
    first, second = _exported(tmp_path / "a", seed=1, fp8=True), _exported(tmp_path / "b", seed=2, fp8=True)
    assert main(["--out", str(tmp_path / "soup"), str(first), str(second)]) == 0
    stored = safetensors_torch.load_file(str(tmp_path / "soup" / "model.safetensors"))
    key = "model.language_model.layers.0.mlp.up_proj.weight"
    assert stored[key].dtype == torch.float8_e4m3fn and key + "_scale_inv" in stored
    soup, a, b = read_tensors(tmp_path / "soup"), read_tensors(first), read_tensors(second)
    assert set(soup) == set(a)
    for name, value in soup.items():
        mean = (a[name] + b[name]) / 2
        assert (value - mean).norm() <= 0.05 * mean.norm() + 1e-6, name  # e4m3's rounding, not a wrong mean


def test_models_of_another_lineage_are_refused_with_one_line(two_models, tmp_path, capsys):
    first, second, _ = two_models
    (second / "tokenizer.json").write_text("{}")
    assert main(["--out", str(tmp_path / "soup"), str(first), str(second)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not one lineage" in err and "\n" not in err
    assert not (tmp_path / "soup").exists()


def test_an_existing_out_folder_is_never_overwritten(two_models, tmp_path):
    first, second, _ = two_models
    (tmp_path / "soup").mkdir()
    assert main(["--out", str(tmp_path / "soup"), str(first), str(second)]) == 2
    assert not any((tmp_path / "soup").iterdir())
