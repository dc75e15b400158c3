"""Gated DeltaNet prefill as matrix products: the chunked form of the gated delta rule.

Off Metal, mlx-lm runs the recurrence one token at a time: per token and layer, a few
elementwise passes over every head's ``Dv x Dk`` state, which on the CPU cost more than
all the layer's matmuls. Within a chunk of ``C`` tokens the same recurrence is a few
batched matmuls and one unit lower-triangular inverse (the WY form of Yang et al., "Gated
Delta Networks", 2024), which BLAS runs near its GEMM speed. Per head, with state ``S``
(``Dv x Dk``), decay ``g_t``, ``gamma_t = g_1 ... g_t`` within the chunk and ``S0`` its
starting state:

    S_t = g_t S_{t-1} + u_t k_t^T,   u_t = beta_t (v_t - g_t S_{t-1} k_t)
    (I + strict_lower(diag(beta) (K K^T * G))) U = diag(beta) (V - diag(gamma) K S0^T),  G_ti = gamma_t / gamma_i
    Y = diag(gamma) Q S0^T + lower(Q K^T * G) U
    S_C = gamma_C S0 + (U * gamma_C / gamma)^T K

The same values as the token loop up to float rounding.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.gated_delta import gated_delta_update, normalize_qk

CHUNK = 64


def log_decay(A_log: mx.array, a: mx.array, dt_bias: mx.array) -> mx.array:
    """The log of mlx-lm's ``compute_g`` decay, computed without the exp (no underflow to log 0)."""
    return -mx.exp(A_log.astype(mx.float32)) * nn.softplus(a + dt_bias)


