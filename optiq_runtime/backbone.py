"""The main model and the MTP head run for generation, with each short pass as one compiled graph.

On small models decoding time goes to dispatching hundreds of tiny ops, not to arithmetic.
A decode pass (plain step, verification, draft step) is therefore one ``mx.compile``d
function of the token ids and every cache array, composed from mlx-lm's own Qwen3.5
modules. Attention in that graph writes into the KV cache's preallocated buffer at an
offset given as an array, so one graph serves every position; only the buffer's capacity
(doubled when full) and the number of tokens make new graphs. Prefill runs mlx-lm's
modules as they are, except that off Metal the Gated DeltaNet recurrence runs in its
chunked matmul form (``optiq_runtime.deltanet``), not token by token. A model whose short
passes multiply on the host (``optiq_runtime.qmatmul``) cannot run them as one compiled graph:
they run as compiled segments between the host products (``optiq_runtime.host_pass``). Layers
that use the host kernel for prefill only leave the short passes compiled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask, create_ssm_mask, gather_last_axis
from mlx_lm.models.cache import ArraysCache, KVCache
from mlx_lm.models.qwen3_5 import TextModelArgs

from optiq_runtime.attention import gated_attention, reserve, shape_attention, written
from optiq_runtime.cpuplan import short_passes_on_host
from optiq_runtime.deltanet import normalized_qkv, prefill_linear_layer, projected_inputs, stepped_delta
from optiq_runtime.host_pass import HostPass
from optiq_runtime.host_pass import supported as host_pass_supported
from optiq_runtime.hybrid_cache import HybridCache, Rewind
from optiq_runtime.mtp import MTPHead

# Passes of at most this many tokens run compiled (one graph per length and buffer size).
MAX_FAST_TOKENS = 16
EAGER_VAR = "OPTIQ_EAGER"


def compiled_passes() -> bool:
    """Whether short passes run as compiled graphs; ``OPTIQ_EAGER=1`` runs mlx-lm's modules as they are."""
    return not os.environ.get(EAGER_VAR)


def text_args(model) -> TextModelArgs:
    """The text model's arguments of an mlx-lm Qwen3.5 model (the multimodal wrapper or the text model)."""
    return getattr(model, "language_model", model).args


