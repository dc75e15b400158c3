"""The model's forward pass cut at its decoder blocks, for measuring (KL, sensitivity).

``Stack`` runs the model block by block (chunked gated delta on the CPU, where mlx-lm's own
per-token loop is slow) and is differentiable; ``fast_forward`` uses it when it reproduces the
model's own logits.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


@mx.custom_function
def lower_inverse(matrix: mx.array) -> mx.array:
    """The inverse of a batch of lower-triangular matrices, differentiable (MLX's ``tri_inv`` has no vjp)."""
    return mx.linalg.tri_inv(matrix, upper=False, stream=mx.cpu)


@lower_inverse.vjp
def _lower_inverse_vjp(primals, cotangent, output):
    inverse = output.swapaxes(-1, -2)
    return -(inverse @ cotangent @ inverse)


def chunked_gated_delta(
    q: mx.array, k: mx.array, v: mx.array, log_g: mx.array, beta: mx.array, chunk: int = 32
) -> mx.array:
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
