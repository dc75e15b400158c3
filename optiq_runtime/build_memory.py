"""Whether a build fits in memory: what it will need against what this process may still use, checked before loading."""

from __future__ import annotations

import mlx.core as mx

from optiq_runtime.checkpoint import Checkpoint
from optiq_runtime.errors import BadInputError
from optiq_runtime.kl_gradient import ACTIVATION_BUDGET_BYTES

# Beside the working copy and one batch's activations: calibration, head chunks, allocator slack.
WORKING_MEMORY_BYTES = 512 * 1024 * 1024


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
            f"to quantize with --method {method}, and {available / 2**30:.1f} GiB is available"
        )