class Backbone:
    """An mlx-lm Qwen3.5 model run layer by layer, exposing hidden states before the final norm.

    The compiled graphs hold the weights they were traced with: build the Backbone after any
    change to the model's parameters (dequantizing, loading others).
    """

    def __init__(self, model):
        text = getattr(model, "language_model", model)
        self.args = text_args(model)
        self.body = text.model
        self.lm_head = None if self.args.tie_word_embeddings else text.lm_head
        self._vocab_group = getattr(text, "sharding_group", None)  # an lm_head split over ranks (mlx-lm's shard)
        self.layers = list(self.body.layers)
        kinds = [layer.is_linear for layer in self.layers]
        self._fa_idx = kinds.index(False) if False in kinds else None
        self._ssm_idx = kinds.index(True) if True in kinds else None
        self.rollback = "positions"  # or "replay": how a verification's rejected tail is taken back
        self._on_host = short_passes_on_host(model)  # a prefill-only kernel layer leaves short passes compiled
        self._host_pass = HostPass(self.layers) if self._on_host and host_pass_supported(self.layers) else None
        # mlx-lm steps the DeltaNet recurrence token by token off Metal; the chunked form is matmuls.
        self.chunked_deltanet = not (mx.metal.is_available() and mx.default_device() == mx.gpu)
        self._step = mx.compile(self.step_graph)
        self._step_positions = mx.compile(partial(self.step_graph, positions=True))
        self._replays = {i: partial(_replay, layer) for i, layer in enumerate(self.layers) if layer.is_linear}
        self._compiled_replays = {i: mx.compile(replay) for i, replay in self._replays.items()}
        self._logits = mx.compile(self._plain_logits)

    def _plain_logits(self, hidden: mx.array) -> mx.array:
        return self.output(self.body.norm(hidden))

    def logits(self, hidden: mx.array) -> mx.array:
        """The output layer over the final norm of ``hidden`` (compiled where short passes are)."""
        return (self._logits if self.compiled else self._plain_logits)(hidden)

    @property
    def host_pass(self) -> HostPass | None:
        """The compiled segments a model with host products runs its short passes through (None without them)."""
        return self._host_pass

    @property
    def on_host(self) -> bool:
        """Whether short passes multiply on the host (the kernel): each is computed before it returns."""
        return self._on_host

    @property
    def compiled(self) -> bool:
        """Whether short passes run as compiled graphs (not with ``OPTIQ_EAGER=1``, nor through the host kernel)."""
        return compiled_passes() and not self._on_host

    def new_cache(self, with_mtp: bool) -> HybridCache:
        return HybridCache(self.layers, with_mtp)

    def embed(self, tokens: mx.array) -> mx.array:
        return self.body.embed_tokens(tokens)

    def output(self, normed: mx.array) -> mx.array:
        if self.lm_head is None:
            return self.body.embed_tokens.as_linear(normed)
        logits = self.lm_head(normed)
        return logits if self._vocab_group is None else gather_last_axis(logits, self._vocab_group)

    def forward(self, tokens: mx.array, cache: HybridCache, record: dict | None = None) -> mx.array:
        """Hidden states ``[1, S, D]`` before the final norm, through mlx-lm's modules (prefill)."""
        h = self.embed(tokens)
        fa_mask = create_attention_mask(h, cache.main[self._fa_idx]) if self._fa_idx is not None else None
        ssm_mask = create_ssm_mask(h, cache.main[self._ssm_idx]) if self._ssm_idx is not None else None
        for i, (layer, layer_cache) in enumerate(zip(self.layers, cache.main)):
            if record is not None and layer.is_linear:
                record[i] = h
            if layer.is_linear and ssm_mask is None and self.chunked_deltanet:
                h = prefill_linear_layer(layer, h, layer_cache)
            else:
                h = layer(h, mask=ssm_mask if layer.is_linear else fa_mask, cache=layer_cache)
        return h

    def step(self, tokens: mx.array, cache: HybridCache, rewind: Rewind | None = None) -> tuple[mx.array, mx.array]:
        """Hidden states and logits for a few ``tokens`` after a prefilled ``cache``, as one graph.

        ``rewind`` gets what ``HybridCache.rewind`` needs to take part of the pass back: the
        DeltaNet caches after each position (``rollback == "positions"``) or each DeltaNet
        layer's input, to replay (``"replay"``).
        """
        if rewind is not None:
            rewind.fed = tokens.shape[-1]
        count = tokens.shape[-1]
        positions = rewind is not None and self.rollback == "positions" and count > 1
        if not self._fits_graph(tokens, cache):
            record = None if rewind is None else rewind.inputs
            if self._fits_host_pass(tokens, cache):
                kept = rewind.positions if positions and rewind is not None else None
                hidden = self._host_pass(
                    self.embed(tokens[None]), cache.main, None if kept is not None else record, kept
                )
            else:
                hidden = self.forward(tokens[None], cache, record)
            return hidden, self.logits(hidden)
        kv_caches = [cache.main[i] for i in cache.kv_ids]
        offset = kv_caches[0].offset if kv_caches else 0
        kv = [reserve(c, offset + count) for c in kv_caches]
        graph = self._step_positions if positions else self._step
        hidden, logits, linear, kv, inputs = graph(tokens[None], cache.linear_state(), kv, mx.array(offset))
        for i, arrays in zip(cache.linear_ids, linear):
            cache.main[i].cache = list(arrays[-1] if positions else arrays)
        for c, (keys, values) in zip(kv_caches, kv):
            c.keys, c.values, c.offset = keys, values, offset + count
        if rewind is not None:
            (rewind.positions if positions else rewind.inputs).update(
                zip(cache.linear_ids, linear if positions else inputs)
            )
        return hidden, logits

    def _fits_graph(self, tokens: mx.array, cache: HybridCache) -> bool:
        """Whether a compiled pass applies: few tokens, after a prefill (every cache array exists)."""
        return self.compiled and self._short_after_prefill(tokens, cache)

    def _fits_host_pass(self, tokens: mx.array, cache: HybridCache) -> bool:
        """Whether a model with host products runs this pass as compiled segments (``optiq_runtime.host_pass``)."""
        return self._host_pass is not None and compiled_passes() and self._short_after_prefill(tokens, cache)

    def _short_after_prefill(self, tokens: mx.array, cache: HybridCache) -> bool:
        if tokens.shape[-1] > MAX_FAST_TOKENS:
            return False
        ready = all(cache.main[i].keys is not None for i in cache.kv_ids)
        return ready and all(a is not None for arrays in cache.linear_state() for a in arrays)

    def step_graph(self, tokens, linear, kv, offset, *, positions: bool = False):
        """The traced body of ``step``: ``(hidden, logits, DeltaNet caches, KV buffers, DeltaNet inputs)``."""
        h = self.embed(tokens)
        linear_out, kv_out, inputs = [], [], []
        linear_in, kv_in = iter(linear), iter(kv)
        for layer in self.layers:
            if layer.is_linear:
                inputs.append(h)
                run = _linear_layer_positions if positions else _linear_layer
                h, arrays = run(layer, h, *next(linear_in))
                linear_out.append(arrays)
            else:
                keys, values = next(kv_in)
                h, keys, values = attention_layer(layer, h, keys, values, offset)
                kv_out.append((keys, values))
        return h, self.output(self.body.norm(h)), linear_out, kv_out, inputs

    def replay(self, index: int, inputs: mx.array, layer_cache) -> None:
        """Advance DeltaNet layer ``index``'s cache over ``inputs`` (its layer inputs), skipping its outputs."""
        replays = self._compiled_replays if self.compiled else self._replays
        layer_cache[0], layer_cache[1] = replays[index](inputs, *layer_cache.cache)


