"""What the allocator chooses between: each module's sensitivity, measured (or resumed, or reused), or for a
uniform build every module at the default format."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from optiq_runtime.allocate import LayerChoice
from optiq_runtime.build_options import BuildOptions
from optiq_runtime.calibration import CALIBRATION_FILE, calibration_tokens
from optiq_runtime.checkpoint import Checkpoint, checkpoint_digest
from optiq_runtime.kl_gradient import ACTIVATION_BUDGET_BYTES, DraftObjective, measure, tokens_per_batch
from optiq_runtime.load import load_network, load_tokenizer
from optiq_runtime.progress import ProgressCallback
from optiq_runtime.sensitivity import Sensitivity, Target, find_targets, fresh

Log = Callable[[str], None]


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
        "tokens": tokens.tokens,
        "digest": tokens.digest,
        "domains": tokens.domains,
    }
    drafts = _draft_objective(checkpoint, model, options.mtp_weight)
    weight = drafts.weight if drafts else 0.0
    fingerprint = _fingerprint(
        checkpoint_digest(checkpoint),
        tokens.digest,
        options.bits,
        options.group_size,
        options.seq_len,
        *([weight] if weight else []),
    )
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
        state = fresh(
            find_targets(model, options.group_size),
            fingerprint,
            options.bits,
            options.high_bits,
            options.group_size,
            batches,
            per_batch,
        )
        state.mtp_weight = weight
        log(
            f"calibration: {tokens.tokens} tokens from {calibration['file']}; sensitivity: KL gradient at uniform "
            f"{state.low}, {batches} batches of {per_batch} tokens (activation budget "
            f"{ACTIVATION_BUDGET_BYTES // 2**20} MiB)"
        )
    elif state.complete:
        log(f"sensitivity: reusing {state.batches_done} measured batches")
    else:
        log(f"sensitivity: resuming at batch {state.batches_done + 1} of {state.batches}")
    measure(model, tokens.rows, state, options.candidates, state_file, progress, drafts)
    state.save(state_file)
    return state, calibration


def _draft_objective(checkpoint: Checkpoint, model, weight: float) -> DraftObjective | None:
    """The base's MTP head, unquantized, for the sensitivity objective (None: no head, or ``weight`` 0)."""
    from optiq_runtime.backbone import text_args
    from optiq_runtime.mtp import load_mtp_head

    if weight <= 0 or not checkpoint.has_mtp:
        return None
    head = load_mtp_head(checkpoint.path, text_args(model), upcast=True)
    return DraftObjective(head, weight) if head is not None else None


def uniform_choices(checkpoint: Checkpoint, options: BuildOptions) -> tuple[list[Target], list[LayerChoice]]:
    model, _ = load_network(checkpoint.path, upcast=False, lazy=True)
    targets = find_targets(model, options.group_size)
    choices = []
    for t in targets:
        width = t.fixed_width or options.default_width
        choices.append(LayerChoice(t.path, {width: t.nbytes(width)}, {width: 0.0}, width))
    return targets, choices
