"""Short passes of a model whose layers multiply on the host, as compiled MLX segments between the host products.

A layer served by ``optiq_runtime.qmatmul`` is a host round trip, so such a model's passes cannot
be one ``mx.compile``d graph (``optiq_runtime.backbone``). Run eagerly, a decode step of
Qwen3.5-0.8B's shape is dozens of MLX ops per layer between the products (the DeltaNet
convolution, recurrence and gated norm; attention's norms, rotation and SDPA; the residual adds
and RMSNorms), each dispatched on its own. Here each stretch between two products is one
compiled function of fixed shapes: per DeltaNet layer its core (conv, recurrence, gated norm),
per attention layer its core (norms, rotation, the KV buffer write, SDPA, gate), and per layer
the residual add with the next norm. The products are the layers' own modules; those of one
input that the kernel serves all (a DeltaNet layer's four input projections, attention's three)
are one host round trip, not one each.

The computation is mlx-lm's (``DecoderLayer``, ``GatedDeltaNet``) with the recurrence stepped
as mlx-lm steps it for a few tokens, and attention over a preallocated KV buffer written at an
array offset as the backbone's compiled graphs do. A verification pass may keep each DeltaNet
layer's caches after every position (``positions``), so that taking back its rejected tail is
picking one, not replaying the kept tokens through the layer's products again.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.gated_delta import gated_delta_update

from optiq_runtime.attention import gated_attention, reserve, shape_attention, written
from optiq_runtime.cpuplan import short_pass_form
from optiq_runtime.deltanet import depthwise_conv, normalized_qkv, stepped_delta
from optiq_runtime.qmatmul import KernelLinear, shared_products


def supported(layers) -> bool:
    """Whether these decoder layers run here (not split over ranks: no tensor-parallel reductions)."""
    return all(getattr(_mixer(layer), "sharding_group", None) is None for layer in layers)


def _mixer(layer):
    return layer.linear_attn if layer.is_linear else layer.self_attn


class HostPass:
    """A few tokens through decoder ``layers`` after a prefill, with compiled segments between host products."""

    def __init__(self, layers):
        self.layers = layers
        self._cores = [
            mx.compile(partial(_deltanet_core if layer.is_linear else _attention_core, _mixer(layer)))
            for layer in layers
        ]
        self._positions = [
            mx.compile(partial(_deltanet_core_positions, layer.linear_attn)) if layer.is_linear else None
            for layer in layers
        ]
        self._after_mixer = [mx.compile(partial(_residual_norm, layer.post_attention_layernorm)) for layer in layers]
        self._after_mlp = [mx.compile(partial(_residual_norm, layer.input_layernorm)) for layer in layers]

    def __call__(
        self, h: mx.array, caches: list, record: dict | None = None, positions: dict | None = None
    ) -> mx.array:
        """Hidden states after every layer for the embedded tokens ``h`` ``[1, S, D]``, updating ``caches``.

        ``record`` gets each DeltaNet layer's input by layer index (as ``Backbone.forward`` records it);
        ``positions`` each DeltaNet layer's ``(conv, state)`` after every position (as ``Backbone.step`` does).
        """
        normed = self.layers[0].input_layernorm(h)
        last = len(self.layers) - 1
        for i, (layer, cache) in enumerate(zip(self.layers, caches)):
            if record is not None and layer.is_linear:
                record[i] = h
            mixed = self._mix(i, layer, normed, cache, positions)
            h, normed = self._after_mixer[i](h, mixed)
            out = layer.mlp(normed)
            if i == last:
                return h + out
            h, normed = self._after_mlp[i + 1](h, out)
        return h

    def _mix(self, i: int, layer, normed: mx.array, cache, positions: dict | None) -> mx.array:
        """The layer's token mixer (DeltaNet or attention) over its normed input, its cache updated."""
        count = normed.shape[1]
        if layer.is_linear:
            attn = layer.linear_attn
            products = _products((attn.in_proj_qkv, attn.in_proj_z, attn.in_proj_b, attn.in_proj_a), normed)
            if positions is not None:
                out, positions[i] = self._positions[i](*products, cache[0], cache[1])
                cache[0], cache[1] = positions[i][-1]
            else:
                out, cache[0], cache[1] = self._cores[i](*products, cache[0], cache[1])
            cache.advance(count)
            return attn.out_proj(out)
        attn = layer.self_attn
        offset = cache.offset
        keys, values = reserve(cache, offset + count)
        products = _products((attn.q_proj, attn.k_proj, attn.v_proj), normed)
        out, cache.keys, cache.values = self._cores[i](*products, keys, values, mx.array(offset))
        cache.offset = offset + count
        return attn.o_proj(out)


def _products(layers, x: mx.array) -> list[mx.array]:
    """Each layer's product of ``x``: one host round trip when the kernel serves them all, else each as it runs."""
    forms = [short_pass_form(layer) for layer in layers]
    if all(isinstance(f, KernelLinear) and "bias" not in f.layer for f in forms):
        return shared_products(forms, x)
    return [layer(x) for layer in layers]


def _residual_norm(norm: nn.Module, h: mx.array, out: mx.array) -> tuple[mx.array, mx.array]:
    """The residual add and the next RMSNorm: ``(h + out, norm(h + out))``."""
    h = h + out
    return h, norm(h)


def _deltanet_core(attn, qkv, z, b, a, conv, state):
    """mlx-lm's ``GatedDeltaNet`` between its input projections and ``out_proj``: ``(out, conv, state)``."""
    batch, length, _ = qkv.shape
    z = z.reshape(batch, length, attn.num_v_heads, attn.head_v_dim)
    window = mx.concatenate([conv, qkv], axis=1)
    conv = mx.contiguous(window[:, -(attn.conv_kernel_size - 1) :, :])
    q, k, v = normalized_qkv(attn, nn.silu(depthwise_conv(attn.conv1d, window)))
    out, state = gated_delta_update(q, k, v, a, b, attn.A_log, attn.dt_bias, state, None, use_kernel=not attn.training)
    return attn.norm(out, z).reshape(batch, length, -1), conv, state


def _deltanet_core_positions(attn, qkv, z, b, a, conv, state):
    """``_deltanet_core`` with the recurrence stepped one token at a time: ``(out, [(conv, state)] per position)``.

    Each step is mlx-lm's own for one token, so every position computes what a one-token pass
    from its predecessor's caches would.
    """
    batch, length, _ = qkv.shape
    z = z.reshape(batch, length, attn.num_v_heads, attn.head_v_dim)
    window = mx.concatenate([conv, qkv], axis=1)
    kept = attn.conv_kernel_size - 1
    q, k, v = normalized_qkv(attn, nn.silu(depthwise_conv(attn.conv1d, window)))
    out, states = stepped_delta(attn, q, k, v, a, b, state)
    caches = [(mx.contiguous(window[:, t + 1 : t + 1 + kept, :]), s) for t, s in enumerate(states)]
    return attn.norm(out, z).reshape(batch, length, -1), caches


def _attention_core(attn, q, k, v, keys_buffer, values_buffer, offset):
    """Gated attention between its input projections and ``o_proj``, over KV buffers written at ``offset``."""
    queries, keys, values, gate = shape_attention(attn, q, k, v, offset)
    keys_buffer, values_buffer, visible = written(keys_buffer, values_buffer, keys, values, offset)
    return gated_attention(attn, queries, keys_buffer, values_buffer, visible, gate), keys_buffer, values_buffer