def _replay(layer, x, conv, state):
    """A Gated DeltaNet layer's cache update alone: ``(x, conv, state) -> (conv, state)``."""
    cache = ArraysCache(size=2)
    cache[0], cache[1] = conv, state
    layer.linear_attn(layer.input_layernorm(x), None, cache)
    return cache[0], cache[1]


class Drafter:
    """The MTP head over a backbone: each draft pass is one compiled graph, like the backbone's."""

    def __init__(self, head: MTPHead, backbone: Backbone, projection: Callable[[mx.array], mx.array] | None = None):
        self.head, self.backbone = head, backbone
        # The draft logits' projection: the backbone's own output head, or a reduced draft
        # vocabulary's (optiq_runtime.draft_vocab), which leaves -inf outside its tokens.
        self.output = projection or backbone.output
        # Drafts past the first feed the head its own output in place of h_t. The head is
        # trained on the backbone's pre-norm states only, so its pre-norm output is the
        # analogue; True feeds the normed output instead (as vLLM's Qwen3-Next MTP does).
        self.chain_normed = False
        self._pass = mx.compile(self.pass_graph)

    def chain(self, out: mx.array) -> mx.array:
        """The hidden state the next draft pass takes after this output."""
        return self.head.norm(out) if self.chain_normed else out

    def __call__(self, tokens: mx.array, hidden: mx.array, cache: KVCache) -> tuple[mx.array, mx.array]:
        """The head's outputs (before its norm) for ``tokens`` following the positions of ``hidden``, and logits.

        The logits are every position's for a short pass, the last position's only for a long one
        (a catch-up over a prompt drafts from its end: a vocabulary row per prompt token would cost
        a float32 copy of the output layer's size for every thousand tokens).
        """
        count = tokens.shape[-1]
        if count > MAX_FAST_TOKENS or cache.keys is None or not self.backbone.compiled:
            out = self.head(self.backbone.embed(tokens[None]), hidden, cache)
            return out, self.output(self.head.norm(out[:, -1:] if count > MAX_FAST_TOKENS else out))
        offset = cache.offset
        keys, values = reserve(cache, offset + count)
        out, logits, keys, values = self._pass(tokens[None], hidden, keys, values, mx.array(offset))
        cache.keys, cache.values, cache.offset = keys, values, offset + count
        return out, logits

    def pass_graph(self, tokens, hidden, keys, values, offset):
        """The traced body of a draft pass: ``(outputs before the norm, logits, KV buffers)``."""
        x = self.head.project(self.backbone.embed(tokens), hidden)
        out, keys, values = attention_layer(self.head.layers[0], x, keys, values, offset)
        return out, self.output(self.head.norm(out)), keys, values


