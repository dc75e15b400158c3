"""training.soup: the uniform average of exported checkpoints of one lineage."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from optiq_runtime import embedded_base_path  # noqa: E402
from training.soup import main  # noqa: E402


@pytest.fixture
def two_models(tmp_path):
    """The shipped weights, and a copy whose every tensor is three times as large."""
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(embedded_base_path(), first)
    shutil.copytree(embedded_base_path(), second)
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
