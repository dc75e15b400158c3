"""Everything that touches weights: checkpoints, calibration, quantization, loading, MTP, generation."""

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.errors import BadInputError, OptiqError

__all__ = ["BadInputError", "OptiqError", "embedded_base_path"]
