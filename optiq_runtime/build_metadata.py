"""``optiq/metadata.json``: how a folder was built (recipe, base, formats chosen and their counts, bytes, KL bounds, calibration)."""

from __future__ import annotations

from optiq_runtime.allocate import Allocation, Width
from optiq_runtime.build_options import BuildOptions
from optiq_runtime.checkpoint import Checkpoint, checkpoint_digest
from optiq_runtime.sensitivity import Sensitivity

# Written to metadata; a first-run build from an older recipe is rebuilt (2: finer group sizes;
# 3: sensitivity from the KL gradient at the all-low model, one backward pass per batch;
# 4: 3-, 5- and 6-bit candidates beside 4 and 8, bench/formats.py's and bench/quantize_scale.py's choice;
# 5: the objective also weighs the MTP head's drafts).
RECIPE_VERSION = 5


def metadata(
    options: BuildOptions,
    checkpoint: Checkpoint,
    reference: str,
    allocation: Allocation,
    widths: dict[str, dict],
    calibration: dict | None,
) -> dict:
    """What ``optiq/metadata.json`` holds, but for the facts only the finished build knows (added by ``build``)."""
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
        "bytes": {
            "optiq": allocation.bytes,
            "uniform": allocation.uniform_bytes,
            "limit": allocation.limit_bytes,
            "ratio": allocation.ratio,
        },
        "counts": counts,  # modules per bit width (what the status bar shows)
        "format_counts": format_counts,  # modules per format, e.g. {"4g32": 1, "4g64": 20, ...}
        "layers": {path: width.label for path, width in formats.items()},
        "widths": [width.label for width in options.candidates],
        "allocation": {
            "kl_sum": allocation.kl_sum,
            "uniform_kl_sum": allocation.uniform_kl_sum,
            "kl_bound": allocation.kl_bound,
            "optimal": allocation.optimal,
        },
        "calibration": calibration,
    }


def sensitivity_facts(state: Sensitivity | None) -> dict | None:
    """How sensitivity was measured, including the size-dependent batch size."""
    if state is None:
        return None
    return {
        "estimator": state.estimator,
        "batches": state.batches,
        "batch_tokens": state.batch_tokens,
        "tokens": state.tokens_done,
        "all_low_mean_kl": state.all_low_kl_sum / max(1, state.tokens_done),
        "mtp_weight": state.mtp_weight,  # the MTP head's drafts' KL in the objective, at this weight
        "all_low_draft_mean_kl": state.all_low_draft_kl_sum / max(1, state.tokens_done),
    }
