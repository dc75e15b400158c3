"""Per-module sensitivity state and the model cut at its decoder blocks.

``Sensitivity`` holds, per quantizable module, the summed token KL attributed to it at the low
format (measured by ``kl_gradient``: one backward pass per calibration batch scores every module)
and its squared weight error at each format, from which KL at the other formats is estimated
(KL is quadratic in a small perturbation). It is saved after every batch to ``sensitivity.json``
so an interrupted run resumes and a new budget needs no measuring. ``Stack`` runs the model block
by block (chunked gated delta on the CPU) and is differentiable.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from optiq_runtime.allocate import LayerChoice, Width

FORMAT_VERSION = 4  # 4: KL from the gradient of KL at the all-low model (kl_gradient), not per-layer probes
# Formats whose KL can be estimated from a measured one by the weight-error ratio.
ESTIMABLE_BITS = (2, 3, 4, 5, 6, 8)
GROUP_SIZES = (32, 64, 128)  # the group sizes MLX quantizes with
# Weight errors (used only as ratios between formats) are measured on at most this many evenly spaced rows.
ERROR_ROWS = 512
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


@mx.custom_function
def lower_inverse(matrix: mx.array) -> mx.array:
    """The inverse of a batch of lower-triangular matrices, differentiable (MLX's ``tri_inv`` has no vjp)."""
    return mx.linalg.tri_inv(matrix, upper=False, stream=mx.cpu)


@lower_inverse.vjp
def _lower_inverse_vjp(primals, cotangent, output):
    inverse = output.swapaxes(-1, -2)
    return -(inverse @ cotangent @ inverse)


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
    solve = lower_inverse(beta[..., None] * decay * strict * (k @ k.swapaxes(-1, -2)) + mx.eye(chunk))
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

    def backbone(self, hidden: mx.array, start: int = 0) -> mx.array:
        """The last block's output from block ``start``'s input."""
        for index in range(start, self.blocks):
            hidden = self.block(index, hidden)
        return hidden

    def run_from(self, start: int, hidden: mx.array) -> mx.array:
        return self.head(self.backbone(hidden, start))

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


@dataclass
class Sensitivity:
    """Measured so far: per module the summed token KL at the low format and weight errors; how far the run got."""

    fingerprint: str
    reference: str
    bits: int
    high_bits: int
    group_size: int
    batches: int
    batches_done: int
    tokens_done: int
    layers: dict[str, dict]
    estimator: str = "kl-gradient"  # how kl_sum was measured (kl_gradient's docstring)
    batch_tokens: int = 0  # calibration tokens per batch (chosen from the memory budget)
    all_low_kl_sum: float = 0.0  # summed token KL of the model with every target at the low format
    mtp_weight: float = 0.0  # weight of the MTP head's drafts' KL in the objective (kl_gradient's docstring)
    all_low_draft_kl_sum: float = 0.0  # ... and their weighted summed KL at the all-low model

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
        """Mean token KL with this module alone at ``width``: measured at the low format, else estimated
        by the ratio of squared weight errors (KL is quadratic in a small perturbation)."""
        if self.tokens_done == 0:
            return 0.0
        layer = self.layers[path]
        anchor = layer["kl_sum"].get(self.low.label, 0.0)
        if width == self.low:
            return max(0.0, anchor / self.tokens_done)  # an interaction can outweigh a module's own error
        mse = layer.get("mse", {})
        low_error = mse.get(self.low.label)
        ratio = mse.get(width.label, 0.0) / low_error if low_error else 0.0
        return max(0.0, anchor * ratio / self.tokens_done)

    def missing_errors(self, widths: tuple[Width, ...]) -> list[Width]:
        """Formats some non-fixed module has no weight error for."""
        return sorted({w for w in widths for layer in self.layers.values()
                       if not layer.get("fixed") and w.label not in layer.get("mse", {})})

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
            widths = [Width.parse(label) for label in layer.get("mse", {})]
            data["layers"][path]["kl"] = {w.label: self.mean_kl(path, w) for w in sorted(widths) or [self.low]}
        return data

    def save(self, file: Path) -> None:
        """Write atomically: a crash mid-write leaves the previous file."""
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(partial, file)

    @classmethod
    def load(cls, file: Path) -> "Sensitivity | None":
        """The saved state, or None when there is none or it is from another format."""
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


def fresh(targets: list[Target], fingerprint: str, bits: int, high_bits: int, group_size: int,
          batches: int, batch_tokens: int) -> Sensitivity:
    layers = {t.path: {"block": t.block, "shape": list(t.shape), "fixed": t.fixed, "kl_sum": {}} for t in targets}
    return Sensitivity(fingerprint, "bf16", bits, high_bits, group_size, batches, 0, 0, layers,
                       batch_tokens=batch_tokens)


def weight_errors(weight: mx.array, widths: tuple[Width, ...]) -> dict[str, float]:
    """Squared weight error at each format (KL grows with it about linearly), keyed by label, over
    at most ``ERROR_ROWS`` evenly spaced rows."""
    exact = weight[:: -(-weight.shape[0] // ERROR_ROWS)].astype(mx.float32)
    found = {}
    for width in widths:
        if weight.shape[-1] % width.group_size == 0:
            found[width.label] = mx.square(qdq(exact, width.bits, width.group_size) - exact).sum().item()
    return found
