"""KL divergence of a model's next-token distribution from a reference's, per token and summarised."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import mlx.core as mx
import numpy as np

from optiq_runtime.forward import fast_forward
from optiq_runtime.progress import Progress, ProgressCallback

# Rows per forward pass are chosen so that one batch of full-vocabulary logits stays near this size.
LOGITS_BUDGET_BYTES = 256 * 1024 * 1024


def log_softmax(logits: mx.array) -> mx.array:
    """Log-probabilities in float32."""
    logits = logits.astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def token_kl(reference_logprobs: mx.array, logits: mx.array) -> mx.array:
    """KL(reference || model) at every position; ``reference_logprobs`` from ``log_softmax``."""
    return (mx.exp(reference_logprobs) * (reference_logprobs - log_softmax(logits))).sum(axis=-1)


@dataclass(frozen=True)
class Reference:
    """A reference distribution prepared once for many comparisons: logits, probabilities, log-normalizer."""

    logits: mx.array
    probs: mx.array
    lse: mx.array

    @classmethod
    def from_logits(cls, logits: mx.array) -> Reference:
        logits = logits.astype(mx.float32)
        lse = mx.logsumexp(logits, axis=-1, keepdims=True)
        reference = cls(logits, mx.exp(logits - lse), lse)
        mx.eval(reference.logits, reference.probs, reference.lse)
        return reference

    def kl(self, logits: mx.array) -> mx.array:
        """KL(reference || softmax(logits)) per position.

        Written in the logit difference d = logits - reference logits, as
        ``logsumexp(logits - lse_ref) - sum(p * d)``: both terms are small when the model is
        close, so float32 keeps KL values of 1e-6 meaningful, and it costs one exp per logit
        (exp is the slow part on the CPU).
        """
        logits = logits.astype(mx.float32)
        spread = (self.probs * (logits - self.logits)).sum(axis=-1)
        return mx.logsumexp(logits - self.lse, axis=-1) - spread


def rows_per_batch(seq_len: int, vocab_size: int, max_rows: int = 64) -> int:
    """How many rows of ``seq_len`` keep one batch of logits within LOGITS_BUDGET_BYTES."""
    return max(1, min(max_rows, LOGITS_BUDGET_BYTES // (4 * seq_len * vocab_size)))


@dataclass(frozen=True)
class KLReport:
    """KL statistics over every scored token."""

    mean: float
    median: float
    p95: float
    tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(values: np.ndarray) -> KLReport:
    """Mean, median and 95th percentile of per-token KL values."""
    return KLReport(float(values.mean()), float(np.median(values)), float(np.percentile(values, 95)), int(values.size))


def per_token_kl(model, reference, rows: mx.array, progress: ProgressCallback | None = None) -> np.ndarray:
    """Per-token KL of ``model`` from ``reference`` (mlx-lm models) over packed rows."""
    model, reference = fast_forward(model, rows[:1]), fast_forward(reference, rows[:1])
    batch = rows_per_batch(rows.shape[1], _vocab(reference, rows))
    steps = Progress("kl", rows.shape[0], progress)
    values = []
    for start in range(0, rows.shape[0], batch):
        chunk = rows[start : start + batch]
        kl = Reference.from_logits(reference(chunk)).kl(model(chunk))
        values.append(np.array(kl.astype(mx.float32)).reshape(-1))
        steps.advance(chunk.shape[0])
    return np.concatenate(values)


def per_token_kl_many(
    models: dict, reference, rows: mx.array, progress: ProgressCallback | None = None
) -> dict[str, np.ndarray]:
    """Per-token KL of several models from one reference, which runs once per batch."""
    models = {name: fast_forward(model, rows[:1]) for name, model in models.items()}
    reference = fast_forward(reference, rows[:1])
    batch = rows_per_batch(rows.shape[1], _vocab(reference, rows))
    steps = Progress("kl", rows.shape[0], progress)
    values: dict[str, list] = {name: [] for name in models}
    for start in range(0, rows.shape[0], batch):
        chunk = rows[start : start + batch]
        prepared = Reference.from_logits(reference(chunk))
        for name, model in models.items():
            values[name].append(np.array(prepared.kl(model(chunk))).reshape(-1))
        steps.advance(chunk.shape[0])
    return {name: np.concatenate(parts) for name, parts in values.items()}


def _vocab(model, rows: mx.array) -> int:
    return int(model(rows[:1, :1]).shape[-1])


def measure_kl(
    model_path: str | os.PathLike,
    reference_path: str | os.PathLike,
    data: str | os.PathLike | None = None,
    seq_len: int = 256,
    max_tokens: int | None = None,
    progress: ProgressCallback | None = None,
) -> KLReport:
    """KL of a built model from its reference on held-out text (the shipped held-out set by default)."""
    from optiq_runtime.calibration import heldout_tokens
    from optiq_runtime.load import load_model

    model = load_model(model_path)
    reference = load_model(reference_path)
    tokens = heldout_tokens(model.tokenizer, data, seq_len=seq_len, max_tokens=max_tokens)
    return summarize(per_token_kl(model.model, reference.model, tokens.rows, progress))
