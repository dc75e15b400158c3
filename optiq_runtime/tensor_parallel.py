"""Tensor-parallel loading under ``mlx.launch``: each rank holds and runs a slice of every layer.

mlx-lm's ``Model.shard`` splits Qwen3.5's projections by heads (Gated DeltaNet and attention) and
its MLPs by rows, with an ``all_sum`` after each layer's output projection; each rank's DeltaNet
states and KV caches then hold only its own heads. It leaves the embedding whole, which with tied
embeddings is a third of a 0.8B model: ``VocabShardedEmbedding`` splits it by vocabulary rows.
The MTP head is replicated by default (it is one layer); ``shard_head`` splits its layer the way
mlx-lm splits a full-attention layer (``bench/scale.py`` measures both).
"""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.nn.layers.distributed import shard_linear
from mlx.utils import tree_flatten, tree_map
from mlx_lm.models.base import gather_last_axis

from optiq_runtime.errors import BadInputError

# Timing-driven choices (MTP probe and fallback) would differ between ranks and desynchronise them.
TP_AUTO_FALLBACK = False


class VocabShardedEmbedding(nn.Module):
    """An embedding whose rows are split over ``group``: lookups are summed, output logits gathered."""

    def __init__(self, embedding: nn.Module, group: mx.distributed.Group):
        super().__init__()
        vocab, ranks = embedding.weight.shape[0], group.size()
        if vocab % ranks:
            raise BadInputError(f"the vocabulary ({vocab} tokens) does not split evenly over {ranks} ranks")
        self.rows = vocab // ranks
        self.start = group.rank() * self.rows
        embedding.update(
            tree_map(lambda a: mx.contiguous(a[self.start : self.start + self.rows]), embedding.parameters())
        )
        self.local = embedding
        self.group = group

    def __call__(self, ids: mx.array) -> mx.array:
        local = ids - self.start
        mine = (local >= 0) & (local < self.rows)
        rows = self.local(mx.where(mine, local, 0))
        return mx.distributed.all_sum(mx.where(mine[..., None], rows, 0), group=self.group)

    def as_linear(self, x: mx.array) -> mx.array:
        return gather_last_axis(self.local.as_linear(x), self.group)


def shard_model(model: nn.Module, group: mx.distributed.Group) -> nn.Module:
    """Split ``model`` (an mlx-lm Qwen3.5 model, lazily loaded) over ``group`` in place."""
    if not hasattr(model, "shard"):
        raise BadInputError(
            f"{type(model).__module__} models cannot be split over ranks (mlx-lm has no shard for them)"
        )
    model.shard(group)
    body = getattr(model, "language_model", model).model
    body.embed_tokens = VocabShardedEmbedding(body.embed_tokens, group)
    return model


def shard_head(head: nn.Module, group: mx.distributed.Group) -> nn.Module:
    """Split the MTP head's attention layer by heads and its MLP by rows, as mlx-lm does the backbone's."""
    layer, ranks = head.layers[0], group.size()
    attn = layer.self_attn
    if attn.num_attention_heads % ranks or attn.num_key_value_heads % ranks:
        raise BadInputError(f"the MTP head's attention heads do not split evenly over {ranks} ranks")
    attn.q_proj = shard_linear(attn.q_proj, "all-to-sharded", group=group)
    attn.k_proj = shard_linear(attn.k_proj, "all-to-sharded", group=group)
    attn.v_proj = shard_linear(attn.v_proj, "all-to-sharded", group=group)
    attn.o_proj = shard_linear(attn.o_proj, "sharded-to-all", group=group)
    attn.num_attention_heads //= ranks
    attn.num_key_value_heads //= ranks
    mlp = layer.mlp
    mlp.gate_proj = shard_linear(mlp.gate_proj, "all-to-sharded", group=group)
    mlp.up_proj = shard_linear(mlp.up_proj, "all-to-sharded", group=group)
    mlp.down_proj = shard_linear(mlp.down_proj, "sharded-to-all", group=group)
    return head


def load_sharded(
    path: str | os.PathLike,
    group: mx.distributed.Group,
    *,
    mtp: bool = True,
    mtp_depth: int = 2,
    split_head: bool = False,
):
    """This rank's ``Engine`` over its slice of the model folder ``path`` (same greedy tokens as one process).

    Only the slice is kept: the model is loaded lazily, split, then evaluated. Quantized layers stay
    quantized (dequantizing would drop the sharded layers' sums).
    """
    from optiq_runtime.backbone import text_args
    from optiq_runtime.checkpoint import resolve_base
    from optiq_runtime.engine import DECODE_BLAS_THREADS, Engine
    from optiq_runtime.fastcpu import set_blas_threads
    from optiq_runtime.load import load_network, load_tokenizer
    from optiq_runtime.mtp import load_mtp_head

    folder = Path(resolve_base(path))
    model, config = load_network(folder, lazy=True)
    shard_model(model, group)
    mx.eval(model.parameters())
    head = load_mtp_head(folder, text_args(model))
    if head is not None and split_head:
        shard_head(head, group)
        mx.eval(head.parameters())
    set_blas_threads(DECODE_BLAS_THREADS)
    engine = Engine(model, load_tokenizer(folder, config), folder, head, mtp=mtp, mtp_depth=mtp_depth)
    engine.auto_fallback = TP_AUTO_FALLBACK
    return engine


def resident_bytes(*modules: nn.Module | None) -> int:
    """The bytes of the parameters ``modules`` hold (on this rank)."""
    return sum(v.nbytes for m in modules if m is not None for _, v in tree_flatten(m.parameters()))
