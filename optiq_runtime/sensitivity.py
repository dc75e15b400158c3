"""Per-layer sensitivity: the KL of the model's next-token distribution from the reference's
when one quantizable layer alone is quantized, at the low and at the high bit width (default
group size); other formats (other bits, finer groups) are estimated by weight-error ratios.
(On tiny-agent, probing 4g32 and 8g32 too doubled the probing time and moved the OptiQ build's
held-out KL from 0.692x to 0.684x uniform: not worth it.)

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

from optiq_runtime.allocate import LayerChoice, Width
from optiq_runtime.kl import Reference, rows_per_batch
from optiq_runtime.progress import Progress, ProgressCallback

FORMAT_VERSION = 3  # 3: KL sums and weight errors keyed by format ("4g64"), errors at every group size
# Formats whose KL can be estimated from a measured one by the weight-error ratio.
ESTIMABLE_BITS = (2, 3, 4, 5, 6, 8)
GROUP_SIZES = (32, 64, 128)  # the group sizes MLX quantizes with
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

    def nbytes(self, width: Width) -> int:
        return width.nbytes(*self.shape)

    @property
    def fixed_width(self) -> Width | None:
        return Width(self.fixed["bits"], self.fixed["group_size"]) if self.fixed else None


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


def chunked_gated_delta(q: mx.array, k: mx.array, v: mx.array, log_g: mx.array, beta: mx.array,
                        chunk: int = 32) -> mx.array:
    """The gated delta rule over a whole sequence from a zero state, in chunks of matmuls.

    Equal (to float32 rounding) to mlx-lm's step-by-step ``gated_delta_ops``, which on the CPU
    backend walks every token with elementwise ops over the full state; this does the work
    within a chunk as triangular solves and matmuls. Shapes as mlx-lm's: q, k ``[B, T, Hk, Dk]``,
    v ``[B, T, Hv, Dv]``, log_g and beta ``[B, T, Hv]``; returns ``[B, T, Hv, Dv]``.
    """
    batch, length, k_heads, _ = q.shape
    heads, v_dim = v.shape[-2:]
    if heads // k_heads > 1:
        q, k = mx.repeat(q, heads // k_heads, -2), mx.repeat(k, heads // k_heads, -2)
    pad = (-length) % chunk

    def chunks(x: mx.array) -> mx.array:  # [B, T, H, ...] -> [B, H, N, C, ...], zero-padded
        x = x.astype(mx.float32).swapaxes(1, 2)
        if pad:
            x = mx.pad(x, [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 3))
        return x.reshape(batch, heads, -1, chunk, *x.shape[3:])

    q, k, v, log_g, beta = map(chunks, (q, k, v, log_g, beta))
    cum = mx.cumsum(log_g, axis=-1)
    lower = mx.tril(mx.ones((chunk, chunk), dtype=mx.bool_))
    decay = mx.exp(mx.where(lower, cum[..., :, None] - cum[..., None, :], -mx.inf))
    strict = mx.tril(mx.ones((chunk, chunk)), -1)
    solve = mx.linalg.tri_inv(beta[..., None] * decay * strict * (k @ k.swapaxes(-1, -2)) + mx.eye(chunk),
                              upper=False, stream=mx.cpu)
    values = solve @ (beta[..., None] * v)
    keys = solve @ ((beta * mx.exp(cum))[..., None] * k)
    scores = decay * (q @ k.swapaxes(-1, -2))
    queries = mx.exp(cum)[..., None] * q
    carried = mx.exp(cum[..., -1:] - cum)[..., None] * k
    state = mx.zeros((batch, heads, k.shape[-1], v_dim), dtype=mx.float32)
    outputs = []
    for n in range(q.shape[2]):
        delta = values[:, :, n] - keys[:, :, n] @ state
        outputs.append(queries[:, :, n] @ state + scores[:, :, n] @ delta)
        state = mx.exp(cum[:, :, n, -1])[..., None, None] * state + carried[:, :, n].swapaxes(-1, -2) @ delta
    out = mx.stack(outputs, axis=2).reshape(batch, heads, -1, v_dim)[:, :, :length]
    return out.swapaxes(1, 2)


def linear_attention(module: nn.Module, x: mx.array) -> mx.array:
    """A Qwen3.5 GatedDeltaNet's output over whole sequences (no cache), by ``chunked_gated_delta``."""
    from mlx_lm.models.gated_delta import normalize_qk

    batch, length, _ = x.shape
    qkv = module.in_proj_qkv(x)
    z = module.in_proj_z(x).reshape(batch, length, module.num_v_heads, module.head_v_dim)
    b, a = module.in_proj_b(x), module.in_proj_a(x)
    padding = mx.zeros((batch, module.conv_kernel_size - 1, module.conv_dim), dtype=x.dtype)
    conv = nn.silu(module.conv1d(mx.concatenate([padding, qkv], axis=1)))
    q, k, v = mx.split(conv, [module.key_dim, 2 * module.key_dim], -1)
    q = q.reshape(batch, length, module.num_k_heads, module.head_k_dim)
    k = k.reshape(batch, length, module.num_k_heads, module.head_k_dim)
    v = v.reshape(batch, length, module.num_v_heads, module.head_v_dim)
    q, k = normalize_qk(q, k, inv_scale=module.head_k_dim**-0.5, eps=1e-6)
    log_g = -mx.exp(module.A_log.astype(mx.float32)) * nn.softplus(a + module.dt_bias)
    out = chunked_gated_delta(q, k, v, log_g, mx.sigmoid(b)).astype(q.dtype)
    out = module.norm(out, z)
    return module.out_proj(out.reshape(batch, length, -1))


