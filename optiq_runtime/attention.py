"""Qwen3-Next gated attention in pieces, for passes over a preallocated KV buffer written at an array offset.

``optiq_runtime.backbone`` composes them into its compiled graphs, ``optiq_runtime.host_pass``
into the compiled segments between host products: the input projections and ``o_proj`` are
left to the caller.
"""

from __future__ import annotations

import mlx.core as mx
from mlx_lm.models.cache import KVCache

MIN_CAPACITY = 256


def shape_attention(attn, q, k, v, offset):
    """``project_attention`` from the products of ``q_proj``, ``k_proj`` and ``v_proj``."""
    batch, length, _ = q.shape
    queries, gate = mx.split(q.reshape(batch, length, attn.num_attention_heads, -1), 2, axis=-1)
    gate = gate.reshape(batch, length, -1)
    keys = attn.k_norm(k.reshape(batch, length, attn.num_key_value_heads, -1)).transpose(0, 2, 1, 3)
    values = v.reshape(batch, length, attn.num_key_value_heads, -1).transpose(0, 2, 1, 3)
    queries = attn.rope(attn.q_norm(queries).transpose(0, 2, 1, 3), offset=offset)
    return queries, attn.rope(keys, offset=offset), values, gate


def gated_attention(attn, queries, keys, values, visible, gate):
    """``attend`` before the output projection ``o_proj``."""
    batch, _, length, _ = queries.shape
    out = mx.fast.scaled_dot_product_attention(queries, keys, values, scale=attn.scale, mask=visible)
    out = out.transpose(0, 2, 1, 3).reshape(batch, length, -1)
    return out * mx.sigmoid(gate)


def written(keys_buffer, values_buffer, keys, values, offset):
    """The KV buffers with ``keys``/``values`` written at ``offset`` (an array), and which positions each query sees."""
    keys_buffer = mx.slice_update(keys_buffer, keys, offset[None], axes=(2,))
    values_buffer = mx.slice_update(values_buffer, values, offset[None], axes=(2,))
    visible = mx.arange(keys_buffer.shape[2])[None] <= (offset + mx.arange(keys.shape[2]))[:, None]
    return keys_buffer, values_buffer, visible


def reserve(cache: KVCache, size: int) -> tuple[mx.array, mx.array]:
    """The cache's key and value buffers, grown (doubling) to hold ``size`` positions."""
    if cache.keys is not None and cache.keys.shape[2] >= size:
        return cache.keys, cache.values
    capacity = MIN_CAPACITY
    while capacity < size:
        capacity *= 2
    cache.keys, cache.values = (_grown(buffer, cache.offset, capacity) for buffer in (cache.keys, cache.values))
    return cache.keys, cache.values


def _grown(buffer: mx.array, used: int, capacity: int) -> mx.array:
    shape = list(buffer.shape)
    shape[2] = capacity - used
    return mx.concatenate([buffer[:, :, :used], mx.zeros(shape, buffer.dtype)], axis=2)
