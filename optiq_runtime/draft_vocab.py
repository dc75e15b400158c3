"""A reduced draft vocabulary: the MTP head drafts over the K most frequent tokens only (frequency-ranked drafting).

With Qwen3.5's 248,320-token vocabulary the head's output projection (the backbone's tied
embedding) is a large share of an MTP round. Drafts rarely need a rare token, so the head
projects onto the K tokens most frequent in the calibration mix (FR-Spec, Zhao et al. 2025);
a draft outside them is simply never proposed. Verification stays over the full vocabulary,
so greedy outputs are unchanged and sampled ones keep the main model's distribution (the
draft distribution is zero outside the K tokens, which rejection sampling allows).

The build records K and the token list in ``optiq/draft_vocab.json``; the engine loads it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from optiq_runtime.cpuplan import short_pass_form
from optiq_runtime.errors import BadInputError
from optiq_runtime.qmatmul import kernel_rows

DRAFT_VOCAB_FILE = "optiq/draft_vocab.json"
MIN_VOCAB = 65536  # smaller vocabularies draft over all their tokens
DEFAULT_K = 32768


def wanted(vocab_size: int) -> bool:
    """Whether a vocabulary is big enough for a reduced draft vocabulary to pay."""
    return vocab_size >= MIN_VOCAB


def frequent_tokens(tokenizer, samples, k: int, vocab_size: int) -> list[int]:
    """The ``k`` most frequent token ids of ``samples`` rendered as calibration renders them, most frequent first.

    Ties and tokens never seen are ranked by id: byte-level BPE numbers its merges in the order
    it learned them, most frequent first.
    """
    from optiq_runtime.calibration import render

    counts = Counter(t for sample in samples for t in render(sample, tokenizer) if t < vocab_size)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[:k]
    seen = set(ranked)
    filler = (t for t in range(vocab_size) if t not in seen)
    while len(ranked) < min(k, vocab_size):
        ranked.append(next(filler))
    return ranked


def write_draft_vocab(folder: Path, tokens: list[int], source: str) -> dict:
    """Write ``optiq/draft_vocab.json``; returns what config.json's ``mtp`` entry records."""
    file = Path(folder) / DRAFT_VOCAB_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps({"k": len(tokens), "source": source, "tokens": tokens}))
    return {"file": DRAFT_VOCAB_FILE, "k": len(tokens)}


def read_draft_vocab(folder: Path) -> list[int] | None:
    """The folder's draft token list, or None when it has none; BadInputError when malformed."""
    file = Path(folder) / DRAFT_VOCAB_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
        tokens = [int(t) for t in data["tokens"]]
    except (ValueError, KeyError, TypeError) as error:
        raise BadInputError(
            f"{file} is not a draft vocabulary (expected {{'k': K, 'tokens': [...]}}): {error}"
        ) from error
    if len(tokens) != data.get("k", len(tokens)) or len(set(tokens)) != len(tokens):
        raise BadInputError(f"{file}: its token list does not hold its k={data.get('k')} distinct tokens")
    return tokens


class DraftProjection:
    """The backbone's output projection restricted to ``tokens``: logits over the full vocabulary, -inf elsewhere.

    ``output`` is the output layer as the model runs it: when the host kernel serves its short
    passes (``optiq_runtime.qmatmul``), the reduced projection goes through the kernel too;
    otherwise through the form short passes use (float32 copy or MLX's quantized matmul).
    """

    def __init__(self, output: nn.Module, tokens: list[int], vocab_size: int):
        if not tokens or max(tokens) >= vocab_size or min(tokens) < 0:
            raise BadInputError(f"draft vocabulary tokens must lie in [0, {vocab_size}); got {len(tokens)} tokens")
        self.ids = mx.array(tokens, dtype=mx.int32)
        self.vocab_size = vocab_size
        self.host = kernel_rows(output, self.ids)  # (a Module is a dict: test for None, not truth)
        output = short_pass_form(output)
        if self.host is None:
            self.host = kernel_rows(output, self.ids)
        self.quantized = self.host is None and hasattr(output, "scales")
        if self.host is not None:
            return
        self.weight = output.weight[self.ids]
        if self.quantized:
            self.scales = output.scales[self.ids]
            self.biases = output.biases[self.ids] if getattr(output, "biases", None) is not None else None
            self.group_size, self.bits = output.group_size, output.bits
            self.mode = getattr(output, "mode", "affine")
        mx.eval(
            self.ids,
            self.weight,
            *([self.scales] + ([self.biases] if self.biases is not None else []) if self.quantized else []),
        )

    @property
    def k(self) -> int:
        return self.ids.shape[0]

    def reduced(self, normed: mx.array) -> mx.array:
        """Logits over the draft tokens only (``[..., K]``)."""
        if self.host is not None:
            return self.host(normed)
        if self.quantized:
            return mx.quantized_matmul(
                normed,
                self.weight,
                self.scales,
                self.biases,
                transpose=True,
                group_size=self.group_size,
                bits=self.bits,
                mode=self.mode,
            )
        return normed @ self.weight.T

    def __call__(self, normed: mx.array) -> mx.array:
        small = self.reduced(normed)
        full = mx.full((*small.shape[:-1], self.vocab_size), -mx.inf, dtype=small.dtype)
        index = mx.broadcast_to(self.ids, small.shape)
        return mx.put_along_axis(full, index, small, axis=-1)


def build_draft_vocab(folder: Path, checkpoint, calibration: Path | None, k: int = DEFAULT_K) -> dict | None:
    """Write a built folder's draft vocabulary when its vocabulary is big enough; what config.json records, or None."""
    from optiq_runtime.calibration import CALIBRATION_FILE, read_samples
    from optiq_runtime.load import load_tokenizer

    text = checkpoint.config.get("text_config", checkpoint.config)
    vocab_size = int(text.get("vocab_size", 0))
    if not wanted(vocab_size):
        return None
    source = Path(calibration or CALIBRATION_FILE)
    tokenizer = load_tokenizer(checkpoint.path, checkpoint.config)
    return write_draft_vocab(folder, frequent_tokens(tokenizer, read_samples(source), k, vocab_size), source.name)