def _is_gated_delta(layer: nn.Module) -> bool:
    return getattr(layer, "is_linear", False) and all(
        hasattr(layer.get("linear_attn", None), name) for name in ("in_proj_qkv", "in_proj_z", "conv1d", "A_log")
    )


class Stack:
    """The model cut at its decoder blocks: embed, block(i), head; checked against the whole model."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.text = getattr(model, "language_model", model)
        self.inner = self.text.model
        self.exact = True
        # On Metal mlx-lm's own gated-delta kernel is fast; on the CPU its per-token loop is not.
        self.chunked = mx.default_device().type == mx.DeviceType.cpu

    @property
    def blocks(self) -> int:
        return len(self.inner.layers)

    def embed(self, tokens: mx.array) -> mx.array:
        return self.inner.embed_tokens(tokens)

    def block(self, index: int, hidden: mx.array) -> mx.array:
        from mlx_lm.models.base import create_attention_mask

        layer = self.inner.layers[index]
        if self.chunked and _is_gated_delta(layer):
            hidden = hidden + linear_attention(layer.linear_attn, layer.input_layernorm(hidden))
            return hidden + layer.mlp(layer.post_attention_layernorm(hidden))
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

    def __call__(self, tokens: mx.array) -> mx.array:
        return self.run_from(0, self.embed(tokens)) if self.exact else self.model(tokens)

    def activations(self, tokens: mx.array) -> list[mx.array]:
        """Each block's input, then the last block's output."""
        hidden = [self.embed(tokens)]
        for index in range(self.blocks):
            hidden.append(self.block(index, hidden[-1]))
        return hidden

    def verify(self, tokens: mx.array, activations: list[mx.array]) -> bool:
        """Use the cut only if it reproduces the model's own logits on the first row (architectures with
        extra steps fall back to the whole model)."""
        try:
            ours = self.head(activations[-1][:1])
            theirs = self.model(tokens[:1])
            self.exact = ours.shape == theirs.shape and mx.allclose(ours, theirs, rtol=1e-3, atol=1e-3).item()
        except (AttributeError, TypeError, ValueError):
            self.exact = False
        return self.exact


def fast_forward(model: nn.Module, probe: mx.array) -> Stack:
    """``model`` as a tokens -> logits callable that runs chunked gated delta on the CPU when that
    reproduces the model's own logits on ``probe`` (else mlx-lm's own forward)."""
    stack = Stack(model)
    if not stack.verify(probe, stack.activations(probe)) and stack.chunked:
        stack.chunked = False
        stack.verify(probe, stack.activations(probe))
    return stack


def qdq(weight: mx.array, bits: int, group_size: int) -> mx.array:
    """The float32 weight a saved ``bits``-bit layer computes with: quantized from bf16, bf16 scales."""
    packed, scales, biases = mx.quantize(weight.astype(mx.bfloat16), group_size=group_size, bits=bits)
    return mx.dequantize(packed, scales.astype(mx.float32), biases.astype(mx.float32), group_size=group_size, bits=bits)


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
def swapped(model: nn.Module, path: str, original: nn.Module, replacement: nn.Module):
    """Put ``replacement`` at ``path`` (where ``original`` is) for the duration, then restore ``original``."""
    model.update_modules(tree_unflatten([(path, replacement)]))
    try:
        yield
    finally:
        model.update_modules(tree_unflatten([(path, original)]))


@dataclass
class Sensitivity:
    """Probe results so far: per layer, the summed token KL at each probed format, and how far the run got."""

    fingerprint: str
    reference: str
    bits: int
    high_bits: int
    group_size: int
    batches: int
    batches_done: int
    tokens_done: int
    layers: dict[str, dict]
    high_probe: str = "measured"  # or "estimated": low-bit KL scaled by the layer's weight-error ratio

    @property
    def complete(self) -> bool:
        return self.batches_done >= self.batches

    @property
    def low(self) -> Width:
        return Width(self.bits, self.group_size)

    @property
    def high(self) -> Width:
        return Width(self.high_bits, self.group_size)

    def mean_kl(self, path: str, width: Width) -> float:
        """Mean token KL with this layer alone at ``width``: measured where probed, else estimated.

        The estimate scales the low format's KL by the ratio of squared weight errors (KL is
        quadratic in a small perturbation). With the uniform reference the probe measured what
        promoting to the high format removes, which stands in for the low format's KL.
        """
        if self.tokens_done == 0:
            return 0.0
        layer = self.layers[path]
        sums = layer["kl_sum"]
        if self.reference != "uniform" and width.label in sums:
            return max(0.0, sums[width.label] / self.tokens_done)  # float32 can leave a tiny negative
        anchor = sums.get((self.high if self.reference == "uniform" else self.low).label, 0.0)
        mse = layer.get("mse", {})
        low_error = mse.get(self.low.label)
        ratio = mse.get(width.label, 0.0) / low_error if low_error else 0.0
        return max(0.0, anchor * ratio / self.tokens_done)

    def targets(self) -> list[Target]:
        return [Target(p, l["block"], tuple(l["shape"]), l.get("fixed")) for p, l in self.layers.items()]

    def choices(self, widths: tuple[Width, ...] | None = None) -> list[LayerChoice]:
        """What the allocator needs: bytes and mean KL at each candidate format (default: low and high)."""
        widths = widths or (self.low, self.high)
        choices = []
        for target in self.targets():
            if target.fixed:
                fixed = target.fixed_width
                choices.append(LayerChoice(target.path, {fixed: target.nbytes(fixed)}, {fixed: 0.0}, fixed))
                continue
            sizes = {width: target.nbytes(width) for width in widths}
            kl = {width: self.mean_kl(target.path, width) for width in widths}
            choices.append(LayerChoice(target.path, sizes, kl, self.low))
        return choices

    def to_json(self) -> dict:
        data = dict(vars(self), version=FORMAT_VERSION)
        for path, layer in self.layers.items():
            widths = [w for w in map(Width.parse, layer.get("mse", {})) if w.bits in (self.bits, self.high_bits)]
            data["layers"][path]["kl"] = {w.label: self.mean_kl(path, w) for w in sorted(widths) or [self.low, self.high]}
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
          group_size: int, batches: int, high_probe: str = "measured") -> Sensitivity:
    layers = {t.path: {"block": t.block, "shape": list(t.shape), "fixed": t.fixed, "kl_sum": {}} for t in targets}
    return Sensitivity(fingerprint, reference, bits, high_bits, group_size, batches, 0, 0, layers, high_probe)


def weight_errors(weight: mx.array) -> dict[str, float]:
    """Squared weight error at each estimable format (KL grows with it about linearly), keyed by label."""
    exact = weight.astype(mx.float32)
    found = {}
    for group_size in GROUP_SIZES:
        if weight.shape[-1] % group_size:
            continue
        errors = {Width(bits, group_size).label: mx.square(qdq(weight, bits, group_size) - exact).sum()
                  for bits in ESTIMABLE_BITS}
        mx.eval(list(errors.values()))  # one group size at a time bounds the memory of a large embedding
        found.update({label: error.item() for label, error in errors.items()})
    return found


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
        if state.reference == "uniform":
            self.widths = (state.high,)
        elif state.high_probe == "estimated":
            self.widths = (state.low,)
        else:
            self.widths = (state.low, state.high)
        modules = dict(tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module))
        sources = dict(tree_flatten(source.leaf_modules(), is_leaf=nn.Module.is_module))
        self.modules = {t.path: modules[t.path] for t in self.targets}
        self.sources = {t.path: sources[t.path] for t in self.targets}
        for t in self.targets:
            if "mse" not in state.layers[t.path]:
                state.layers[t.path]["mse"] = weight_errors(self.sources[t.path].weight)
        params = sum(t.shape[0] * t.shape[1] for t in self.targets)
        self._checked = False
        self._cache: dict | None = {} if params * 4 * len(self.widths) < ACTIVATION_BUDGET_BYTES else None

    @property
    def probes_per_batch(self) -> int:
        return len(self.targets) * len(self.widths)

    def _weight(self, path: str, width: Width) -> mx.array:
        key = (path, width)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        weight = qdq(self.sources[path].weight, width.bits, width.group_size)
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

    def _activations(self, tokens: mx.array) -> list[mx.array]:
        """Cached block inputs; the first batch also checks the cut (chunked, then mlx-lm's own blocks)."""
        acts = self.stack.activations(tokens)
        mx.eval(acts)
        if self._checked:
            return acts
        self._checked = True
        if not self.stack.verify(tokens, acts) and self.stack.chunked:
            self.stack.chunked = False
            acts = self.stack.activations(tokens)
            mx.eval(acts)
            self.stack.verify(tokens, acts)
        return acts

    def run_batch(self, tokens: mx.array, progress: Progress) -> None:
        acts = self._activations(tokens)
        reference = Reference.from_logits(self.stack.head(acts[-1]) if self.stack.exact else self.model(tokens))
        batch_sums = {}
        for target in self.targets:
            for width in self.widths:
                original = self.modules[target.path]
                with swapped(self.model, target.path, original, dense_with(original, self._weight(target.path, width))):
                    batch_sums[target.path, width.label] = reference.kl(self._logits(target, tokens, acts)).sum().item()
                progress.advance()
        for (path, label), kl in batch_sums.items():  # only whole batches count, so a resumed run adds up right
            sums = self.state.layers[path]["kl_sum"]
            sums[label] = sums.get(label, 0.0) + kl
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
