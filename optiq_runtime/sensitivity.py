"""Per-layer sensitivity: the KL of the model's next-token distribution from the reference's
when one quantizable layer alone is quantized, at the low and at the high bit width.

Every calibration batch runs the reference once, caching each decoder block's input; a probe
then reruns only the blocks from its layer's block onwards. Probes are saved after every
batch to ``sensitivity.json`` so an interrupted run resumes and a new budget needs no probing.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from optiq_runtime.allocate import LayerCost, quantized_bytes
from optiq_runtime.kl import log_softmax, rows_per_batch, token_kl
from optiq_runtime.progress import Progress, ProgressCallback

FORMAT_VERSION = 1
ACTIVATION_BUDGET_BYTES = 512 * 1024 * 1024
_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class Target:
    """A quantizable module: its path in the model, the block a probe restarts from, its weight shape.

    ``block`` is -1 for modules before the first block (the embedding: rerun everything) and
    the number of blocks for modules after the last one (the head: rerun only the head).
    """

    path: str
    block: int
    shape: tuple[int, int]
    fixed: dict | None = None  # quantization the model itself imposes (e.g. MoE gates): never probed

    def nbytes(self, bits: int, group_size: int) -> int:
        return quantized_bytes(self.shape[0], self.shape[1], bits, group_size)


def find_targets(model: nn.Module, group_size: int) -> list[Target]:
    """Every module a uniform build quantizes (mlx-lm's rule: ``to_quantized`` and whole groups)."""
    predicate = getattr(model, "quant_predicate", None)
    blocks = len(model.layers)
    targets = []
    for path, module in tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        if not hasattr(module, "to_quantized") or module.weight.shape[-1] % group_size:
            continue
        verdict = predicate(path, module) if predicate else True
        if verdict is False:
            continue
        targets.append(Target(path, _block_of(path, blocks), tuple(module.weight.shape), verdict if isinstance(verdict, dict) else None))
    return targets


def _block_of(path: str, blocks: int) -> int:
    if match := _BLOCK.search(path):
        return int(match.group(1))
    return blocks if path.endswith("lm_head") else -1


class Stack:
    """The model cut at its decoder blocks: embed, block(i), head; checked against the whole model."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.text = getattr(model, "language_model", model)
        self.inner = self.text.model
        self.exact = True

    @property
    def blocks(self) -> int:
        return len(self.inner.layers)

    def embed(self, tokens: mx.array) -> mx.array:
        return self.inner.embed_tokens(tokens)

    def block(self, index: int, hidden: mx.array) -> mx.array:
        from mlx_lm.models.base import create_attention_mask

        layer = self.inner.layers[index]
        mask = None if getattr(layer, "is_linear", False) else create_attention_mask(hidden, None)
        return layer(hidden, mask, None)

    def head(self, hidden: mx.array) -> mx.array:
        hidden = self.inner.norm(hidden)
        if "lm_head" in self.text:
            return self.text.lm_head(hidden)
        return self.inner.embed_tokens.as_linear(hidden)

    def run_from(self, start: int, hidden: mx.array) -> mx.array:
        for index in range(start, self.blocks):
            hidden = self.block(index, hidden)
        return self.head(hidden)

    def activations(self, tokens: mx.array) -> list[mx.array]:
        """Each block's input, then the last block's output."""
        hidden = [self.embed(tokens)]
        for index in range(self.blocks):
            hidden.append(self.block(index, hidden[-1]))
        return hidden

    def verify(self, tokens: mx.array, activations: list[mx.array]) -> None:
        """Use the cut only if it reproduces the model's own logits (architectures with extra steps fall back)."""
        try:
            ours = self.head(activations[-1])
            theirs = self.model(tokens)
            self.exact = ours.shape == theirs.shape and mx.allclose(ours, theirs, rtol=1e-4, atol=1e-4).item()
        except (AttributeError, TypeError, ValueError):
            self.exact = False


def qdq(weight: mx.array, bits: int, group_size: int) -> mx.array:
    """The float32 weight a saved ``bits``-bit layer computes with: quantized from bf16, bf16 scales."""
    packed, scales, biases = mx.quantize(weight.astype(mx.bfloat16), group_size=group_size, bits=bits)
    return mx.dequantize(packed, scales.astype(mx.float32), biases.astype(mx.float32), group_size=group_size, bits=bits)


def _module(model: nn.Module, path: str) -> nn.Module:
    return dict(tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module))[path]


def dense_with(module: nn.Module, weight: mx.array) -> nn.Module:
    """A dense float32 module like ``module`` (quantized or not) computing with ``weight``."""
    if isinstance(module, (nn.Embedding, nn.QuantizedEmbedding)):
        dense = nn.Embedding(*weight.shape)
    else:
        dense = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in module)
        if "bias" in module:
            dense.bias = module.bias.astype(mx.float32)
    dense.weight = weight
    return dense


@contextmanager
def swapped(model: nn.Module, path: str, replacement: nn.Module):
    """Put ``replacement`` at ``path`` for the duration, then restore the original module."""
    original = _module(model, path)
    model.update_modules(tree_unflatten([(path, replacement)]))
    try:
        yield
    finally:
        model.update_modules(tree_unflatten([(path, original)]))


