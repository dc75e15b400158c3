"""The bytes a depth-1 MTP round reads, and the most a reduced draft vocabulary can save at the memory-read limit.

A depth-1 round is one verification pass (every backbone layer, the final norm and the output
layer over the whole vocabulary, for two tokens) and one draft (the MTP head's ``fc`` and
decoder layer, then the output layer over the whole vocabulary or over the K draft rows).
When every pass runs at the read limit a pass costs its weights' bytes over the read
bandwidth, whatever its few tokens, so the largest cut a K-row draft projection can give is
``(full head - K rows) / round``. Counted from the arrays the model holds as loaded (packed
weights, scales, biases, float weights), not from the files: the loader upcasts bf16 to
float32. Embedding lookups (a few rows a pass) are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import mlx.nn as nn
from mlx.utils import tree_flatten


@dataclass(frozen=True)
class RoundBytes:
    """Bytes read by each part of a depth-1 round; ``output_row`` is one vocabulary row of the output layer."""

    backbone: int
    output: int
    output_row: int
    vocab_size: int
    mtp_layer: int
    fc: int

    @property
    def verify(self) -> int:
        """A verification pass (also a plain step): the backbone and the output layer."""
        return self.backbone + self.output

    def draft_output(self, k: int | None = None) -> int:
        """The draft's output projection: the whole vocabulary (``k`` None) or ``k`` rows."""
        return self.output if k is None else k * self.output_row

    def draft(self, k: int | None = None) -> int:
        return self.mtp_layer + self.fc + self.draft_output(k)

    def round(self, k: int | None = None) -> int:
        return self.verify + self.draft(k)

    def bound_cut(self, k: int) -> float:
        """The largest share of a round a ``k``-row draft vocabulary saves when every pass runs at the read limit."""
        return 1 - self.round(k) / self.round()

    def report(self, k: int) -> dict:
        """Every part, in bytes, and the bound (the JSON a benchmark prints)."""
        return {
            **asdict(self),
            "verify": self.verify,
            "draft_full": self.draft(),
            "draft_k": self.draft(k),
            "draft_output_k": self.draft_output(k),
            "round_full": self.round(),
            "round_k": self.round(k),
            "round_cost_full": round(self.round() / self.verify, 4),  # in plain steps, at the read limit
            "round_cost_k": round(self.round(k) / self.verify, 4),
            "bound_cut": round(self.bound_cut(k), 4),
        }


def module_bytes(module: nn.Module) -> int:
    """The bytes of every array ``module`` holds (parameters and frozen arrays alike)."""
    return sum(array.nbytes for _, array in tree_flatten(module.parameters()))


def round_bytes(model: nn.Module, head: nn.Module) -> RoundBytes:
    """``model`` (mlx-lm Qwen3.5, as loaded: no CPU plan applied) and its ``MTPHead``, counted by part."""
    text = getattr(model, "language_model", model)
    output = text.model.embed_tokens if text.args.tie_word_embeddings else text.lm_head
    arrays = [a for _, a in tree_flatten(output.parameters())]
    rows = arrays[0].shape[0]
    body = module_bytes(text.model) - module_bytes(text.model.embed_tokens)
    fc = module_bytes(head.fc)
    return RoundBytes(
        backbone=body,
        output=module_bytes(output),
        output_row=sum(a.nbytes // rows for a in arrays),
        vocab_size=rows,
        mtp_layer=module_bytes(head) - fc,
        fc=fc,
    )
