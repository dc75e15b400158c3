"""The quantize pipeline: base -> calibration -> sensitivity probes -> knapsack -> mlx-lm folder, written atomically.

The folder is assembled in a hidden ``.<name>.partial`` sibling (which also keeps the probes of an
interrupted run, to resume) and renamed into place only when complete, ``config.json`` last. A lock
file beside it keeps two processes from building the same output at once.

Formats: each module is at ``bits``, ``high_bits`` or one of ``widths`` (by default ``EXTRA_WIDTHS``:
the OptiQ recipe is 3/4/5/6/8-bit), each at ``group_size`` or at the finer ``fine_group_size`` (half a
bit per weight more for a sensitive module). KL at every format but the measured one (``bits`` at
``group_size``) is estimated from it by weight-error ratios. The allocator lowers insensitive modules
to 3 bits to pay for raising sensitive ones, within the same byte budget.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path

from optiq_runtime.allocate import Allocation, LayerChoice, Width, allocate
from optiq_runtime.calibration import CALIBRATION_FILE, calibration_tokens, read_samples
from optiq_runtime.checkpoint import Checkpoint, checkpoint_digest, open_base
from optiq_runtime.draft_vocab import build_draft_vocab
from optiq_runtime.errors import BadInputError, OptiqError
from optiq_runtime.load import load_network, load_tokenizer
from optiq_runtime.progress import ProgressCallback
from optiq_runtime.kl_gradient import ACTIVATION_BUDGET_BYTES, measure, tokens_per_batch
from optiq_runtime.sensitivity import GROUP_SIZES, Sensitivity, Target, find_targets, fresh

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
# Written to metadata; a first-run build from an older recipe is rebuilt (2: finer group sizes;
# 3: sensitivity from the KL gradient at the all-low model, one backward pass per batch;
# 4: 3-, 5- and 6-bit candidates beside 4 and 8, bench/formats.py's and bench/quantize_scale.py's choice).
RECIPE_VERSION = 4
# Candidate bit widths besides ``bits`` and ``high_bits`` unless a build names others (``()``: none).
EXTRA_WIDTHS = (3, 5, 6)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
    "generation_config.json",
)
Log = Callable[[str], None]
# Beside the working copy and one batch's activations: calibration, head chunks, allocator slack.
WORKING_MEMORY_BYTES = 512 * 1024 * 1024


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class BuildOptions:
    """What ``optiq quantize`` takes; ``max_tokens`` caps the calibration tokens (None: the whole mix)."""

    out: Path
    base: str | os.PathLike | None = None
    method: str = "optiq"
    bits: int = 4
    high_bits: int = 8
    group_size: int = 64
    budget: float = 1.05
    calibration: str | os.PathLike | None = None
    force: bool = False
    seq_len: int = 256
    max_tokens: int | None = 8192
    batch_tokens: int | None = None  # tokens per batch (None: as many as the activation budget allows)
    widths: tuple[int, ...] | None = EXTRA_WIDTHS  # extra candidate bit widths besides bits and high_bits
    probes: Path | None = None  # a sensitivity.json to reuse when it matches this base, data and settings
    fine_group_size: int | None = 32  # the finer group size also offered (None: only group_size)

    @property
    def default_width(self) -> Width:
        return Width(self.bits, self.group_size)

    @property
    def fine(self) -> int | None:
        """The finer group size offered, or None (off, or group_size is already the finest)."""
        fine = self.fine_group_size
        return fine if self.method == "optiq" and fine and fine < self.group_size else None

    @property
    def candidate_group_sizes(self) -> tuple[int, ...]:
        return (self.group_size, self.fine) if self.fine else (self.group_size,)

    @property
    def candidates(self) -> tuple[Width, ...]:
        """Every candidate format: each bit width at each candidate group size."""
        if self.method == "uniform":
            return (self.default_width,)
        bits = set(self.widths or ()) | {self.bits, self.high_bits}
        return tuple(sorted(Width(b, g) for b in bits for g in self.candidate_group_sizes))


@dataclass
class BuildResult:
    """The finished folder and what its metadata says."""

    path: Path
    metadata: dict = field(default_factory=dict)


def check_options(options: BuildOptions) -> None:
    """Reject unusable flags before any work (exit status 2)."""
    if options.method not in ("optiq", "uniform"):
        raise BadInputError(f"--method must be optiq or uniform, not {options.method!r}")
    if options.bits not in SUPPORTED_BITS or options.high_bits not in SUPPORTED_BITS:
        raise BadInputError(f"--bits and --high-bits must be one of {SUPPORTED_BITS}")
    if options.method == "optiq" and options.high_bits <= options.bits:
        raise BadInputError(f"--high-bits ({options.high_bits}) must exceed --bits ({options.bits})")
    if any(bits not in SUPPORTED_BITS for bits in options.widths or ()):
        raise BadInputError(f"--widths must be drawn from {SUPPORTED_BITS}, not {list(options.widths)}")
    if options.group_size not in GROUP_SIZES:
        raise BadInputError(f"--group-size must be 32, 64 or 128, not {options.group_size}")
    if options.fine_group_size is not None and options.fine_group_size not in GROUP_SIZES:
        raise BadInputError(f"--fine-group-size must be 32, 64, 128 or none, not {options.fine_group_size}")
    if (options.fine_group_size or 0) > options.group_size:
        raise BadInputError(f"--fine-group-size ({options.fine_group_size}) must not exceed --group-size "
                            f"({options.group_size})")
    if options.budget < 1.0:
        raise BadInputError(f"--budget {options.budget} is below uniform {options.bits}-bit (1.0); nothing fits in it")
    out = Path(options.out)
    if out.exists() and not options.force:
        raise BadInputError(f"output {str(out)!r} already exists; pass --force to replace it")


def _available_memory() -> int:
    """Bytes this process may still use: Metal's working set, else the machine's available memory."""
    from optiq_runtime.machine import available_memory

    if mx.metal.is_available():
        info = getattr(mx, "device_info", None) or mx.metal.device_info
        return int(info().get("max_recommended_working_set_size", 0))
    return available_memory()


def memory_needed(checkpoint: Checkpoint, method: str) -> int:
    """Peak bytes a build is expected to need: the float32 working copy plus one batch's backward pass
    (optiq), or the bf16 weights plus their quantized copy (uniform)."""
    if method == "uniform":
        return int(checkpoint.parameters * 2.6)
    return 4 * checkpoint.parameters + ACTIVATION_BUDGET_BYTES + WORKING_MEMORY_BYTES


def check_memory(checkpoint: Checkpoint, method: str) -> None:
    """Refuse, before loading anything, a checkpoint whose build would not fit in memory."""
    needed, available = memory_needed(checkpoint, method), _available_memory()
    if needed > available:
        raise BadInputError(
            f"base {str(checkpoint.path)!r} ({checkpoint.parameters / 1e9:.2f}B parameters) needs ~{needed / 2**30:.1f} GiB "
            f"to quantize with --method {method}, and {available / 2**30:.1f} GiB is available")


def _as_bf16(model: nn.Module) -> nn.Module:
    """Cast float parameters to bf16 (mlx-lm's cast rule), so quantization scales are bf16 on disk."""
    keep = getattr(model, "cast_predicate", lambda path: True)

    def cast(path, value):
        if mx.issubdtype(value.dtype, mx.floating) and value.dtype != mx.bfloat16 and keep(path):
            return value.astype(mx.bfloat16)
        return value

    model.update(tree_map_with_path(cast, model.parameters()))
    return model


def _quantize(model: nn.Module, widths: dict[str, dict]) -> None:
    """Quantize exactly the modules named in ``widths`` with their own group size and bits."""
    nn.quantize(model, class_predicate=lambda path, module: widths.get(path, False))


def _widths(targets: list[Target], chosen: dict[str, Width], options: BuildOptions) -> dict[str, dict]:
    """Per-module quantization parameters: the chosen format (default the low one), or the model's fixed one."""
    widths = {}
    for t in targets:
        width = chosen.get(t.path, options.default_width)
        widths[t.path] = t.fixed or {"group_size": width.group_size, "bits": width.bits}
    return widths


def quantized_nbytes(model: nn.Module) -> int:
    """Bytes of the packed weights, scales and biases of every quantized module."""
    total = 0
    for _, module in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if isinstance(module, (nn.QuantizedLinear, nn.QuantizedEmbedding)):
            total += module.weight.nbytes + module.scales.nbytes + module.biases.nbytes
    return total


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _saved_probes(files: list[Path], fingerprint: str) -> Sensitivity | None:
    """Probes of the same base, data and settings from an earlier run (finished first)."""
    found = [s for s in (Sensitivity.load(f) for f in files) if s and s.fingerprint == fingerprint]
    return max(found, key=lambda s: s.batches_done, default=None)


def measure_sensitivity(
    checkpoint: Checkpoint, options: BuildOptions, state_file: Path, log: Log, progress: ProgressCallback | None
) -> tuple[Sensitivity, dict]:
    """Measure every module's sensitivity (or resume / reuse a saved run); returns it and calibration facts."""
    model, _ = load_network(checkpoint.path, upcast=True)
    tokenizer = load_tokenizer(checkpoint.path, checkpoint.config)
    tokens = calibration_tokens(tokenizer, options.calibration, options.seq_len, options.max_tokens)
    calibration = {
        "file": str(options.calibration or CALIBRATION_FILE.name),
        "tokens": tokens.tokens, "digest": tokens.digest, "domains": tokens.domains,
    }
    fingerprint = _fingerprint(checkpoint_digest(checkpoint), tokens.digest, options.bits, options.group_size,
                               options.seq_len)
    earlier = [Path(options.out) / "optiq" / "sensitivity.json", state_file]
    if options.probes is not None:
        earlier.insert(0, Path(options.probes))
    state = _saved_probes(earlier, fingerprint)
    if state is None:
        most = max(1, (options.batch_tokens or tokens_per_batch(model, options.seq_len)) // options.seq_len)
        rows = tokens.rows.shape[0]
        batches = -(-rows // most)
        per_batch = -(-rows // batches) * options.seq_len  # batches as even as whole rows allow
        batches = -(-tokens.tokens // per_batch)
        state = fresh(find_targets(model, options.group_size), fingerprint, options.bits, options.high_bits,
                      options.group_size, batches, per_batch)
        log(f"calibration: {tokens.tokens} tokens from {calibration['file']}; sensitivity: KL gradient at uniform "
            f"{state.low}, {batches} batches of {per_batch} tokens (activation budget "
            f"{ACTIVATION_BUDGET_BYTES // 2**20} MiB)")
    elif state.complete:
        log(f"sensitivity: reusing {state.batches_done} measured batches")
    else:
        log(f"sensitivity: resuming at batch {state.batches_done + 1} of {state.batches}")
    measure(model, tokens.rows, state, options.candidates, state_file, progress)
    state.save(state_file)
    return state, calibration


def _mtp_layers(checkpoint: Checkpoint) -> int:
    text = checkpoint.config.get("text_config", checkpoint.config)
    indices = {name.split(".")[2] for name in checkpoint.tensor_names if name.startswith("mtp.layers.")}
    return int(text.get("mtp_num_hidden_layers") or len(indices))


def write_mtp(checkpoint: Checkpoint, folder: Path, bits: int, group_size: int) -> dict:
    """``mtp.safetensors``: the base's mtp.* tensors under HF names, decoder projections quantized, the rest bf16."""
    tensors: dict[str, mx.array] = {}
    for file in checkpoint.weight_files:
        tensors.update({k: v for k, v in mx.load(str(file)).items() if k.startswith("mtp.")})
    out: dict[str, mx.array] = {}
    for name, value in sorted(tensors.items()):
        value = value.astype(mx.bfloat16) if mx.issubdtype(value.dtype, mx.floating) else value
        is_projection = name.startswith("mtp.layers.") and name.endswith(".weight") and value.ndim == 2
        if is_projection and value.shape[-1] % group_size == 0:
            stem = name[: -len(".weight")]
            out[name], out[f"{stem}.scales"], out[f"{stem}.biases"] = mx.quantize(value, group_size=group_size, bits=bits)
        else:
            out[name] = value
    mx.save_safetensors(str(folder / "mtp.safetensors"), out, metadata={"format": "mlx"})
    return {"file": "mtp.safetensors", "num_hidden_layers": _mtp_layers(checkpoint),
            "quantization": {"group_size": group_size, "bits": bits}}


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


def _write_folder(checkpoint: Checkpoint, folder: Path, widths: dict[str, dict], options: BuildOptions,
                  metadata: dict) -> int:
    """Quantize the base's bf16 weights and write every file, config.json last; returns quantized bytes."""
    from mlx_lm.utils import save_config, save_model

    model, _ = load_network(checkpoint.path, upcast=False, lazy=True)
    _as_bf16(model)
    _quantize(model, widths)
    written = quantized_nbytes(model)
    save_model(folder, model, donate_model=True)
    _copy_tokenizer(checkpoint.path, folder)
    config = _config(checkpoint, widths, options)
    if checkpoint.has_mtp:
        config["mtp"] = write_mtp(checkpoint, folder, options.bits, options.group_size)
        if draft := build_draft_vocab(folder, checkpoint, options.calibration):
            config["mtp"]["draft_vocab"] = draft
    metadata["mtp"] = checkpoint.has_mtp
    (folder / "optiq").mkdir(exist_ok=True)
    (folder / "optiq" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    save_config(config, folder / "config.json")
    return written


def _publish(work: Path, out: Path) -> None:
    """Rename the finished folder into place; an existing one (``--force``) is swapped out, then removed."""
    old = out.parent / f".{out.name}.replaced-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    os.rename(work, out)
    shutil.rmtree(old, ignore_errors=True)


class BuildBusy(OptiqError):
    """Another process is building the same output right now."""

    def __init__(self, out: Path, lock_file: Path):
        super().__init__(f"another optiq process is building {out} right now")
        self.lock_file = lock_file


def wait_for(lock_file: Path) -> None:
    """Block until the build holding ``lock_file`` finishes (or dies)."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        fcntl.flock(handle, fcntl.LOCK_UN)


def _lock(out: Path, work: Path):
    lock_file = work.parent / f"{work.name}.lock"
    handle = open(lock_file, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        handle.close()
        raise BuildBusy(out, lock_file) from error
    work.mkdir(parents=True, exist_ok=True)
    return handle


def _uniform_choices(checkpoint: Checkpoint, options: BuildOptions) -> tuple[list[Target], list[LayerChoice]]:
    model, _ = load_network(checkpoint.path, upcast=False, lazy=True)
    targets = find_targets(model, options.group_size)
    choices = []
    for t in targets:
        width = t.fixed_width or options.default_width
        choices.append(LayerChoice(t.path, {width: t.nbytes(width)}, {width: 0.0}, width))
    return targets, choices


def _sensitivity_facts(state: Sensitivity | None) -> dict | None:
    """How sensitivity was measured, including the size-dependent batch size."""
    if state is None:
        return None
    return {"estimator": state.estimator, "batches": state.batches, "batch_tokens": state.batch_tokens,
            "tokens": state.tokens_done, "all_low_mean_kl": state.all_low_kl_sum / max(1, state.tokens_done)}


def _metadata(options: BuildOptions, checkpoint: Checkpoint, reference: str, allocation: Allocation,
              widths: dict[str, dict], calibration: dict | None) -> dict:
    formats = {path: Width(width["bits"], width["group_size"]) for path, width in widths.items()}
    counts = {str(bits): 0 for bits in sorted({w.bits for w in options.candidates})}
    format_counts = {w.label: 0 for w in options.candidates}
    for width in formats.values():
        counts[str(width.bits)] = counts.get(str(width.bits), 0) + 1
        format_counts[width.label] = format_counts.get(width.label, 0) + 1
    return {
        "recipe": RECIPE_VERSION,
        "method": options.method,
        "base": str(options.base) if options.base is not None else "tiny-agent (embedded)",
        "base_path": str(checkpoint.path),
        "base_digest": checkpoint_digest(checkpoint),
        "reference": reference,
        "bits": options.bits,
        "high_bits": options.high_bits,
        "group_size": options.group_size,
        "fine_group_size": options.fine,
        "budget": options.budget,
        "bytes": {"optiq": allocation.bytes, "uniform": allocation.uniform_bytes,
                  "limit": allocation.limit_bytes, "ratio": allocation.ratio},
        "counts": counts,  # modules per bit width (what the status bar shows)
        "format_counts": format_counts,  # modules per format, e.g. {"4g32": 1, "4g64": 20, ...}
        "layers": {path: width.label for path, width in formats.items()},
        "widths": [width.label for width in options.candidates],
        "allocation": {"kl_sum": allocation.kl_sum, "uniform_kl_sum": allocation.uniform_kl_sum,
                       "kl_bound": allocation.kl_bound, "optimal": allocation.optimal},
        "calibration": calibration,
    }


def _clear(work: Path, keep: Path) -> None:
    """Empty the work folder of an earlier attempt's files, keeping its probes."""
    for entry in work.iterdir():
        if entry.is_dir() and entry.name == "optiq":
            for inner in entry.iterdir():
                if inner != keep:
                    inner.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def build(options: BuildOptions, progress: ProgressCallback | None = None, log: Log = _stderr) -> BuildResult:
    """Build a quantized model folder at ``options.out``; nothing appears there until it is complete."""
    check_options(options)
    out = Path(options.out).expanduser().absolute()
    checkpoint = open_base(options.base)
    if "quantization" in checkpoint.config or "quantization_config" in checkpoint.config:
        raise BadInputError(f"base {str(checkpoint.path)!r} is already quantized; give an unquantized (bf16) checkpoint")
    check_memory(checkpoint, options.method)
    if options.calibration is not None:
        read_samples(options.calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial"
    lock = _lock(out, work)
    state_file = work / "optiq" / "sensitivity.json"
    options = replace(options, out=out)
    try:
        started = time.monotonic()
        state = None
        if options.method == "optiq":
            state, calibration = measure_sensitivity(checkpoint, options, state_file, log, progress)
            targets, reference = state.targets(), state.reference
            allocation = allocate(state.choices(options.candidates), options.budget)
        else:
            (targets, choices), calibration, reference = _uniform_choices(checkpoint, options), None, "none"
            allocation = allocate(choices, 1.0)
        mx.clear_cache()
        _clear(work, state_file)
        widths = _widths(targets, allocation.widths, options)
        metadata = _metadata(options, checkpoint, reference, allocation, widths, calibration)
        metadata["sensitivity"] = _sensitivity_facts(state)
        metadata["build_seconds"] = round(time.monotonic() - started, 2)
        written = _write_folder(checkpoint, work, widths, options, metadata)
        if written != allocation.bytes:
            raise OptiqError(f"internal error: wrote {written} quantized bytes, allocated {allocation.bytes}")
        _publish(work, out)
        (work.parent / f"{work.name}.lock").unlink(missing_ok=True)
    except BaseException:
        if not state_file.exists():  # nothing worth resuming: leave no trace
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        lock.close()
    return BuildResult(out, metadata)
