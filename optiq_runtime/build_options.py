"""What a build takes (``BuildOptions``, the flags of ``optiq quantize``) and the values it refuses before any work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from optiq_runtime.allocate import Width
from optiq_runtime.errors import BadInputError
from optiq_runtime.kl_gradient import DRAFT_KL_WEIGHT
from optiq_runtime.sensitivity import GROUP_SIZES

SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
# Candidate bit widths besides ``bits`` and ``high_bits`` unless a build names others (``()``: none).
EXTRA_WIDTHS = (3, 5, 6)


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
    mtp_weight: float = DRAFT_KL_WEIGHT  # weight of the MTP head's drafts' KL in the sensitivity objective (0: none)

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


def check_options(options: BuildOptions) -> None:
    """Reject unusable flags before any work (exit status 2)."""
    if options.method not in ("optiq", "uniform"):
        raise BadInputError(f"--method must be optiq or uniform, not {options.method!r}")
    if options.bits not in SUPPORTED_BITS or options.high_bits not in SUPPORTED_BITS:
        raise BadInputError(f"--bits and --high-bits must be one of {SUPPORTED_BITS}")
    if options.method == "optiq" and options.high_bits <= options.bits:
        raise BadInputError(f"--high-bits ({options.high_bits}) must exceed --bits ({options.bits})")
    if any(bits not in SUPPORTED_BITS for bits in options.widths or ()):
        raise BadInputError(f"--widths must be drawn from {SUPPORTED_BITS}, not {list(options.widths or ())}")
    if options.group_size not in GROUP_SIZES:
        raise BadInputError(f"--group-size must be 32, 64 or 128, not {options.group_size}")
    if options.fine_group_size is not None and options.fine_group_size not in GROUP_SIZES:
        raise BadInputError(f"--fine-group-size must be 32, 64, 128 or none, not {options.fine_group_size}")
    if (options.fine_group_size or 0) > options.group_size:
        raise BadInputError(
            f"--fine-group-size ({options.fine_group_size}) must not exceed --group-size ({options.group_size})"
        )
    if options.budget < 1.0:
        raise BadInputError(f"--budget {options.budget} is below uniform {options.bits}-bit (1.0); nothing fits in it")
    out = Path(options.out)
    if out.exists() and not options.force:
        raise BadInputError(f"output {str(out)!r} already exists; pass --force to replace it")
