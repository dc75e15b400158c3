"""The quantize pipeline: base -> calibration -> sensitivity probes -> knapsack -> mlx-lm folder, written atomically.

The folder is assembled in a hidden ``.<name>.partial`` sibling (which also keeps the probes of an
interrupted run, to resume) and renamed into place only when complete, ``config.json`` last. A lock
file beside it keeps two processes from building the same output at once.

Each job has its module: ``build_options`` (the flags and what they refuse), ``build_memory`` (whether
it fits), ``build_choices`` (the sensitivity measured, resumed or reused), ``build_weights`` (bf16 cast,
quantization), ``build_folder`` + ``build_mtp`` (the files), ``build_metadata``, ``build_publish`` (lock,
partial folder, rename). This one runs them in order.

Formats: each module is at ``bits``, ``high_bits`` or one of ``widths`` (by default ``EXTRA_WIDTHS``:
the OptiQ recipe is 3/4/5/6/8-bit), each at ``group_size`` or at the finer ``fine_group_size`` (half a
bit per weight more for a sensitive module). KL at every format but the measured one (``bits`` at
``group_size``) is estimated from it by weight-error ratios. The allocator lowers insensitive modules
to 3 bits to pay for raising sensitive ones, within the same byte budget.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlx.core as mx

from optiq_runtime import fp8
from optiq_runtime.allocate import allocate
from optiq_runtime.build_choices import Log, measure_sensitivity, uniform_choices
from optiq_runtime.build_folder import write_folder
from optiq_runtime.build_memory import check_memory
from optiq_runtime.build_metadata import metadata, sensitivity_facts
from optiq_runtime.build_options import BuildOptions, check_options
from optiq_runtime.build_publish import clear_work, lock, publish
from optiq_runtime.build_weights import module_formats
from optiq_runtime.calibration import read_samples
from optiq_runtime.checkpoint import open_base
from optiq_runtime.errors import BadInputError, OptiqError
from optiq_runtime.progress import ProgressCallback

__all__ = ["BuildOptions", "BuildResult", "build"]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class BuildResult:
    """The finished folder and what its metadata says."""

    path: Path
    metadata: dict = field(default_factory=dict)


def build(options: BuildOptions, progress: ProgressCallback | None = None, log: Log = _stderr) -> BuildResult:
    """Build a quantized model folder at ``options.out``; nothing appears there until it is complete."""
    check_options(options)
    out = Path(options.out).expanduser().absolute()
    checkpoint = open_base(options.base)
    quantized = "quantization" in checkpoint.config or "quantization_config" in checkpoint.config
    if quantized and fp8.block_size(checkpoint.config) is None:  # block fp8 dequantizes exactly at load
        raise BadInputError(
            f"base {str(checkpoint.path)!r} is already quantized; give an unquantized (bf16) or block-scaled fp8 checkpoint"
        )
    check_memory(checkpoint, options.method)
    if options.calibration is not None:
        read_samples(options.calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial"
    held = lock(out, work)
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
            (targets, choices), calibration, reference = uniform_choices(checkpoint, options), None, "none"
            allocation = allocate(choices, 1.0)
        mx.clear_cache()
        clear_work(work, state_file)
        widths = module_formats(targets, allocation.widths, options)
        facts = metadata(options, checkpoint, reference, allocation, widths, calibration)
        facts["sensitivity"] = sensitivity_facts(state)
        facts["build_seconds"] = round(time.monotonic() - started, 2)
        written = write_folder(checkpoint, work, widths, options, facts)
        if written != allocation.bytes:
            raise OptiqError(f"internal error: wrote {written} quantized bytes, allocated {allocation.bytes}")
        publish(work, out)
        (work.parent / f"{work.name}.lock").unlink(missing_ok=True)
    except BaseException:
        if not state_file.exists():  # nothing worth resuming: leave no trace
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        held.close()
    return BuildResult(out, facts)
