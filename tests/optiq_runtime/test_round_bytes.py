"""The bytes of a depth-1 MTP round, counted from a built model's loaded arrays, against a count of its files' tensors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from optiq_runtime.backbone import text_args
from optiq_runtime.load import load_model
from optiq_runtime.mtp import load_mtp_head
from optiq_runtime.round_bytes import round_bytes


def tensor_elements(file: Path) -> dict[str, int]:
    """Each tensor's element count, from a safetensors header."""
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    counts = {}
    for name, info in header.items():
        count = 1
        for size in info["shape"]:
            count *= size
        counts[name] = count
    return counts


@pytest.fixture(scope="module")
def loaded(uniform_build):
    loaded = load_model(uniform_build)
    return loaded, load_mtp_head(loaded.path, text_args(loaded.model))


def test_parts_match_a_count_of_the_files_tensors(uniform_build, loaded):
    model, head = loaded
    arrays = tree_flatten(model.model.parameters()) + tree_flatten(head.parameters())
    assert {a.dtype for _, a in arrays} <= {mx.float32, mx.uint32}  # as loaded here: 4 bytes an element
    main = tensor_elements(uniform_build / "model.safetensors")
    mtp = tensor_elements(uniform_build / "mtp.safetensors")
    assert text_args(model.model).tie_word_embeddings
    embedding = sum(n for name, n in main.items() if ".embed_tokens." in name)
    parts = round_bytes(model.model, head)
    assert parts.output == 4 * embedding
    assert parts.backbone == 4 * (sum(main.values()) - embedding)
    assert parts.fc == 4 * mtp["mtp.fc.weight"]
    assert parts.mtp_layer == 4 * (sum(mtp.values()) - mtp["mtp.fc.weight"])
    assert parts.verify == parts.backbone + parts.output


def test_k_rows_cost_their_share_of_the_output_layer(loaded):
    model, head = loaded
    parts = round_bytes(model.model, head)
    vocab = text_args(model.model).vocab_size
    assert parts.vocab_size == vocab
    assert parts.draft_output(vocab) == parts.output == parts.draft_output()
    half = vocab // 2
    assert parts.draft(half) == parts.mtp_layer + parts.fc + half * parts.output_row
    expected = (parts.output - half * parts.output_row) / (parts.verify + parts.mtp_layer + parts.fc + parts.output)
    assert parts.bound_cut(half) == pytest.approx(expected)
    assert parts.bound_cut(vocab) == 0
    report = parts.report(half)
    assert report["round_k"] == parts.round(half) < report["round_full"] == parts.round()
    assert report["round_cost_full"] == pytest.approx(parts.round() / parts.verify, abs=1e-4)
