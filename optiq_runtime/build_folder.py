"""The files of a built folder, in mlx-lm's layout: weights, tokenizer, MTP head, metadata, and ``config.json`` last."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from optiq_runtime.build_mtp import write_mtp
from optiq_runtime.build_options import BuildOptions
from optiq_runtime.build_weights import as_bf16, quantize_modules, quantized_nbytes
from optiq_runtime.checkpoint import Checkpoint
from optiq_runtime.draft_vocab import build_draft_vocab
from optiq_runtime.load import load_network

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


def _copy_tokenizer(source: Path, folder: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)


def _config(checkpoint: Checkpoint, widths: dict[str, dict], options: BuildOptions) -> dict:
    config = json.loads((checkpoint.path / "config.json").read_text())
    quantization = {"group_size": options.group_size, "bits": options.bits, "mode": "affine", **widths}
    config["quantization"] = quantization
    config["quantization_config"] = quantization
    return config


def write_folder(
    checkpoint: Checkpoint, folder: Path, widths: dict[str, dict], options: BuildOptions, metadata: dict
) -> int:
    """Quantize the base's bf16 weights and write every file, config.json last; returns quantized bytes."""
    from mlx_lm.utils import save_config, save_model

    model, _ = load_network(checkpoint.path, upcast=False, lazy=True)
    as_bf16(model)
    quantize_modules(model, widths)
    written = quantized_nbytes(model)
    save_model(folder, model, donate_model=True)
    _copy_tokenizer(checkpoint.path, folder)
    config = _config(checkpoint, widths, options)
    if checkpoint.has_mtp:
        config["mtp"] = write_mtp(checkpoint, folder, options.bits, options.group_size)
        if draft := build_draft_vocab(folder, checkpoint, Path(options.calibration) if options.calibration else None):
            config["mtp"]["draft_vocab"] = draft
    metadata["mtp"] = checkpoint.has_mtp
    (folder / "optiq").mkdir(exist_ok=True)
    (folder / "optiq" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    save_config(config, folder / "config.json")
    return written