def _linear_layer(layer, x, conv, state):
    """mlx-lm's Gated DeltaNet decoder layer as a pure function of its cache arrays."""
    cache = ArraysCache(size=2)
    cache[0], cache[1] = conv, state
    return layer(x, mask=None, cache=cache), (cache[0], cache[1])


def _linear_layer_positions(layer, x, conv, state):
    """The Gated DeltaNet decoder layer with its cache after every position: ``(out, [(conv, state)] * S)``.

    The computation of mlx-lm's ``GatedDeltaNet.__call__`` (its modules and weights; no mask,
    no batch padding), with the recurrence stepped one token at a time to keep each state.
    """
    attn = layer.linear_attn
    inputs, qkv, z, b, a = projected_inputs(layer, x)
    batch, length, _ = inputs.shape
    window = mx.concatenate([conv, qkv], axis=1)
    kept = attn.conv_kernel_size - 1
    convs = [window[:, t + 1 : t + 1 + kept] for t in range(length)]
    mixed = nn.silu(attn.conv1d(window))
    q, k, v = normalized_qkv(attn, mixed)
    out, states = stepped_delta(attn, q, k, v, a, b, state)
    out = attn.out_proj(attn.norm(out, z).reshape(batch, length, -1))
    if attn.sharding_group is not None:  # tensor parallel: each rank holds some heads (mlx-lm's ``shard``)
        out = mx.distributed.all_sum(out, group=attn.sharding_group)
    h = x + out
    return h + layer.mlp(layer.post_attention_layernorm(h)), list(zip(convs, states))


def attention_layer(layer, x, keys, values, offset):
    """mlx-lm's full-attention decoder layer over a KV buffer written at ``offset`` (an array)."""
    attended, keys, values = _attention(layer.self_attn, layer.input_layernorm(x), keys, values, offset)
    h = x + attended
    return h + layer.mlp(layer.post_attention_layernorm(h)), keys, values


def _attention(attn, x, keys_buffer, values_buffer, offset):
    """Qwen3-Next gated attention (mlx-lm's module and weights) writing into a fixed-size buffer.

    The same computation as ``Qwen3NextAttention.__call__``, except that keys and values are
    written with ``slice_update`` at an array offset and attention masks the unused tail of
    the buffer, so the graph does not depend on the position.
    """
    queries, keys, values, gate = project_attention(attn, x, offset)
    keys_buffer, values_buffer, visible = written(keys_buffer, values_buffer, keys, values, offset)
    return attend(attn, queries, keys_buffer, values_buffer, visible, gate), keys_buffer, values_buffer


def project_attention(attn, x, offset):
    """Queries and keys (normed, rotated from position ``offset``), values ``[B, heads, S, dim]`` and the output gate."""
    return shape_attention(attn, attn.q_proj(x), attn.k_proj(x), attn.v_proj(x), offset)


def attend(attn, queries, keys, values, visible, gate):
    """Gated attention output over ``keys``/``values`` where ``visible`` ``[S, K]`` allows."""
    return attn.o_proj(gated_attention(attn, queries, keys, values, visible, gate))
