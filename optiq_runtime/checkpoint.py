"""Resolve a base checkpoint (local folder, local Hub cache, download) and check its files before use."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from optiq_runtime.errors import BadInputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a model folder needs, as mlx-lm's own download fetches it (no *.bin, no images).
HUB_PATTERNS = [
    "*.json",
    "model*.safetensors",
    "tokenizer.model",
    "*.tiktoken",
    "*.txt",
    "*.jsonl",
    "*.jinja",
]
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}


@dataclass(frozen=True)
class Checkpoint:
    """A checked model folder: its config, weight files and tensor names."""

    path: Path
    config: dict
    weight_files: tuple[Path, ...]
    tensor_names: frozenset[str]
    parameters: int = 0

    @property
    def has_mtp(self) -> bool:
        return any(name.startswith("mtp.") for name in self.tensor_names)

    @property
    def model_type(self) -> str:
        return self.config["model_type"]


def resolve_base(base: str | os.PathLike | None) -> Path:
    """The local folder of ``base``: a folder, a Hub id (local cache first, then download), or the embedded default."""
    if base is None:
        from optiq_runtime.embedded import embedded_base_path

        return Path(embedded_base_path())
    text = os.fspath(base)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BadInputError(f"base {text!r} is a file; expected a model folder (config.json + *.safetensors)")
        return path
    if not _HUB_ID.match(text) or text.startswith((".", "~")):
        raise BadInputError(f"base path {text!r} does not exist")
    return _from_hub(text)


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("OPTIQ_OFFLINE"):
        raise BadInputError(f"base {repo_id!r} is not in the local Hugging Face cache and downloads are off")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInputError(
            f"base {repo_id!r} is neither a local folder nor in the Hugging Face cache, "
            f"and downloading it failed: {reason}"
        ) from error


def read_safetensors_header(path: Path) -> dict:
    """The tensor table of one safetensors file; BadInputError when it is corrupt or truncated."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise BadInputError(f"{path} is not a safetensors file (truncated: {size} bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8 or header_len > 100_000_000:
            raise BadInputError(f"{path} is corrupt or truncated (header of {header_len} bytes in a {size}-byte file)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadInputError(f"{path} is corrupt: its safetensors header is not JSON") from error
    if not isinstance(header, dict):
        raise BadInputError(f"{path} is corrupt: its safetensors header is not a table")
    header.pop("__metadata__", None)
    _check_extents(path, header, size - 8 - header_len)
    return header


def _check_extents(path: Path, header: dict, data_len: int) -> None:
    end = 0
    for name, entry in header.items():
        try:
            start, stop = entry["data_offsets"]
            count = 1
            for dim in entry["shape"]:
                count *= dim
            width = _DTYPE_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError) as error:
            raise BadInputError(f"{path} is corrupt: bad entry for tensor {name!r}") from error
        if stop - start != count * width or start < 0:
            raise BadInputError(f"{path} is corrupt: tensor {name!r} has inconsistent offsets")
        end = max(end, stop)
    if end > data_len:
        raise BadInputError(f"{path} is truncated: {data_len} data bytes, tensors need {end}")


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as error:
            raise BadInputError(f"{index} is not a valid safetensors index") from error
        missing = [n for n in names if not (path / n).exists()]
        if missing:
            raise BadInputError(f"{path} is missing weight files listed in its index: {', '.join(missing)}")
        return [path / n for n in names]
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise BadInputError(f"{path} has no weights (no model*.safetensors)")
    return files


def _read_config(path: Path) -> dict:
    config_file = path / "config.json"
    if not config_file.exists():
        raise BadInputError(f"{path} is not a model folder: no config.json")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise BadInputError(f"{config_file} is not valid JSON: {error}") from error
    if not isinstance(config, dict) or "model_type" not in config:
        raise BadInputError(f"{config_file} has no model_type")
    return config


def check_architecture(config: dict) -> None:
    """BadInputError unless mlx-lm has model code for this config."""
    from mlx_lm.utils import _get_classes

    try:
        _get_classes(config)
    except ValueError as error:
        raise BadInputError(
            f"unsupported architecture {config.get('model_type')!r}: mlx-lm has no model for it"
        ) from error


def inspect_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Check a model folder's config, architecture and every weight file's integrity."""
    path = Path(path)
    if not path.is_dir():
        raise BadInputError(f"model folder {str(path)!r} does not exist")
    config = _read_config(path)
    check_architecture(config)
    files = _weight_files(path)
    names: set[str] = set()
    parameters = 0
    for file in files:
        header = read_safetensors_header(file)
        names.update(header)
        parameters += sum(math.prod(entry["shape"]) for entry in header.values())
    return Checkpoint(path, config, tuple(files), frozenset(names), parameters)


def open_base(base: str | os.PathLike | None) -> Checkpoint:
    """Resolve and check a base checkpoint in one step."""
    return inspect_checkpoint(resolve_base(base))


def checkpoint_digest(checkpoint: Checkpoint, full_below: int = 256 * 1024 * 1024) -> str:
    """A short digest of the config and weights: full content for small checkpoints, else headers, sizes, mtimes."""
    import hashlib

    digest = hashlib.sha256((checkpoint.path / "config.json").read_bytes())
    full = sum(f.stat().st_size for f in checkpoint.weight_files) < full_below
    for file in checkpoint.weight_files:
        stat = file.stat()
        with open(file, "rb") as handle:
            if full:
                digest.update(handle.read())
                continue
            (header_len,) = struct.unpack("<Q", handle.read(8))
            digest.update(handle.read(header_len))
        digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]