def chunked_gated_delta(q, k, v, log_g, beta, state, chunk: int = CHUNK) -> tuple[mx.array, mx.array]:
    """The gated delta rule over ``[B, T, H, D]`` inputs from ``state`` ``[B, Hv, Dv, Dk]``: ``(y, state)``.

    ``log_g`` and ``beta`` are ``[B, T, Hv]``; q and k may have fewer heads (repeated, as mlx-lm does).
    """
    if (repeat := v.shape[-2] // q.shape[-2]) > 1:
        q, k = mx.repeat(q, repeat, -2), mx.repeat(k, repeat, -2)
    q, k, v = (x.astype(mx.float32).transpose(0, 2, 1, 3) for x in (q, k, v))
    log_g, beta = (x.astype(mx.float32).transpose(0, 2, 1) for x in (log_g, beta))
    outputs = []
    for start in range(0, q.shape[2], chunk):
        part = slice(start, start + chunk)
        y, state = _chunk(q[:, :, part], k[:, :, part], v[:, :, part], log_g[:, :, part], beta[:, :, part], state)
        outputs.append(y)
    return mx.concatenate(outputs, axis=2).transpose(0, 2, 1, 3), state


def _chunk(q, k, v, log_g, beta, state):
    length = q.shape[2]
    cum = mx.cumsum(log_g, axis=-1)
    rows, cols = mx.arange(length)[:, None], mx.arange(length)[None]
    diff = cum[..., :, None] - cum[..., None, :]
    decay_incl = mx.exp(mx.where(cols <= rows, diff, -mx.inf))
    decay_strict = mx.where(cols < rows, decay_incl, 0.0)
    system = mx.eye(length) + beta[..., None] * (k @ k.swapaxes(-1, -2)) * decay_strict
    inverse = mx.linalg.tri_inv(system, upper=False, stream=mx.cpu)
    gamma = mx.exp(cum)[..., None]
    state_t = state.swapaxes(-1, -2)  # [B, H, Dk, Dv]
    u = inverse @ (beta[..., None] * v) - (inverse @ (beta[..., None] * gamma * k)) @ state_t
    y = (gamma * q) @ state_t + ((q @ k.swapaxes(-1, -2)) * decay_incl) @ u
    last = cum[..., -1:]
    tail = mx.exp(last - cum)[..., None]
    state = mx.exp(last)[..., None] * state + (u * tail).swapaxes(-1, -2) @ k
    return y, state


def depthwise_conv(conv: nn.Conv1d, window: mx.array) -> mx.array:
    """``conv(window)`` for a depthwise, unpadded, stride-1 ``nn.Conv1d``, as one multiply-add per tap.

    MLX's CPU convolution of a few thousand channels with one input each costs as much as a
    dense projection; the taps are a handful of elementwise products.
    """
    taps = conv.weight.shape[1]
    length = window.shape[1] - taps + 1
    out = sum(window[:, j : j + length] * conv.weight[:, j, 0] for j in range(taps))
    return out + conv.bias if "bias" in conv else out


def projected_inputs(layer, x: mx.array) -> tuple[mx.array, mx.array, mx.array, mx.array, mx.array]:
    """A Gated DeltaNet layer's normed input and its projections ``qkv``, ``z`` (per head), ``b`` and ``a`` (mlx-lm's)."""
    attn = layer.linear_attn
    inputs = layer.input_layernorm(x)
    batch, length, _ = inputs.shape
    z = attn.in_proj_z(inputs).reshape(batch, length, attn.num_v_heads, attn.head_v_dim)
    return inputs, attn.in_proj_qkv(inputs), z, attn.in_proj_b(inputs), attn.in_proj_a(inputs)


def normalized_qkv(attn, mixed: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """The convolved projection split into per-head queries, keys and values, queries and keys normalized (mlx-lm's)."""
    batch, length, _ = mixed.shape
    q, k, v = (
        part.reshape(batch, length, heads, dim)
        for part, heads, dim in zip(
            mx.split(mixed, [attn.key_dim, 2 * attn.key_dim], -1),
            (attn.num_k_heads, attn.num_k_heads, attn.num_v_heads),
            (attn.head_k_dim, attn.head_k_dim, attn.head_v_dim),
        )
    )
    q, k = normalize_qk(q, k, inv_scale=attn.head_k_dim**-0.5, eps=1e-6)
    return q, k, v


def stepped_delta(attn, q, k, v, a, b, state) -> tuple[mx.array, list[mx.array]]:
    """mlx-lm's recurrence one token at a time: the outputs of every position and the state after each.

    Each step is mlx-lm's own for one token, so a position's state is what a one-token pass from
    its predecessor's would leave (MTP verification keeps the one at the last accepted token).
    """
    outs, states = [], []
    for t in range(q.shape[1]):
        step = slice(t, t + 1)
        y, state = gated_delta_update(
            q[:, step],
            k[:, step],
            v[:, step],
            a[:, step],
            b[:, step],
            attn.A_log,
            attn.dt_bias,
            state,
            None,
            use_kernel=not attn.training,
        )
        outs.append(y)
        states.append(state)
    return mx.concatenate(outs, axis=1), states


def prefill_linear_layer(layer, x: mx.array, cache) -> mx.array:
    """mlx-lm's Gated DeltaNet decoder layer over a prompt chunk (no mask), its recurrence chunked.

    The computation of ``GatedDeltaNet.__call__`` and its decoder layer (their modules and
    weights), updating ``cache`` (an mlx-lm ``ArraysCache``) the same way.
    """
    attn = layer.linear_attn
    inputs, qkv, z, b, a = projected_inputs(layer, x)
    batch, length, _ = inputs.shape
    conv = (
        cache[0] if cache[0] is not None else mx.zeros((batch, attn.conv_kernel_size - 1, attn.conv_dim), inputs.dtype)
    )
    window = mx.concatenate([conv, qkv], axis=1)
    cache[0] = mx.contiguous(window[:, -(attn.conv_kernel_size - 1) :, :])
    mixed = nn.silu(depthwise_conv(attn.conv1d, window))
    q, k, v = normalized_qkv(attn, mixed)
    state = cache[1] if cache[1] is not None else mx.zeros((batch, attn.num_v_heads, attn.head_v_dim, attn.head_k_dim))
    y, cache[1] = chunked_gated_delta(q, k, v, log_decay(attn.A_log, a, attn.dt_bias), mx.sigmoid(b), state)
    cache.advance(length)
    out = attn.out_proj(attn.norm(y.astype(q.dtype), z).reshape(batch, length, -1))
    if getattr(attn, "sharding_group", None) is not None:  # tensor parallel: this rank's heads only (mlx-lm's shard)
        out = mx.distributed.all_sum(out, group=attn.sharding_group)
    h = x + out
    return h + layer.mlp(layer.post_attention_layernorm(h))
