"""The Qwen3.5 multi-token-prediction head: its module and loading its weights.

The head predicts token t+2 from the backbone's hidden state at t (before the final norm)
and the embedding of token t+1:
``fc(concat([pre_fc_norm_embedding(embed(t+1)), pre_fc_norm_hidden(h_t)]))``, then one
full-attention decoder layer with its own KV cache, then ``norm`` and the backbone's
shared output head. The decoder layer is mlx-lm's own Qwen3.5 ``DecoderLayer``.

Weights come from a built folder's ``mtp.safetensors`` or from a Hugging Face checkpoint's
``mtp.*`` tensors. Both hold them as Hugging Face stores them (the build copies them, with
the decoder layer's projections quantized): RMSNorm weights are offsets from 1, and get 1
added here as mlx-lm does for the backbone.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.qwen3_5 import DecoderLayer, TextModelArgs

from optiq_runtime import fp8
from optiq_runtime.checkpoint import read_safetensors_header
from optiq_runtime.errors import BadInputError
from optiq_runtime.load import cpu_backend, upcast_floats

MTP_FILE = "mtp.safetensors"
PREFIX = "mtp."


class MTPHead(nn.Module):
    """One MTP module of Qwen3.5; returns the layer's output before ``norm``."""

    def __init__(self, args: TextModelArgs):
        super().__init__()
        hidden, eps = args.hidden_size, args.rms_norm_eps
        self.pre_fc_norm_embedding = nn.RMSNorm(hidden, eps=eps)
        self.pre_fc_norm_hidden = nn.RMSNorm(hidden, eps=eps)
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        # A layer index that mlx-lm's rule makes full attention.
        self.layers = [DecoderLayer(args, layer_idx=args.full_attention_interval - 1)]
        self.norm = nn.RMSNorm(hidden, eps=eps)

    def __call__(self, embeddings: mx.array, hidden: mx.array, cache) -> mx.array:
        x = self.project(embeddings, hidden)
        return self.layers[0](x, mask=create_attention_mask(x, cache), cache=cache)

    def project(self, embeddings: mx.array, hidden: mx.array) -> mx.array:
        """The decoder layer's input: ``fc`` over the normed embedding and hidden state, embedding first."""
        x = mx.concatenate([self.pre_fc_norm_embedding(embeddings), self.pre_fc_norm_hidden(hidden)], axis=-1)
        return self.fc(x)


def mtp_sources(folder: Path) -> list[Path]:
    """The safetensors files that hold the head: ``mtp.safetensors``, else the checkpoint's shards with ``mtp.*``."""
    own = folder / MTP_FILE
    if own.exists():
        return [own]
    return [
        f for f in sorted(folder.glob("*.safetensors")) if any(k.startswith(PREFIX) for k in read_safetensors_header(f))
    ]


def read_mtp_weights(folder: Path, *, exact_norms: bool = False) -> dict[str, mx.array]:
    """The head's tensors, without the ``mtp.`` prefix, norms made absolute (1 + stored offset).

    The offsets are added in float32; ``exact_norms`` keeps that result in float32 instead of
    rounding it back to the stored dtype (a bf16 1 + offset loses three digits).
    """
    weights: dict[str, mx.array] = {}
    for file in mtp_sources(folder):
        weights.update({k[len(PREFIX) :]: v for k, v in mx.load(str(file)).items() if k.startswith(PREFIX)})
    weights = fp8.dequantize(weights, fp8.folder_block_size(folder))
    for name, value in weights.items():
        if _is_norm(name):
            shifted = value.astype(mx.float32) + 1.0
            weights[name] = shifted if exact_norms else shifted.astype(value.dtype)
    return weights


def _is_norm(name: str) -> bool:
    """An RMSNorm weight: ``norm``, ``pre_fc_norm_embedding``, ``input_layernorm``, ``q_norm``..."""
    module, leaf = name.rsplit(".", 2)[-2:]
    return leaf == "weight" and "norm" in module


def load_mtp_head(folder: str | Path, args: TextModelArgs, *, upcast: bool | None = None) -> MTPHead | None:
    """The folder's MTP head, or None when it has none; BadInputError when malformed.

    ``upcast`` (default: on the CPU backend) casts bf16/f16 parameters to float32, as the loader does
    for the backbone.
    """
    folder = Path(folder)
    upcast = cpu_backend() if upcast is None else upcast
    weights = read_mtp_weights(folder, exact_norms=upcast)
    if not weights:
        return None
    head = MTPHead(args)
    _quantize_like(head, weights)
    _check_tensors(head, weights, folder)
    head.load_weights(list(weights.items()))
    if upcast:
        upcast_floats(head)
    mx.eval(head.parameters())
    head.eval()
    return head


def _quantize_like(head: MTPHead, weights: dict[str, mx.array]) -> None:
    """Quantize the modules whose stored weights are quantized, reading bits and group size from shapes."""

    def predicate(path: str, module: nn.Module):
        if f"{path}.scales" not in weights or not hasattr(module, "to_quantized"):
            return False
        in_dims = module.weight.shape[-1]
        bits = weights[f"{path}.weight"].shape[-1] * 32 // in_dims
        return {"group_size": in_dims // weights[f"{path}.scales"].shape[-1], "bits": bits}

    if any(k.endswith(".scales") for k in weights):
        nn.quantize(head, class_predicate=predicate)


def _check_tensors(head: MTPHead, weights: dict[str, mx.array], folder: Path) -> None:
    expected = dict(tree_flatten(head.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise BadInputError(
            f"the MTP head in {folder} does not match a one-layer Qwen3.5 head: "
            f"missing {[PREFIX + k for k in missing][:5]}, unexpected {[PREFIX + k for k in unexpected][:5]}"
        )
    for name, value in weights.items():
        if value.shape != expected[name].shape:
            raise BadInputError(
                f"MTP tensor {PREFIX}{name} in {folder} has shape {tuple(value.shape)}; "
                f"expected {tuple(expected[name].shape)} for this config"
            )