@dataclass
class Sensitivity:
    """Probe results so far: per layer, the summed token KL at each width, and how far the run got."""

    fingerprint: str
    reference: str
    bits: int
    high_bits: int
    group_size: int
    batches: int
    batches_done: int
    tokens_done: int
    layers: dict[str, dict]

    @property
    def complete(self) -> bool:
        return self.batches_done >= self.batches

    def mean_kl(self, path: str, bits: int) -> float:
        if self.tokens_done == 0:
            return 0.0
        return self.layers[path]["kl_sum"].get(str(bits), 0.0) / self.tokens_done

    def targets(self) -> list[Target]:
        return [Target(p, l["block"], tuple(l["shape"]), l.get("fixed")) for p, l in self.layers.items()]

    def costs(self) -> list[LayerCost]:
        """What the allocator needs: bytes and mean KL at both widths for every target."""
        costs = []
        for path, layer in self.layers.items():
            target = Target(path, layer["block"], tuple(layer["shape"]), layer.get("fixed"))
            if target.fixed:
                fixed = target.nbytes(target.fixed["bits"], target.fixed["group_size"])
                costs.append(LayerCost(path, fixed, fixed, 0.0, 0.0))
                continue
            low, high = self.mean_kl(path, self.bits), self.mean_kl(path, self.high_bits)
            if self.reference == "uniform":  # probes measured what promoting removes; at low bits it stays
                low, high = high, 0.0
            costs.append(LayerCost(path, target.nbytes(self.bits, self.group_size),
                                   target.nbytes(self.high_bits, self.group_size), low, high))
        return costs

    def to_json(self) -> dict:
        data = dict(vars(self), version=FORMAT_VERSION)
        for path in self.layers:
            data["layers"][path]["kl"] = {b: self.mean_kl(path, int(b)) for b in self.layers[path]["kl_sum"]}
        return data

    def save(self, file: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file."""
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(partial, file)

    @classmethod
    def load(cls, file: Path) -> "Sensitivity | None":
        """The saved probes, or None when there are none or they are from another format."""
        try:
            data = json.loads(Path(file).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.pop("version", None) != FORMAT_VERSION:
            return None
        try:
            return cls(**data)
        except TypeError:
            return None


def fresh(targets: list[Target], fingerprint: str, reference: str, bits: int, high_bits: int,
          group_size: int, batches: int) -> Sensitivity:
    layers = {t.path: {"block": t.block, "shape": list(t.shape), "fixed": t.fixed, "kl_sum": {}} for t in targets}
    return Sensitivity(fingerprint, reference, bits, high_bits, group_size, batches, 0, 0, layers)


def batch_rows(rows: mx.array, vocab_size: int, hidden_size: int, blocks: int) -> int:
    """Rows per batch: bounded by the reference logits and by the cached block inputs."""
    seq_len = rows.shape[1]
    by_acts = ACTIVATION_BUDGET_BYTES // max(1, 4 * seq_len * hidden_size * (blocks + 1))
    return max(1, min(rows_per_batch(seq_len, vocab_size, max_rows=rows.shape[0]), by_acts))


class Prober:
    """Runs the probes of one model over calibration rows, resuming from and saving to a state file."""

    def __init__(self, model: nn.Module, source: nn.Module, targets: list[Target], state: Sensitivity):
        self.model = model
        self.stack = Stack(model)
        self.state = state
        self.targets = [t for t in targets if not t.fixed]
        self.widths = (state.high_bits,) if state.reference == "uniform" else (state.bits, state.high_bits)
        modules = dict(tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module))
        sources = dict(tree_flatten(source.leaf_modules(), is_leaf=nn.Module.is_module))
        self.modules = {t.path: modules[t.path] for t in self.targets}
        self.sources = {t.path: sources[t.path] for t in self.targets}
        params = sum(t.shape[0] * t.shape[1] for t in self.targets)
        self._cache: dict | None = {} if params * 4 * len(self.widths) < ACTIVATION_BUDGET_BYTES else None

    @property
    def probes_per_batch(self) -> int:
        return len(self.targets) * len(self.widths)

    def _weight(self, path: str, bits: int) -> mx.array:
        key = (path, bits)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        weight = qdq(self.sources[path].weight, bits, self.state.group_size)
        mx.eval(weight)
        if self._cache is not None:
            self._cache[key] = weight
        return weight

    def _logits(self, target: Target, tokens: mx.array, acts: list[mx.array]) -> mx.array:
        if not self.stack.exact:
            return self.model(tokens)
        if target.block < 0:
            return self.stack.run_from(0, self.stack.embed(tokens))
        return self.stack.run_from(target.block, acts[target.block])

    def run_batch(self, tokens: mx.array, progress: Progress) -> None:
        acts = self.stack.activations(tokens)
        mx.eval(acts)
        if self.state.batches_done == 0 or not self.stack.exact:
            self.stack.verify(tokens, acts)
        reference = log_softmax(self.stack.head(acts[-1]) if self.stack.exact else self.model(tokens))
        mx.eval(reference)
        for target in self.targets:
            for bits in self.widths:
                dense = dense_with(self.modules[target.path], self._weight(target.path, bits))
                with swapped(self.model, target.path, dense):
                    kl = token_kl(reference, self._logits(target, tokens, acts)).sum().item()
                sums = self.state.layers[target.path]["kl_sum"]
                sums[str(bits)] = sums.get(str(bits), 0.0) + kl
                progress.advance()
        self.state.batches_done += 1
        self.state.tokens_done += tokens.size


def probe(model: nn.Module, source: nn.Module, rows: mx.array, state: Sensitivity, state_file: Path | None,
          progress: ProgressCallback | None = None) -> Sensitivity:
    """Probe every target over ``rows`` (continuing ``state``), saving after each batch."""
    prober = Prober(model, source, find_targets(source, state.group_size), state)
    per_batch = -(-rows.shape[0] // state.batches)
    bar = Progress("sensitivity", state.batches * prober.probes_per_batch, progress,
                   done=state.batches_done * prober.probes_per_batch)
    for index in range(state.batches_done, state.batches):
        prober.run_batch(rows[index * per_batch : (index + 1) * per_batch], bar)
        if state_file is not None:
            state.save(state_file)
    return state
