"""tiny-agent's shape, the transformers reference model for it, and its MTP head (PyTorch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5DecoderLayer, Qwen3_5RMSNorm

from training.tokenizer import VOCAB_SIZE


@dataclass(frozen=True)
class Shape:
    """The model's dimensions; every Linear input dimension is a multiple of 64 (mlx group size)."""

    vocab_size: int = VOCAB_SIZE
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    head_dim: int = 64
    linear_num_key_heads: int = 2
    linear_num_value_heads: int = 2
    linear_key_head_dim: int = 64
    linear_value_head_dim: int = 64
    full_attention_interval: int = 4

    def check(self) -> None:
        inputs = {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "attention heads * head_dim": self.num_attention_heads * self.head_dim,
            "DeltaNet value_dim": self.linear_num_value_heads * self.linear_value_head_dim,
            "vocab_size": self.vocab_size,
        }
        bad = {k: v for k, v in inputs.items() if v % 64}
        if bad:
            raise ValueError(f"these sizes must be multiples of 64 for 64-wide quantization groups: {bad}")


SPECIAL_IDS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}


def text_config(shape: Shape) -> dict:
    """The ``text_config`` of ``config.json`` (Qwen3.5 field names)."""
    shape.check()
    fields = asdict(shape)
    interval = fields.pop("full_attention_interval")
    layer_types = [
        "full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(shape.num_hidden_layers)
    ]
    return {
        "model_type": "qwen3_5_text",
        **fields,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "linear_conv_kernel_dim": 4,
        "full_attention_interval": interval,
        "layer_types": layer_types,
        "mtp_num_hidden_layers": 1,
        "mtp_use_dedicated_embeddings": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [3, 3, 2],
            "mrope_interleaved": True,
        },
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": SPECIAL_IDS["<|im_end|>"],
        "pad_token_id": SPECIAL_IDS["<|endoftext|>"],
    }


def hf_config(shape: Shape) -> Qwen3_5TextConfig:
    cfg = text_config(shape)
    for key in ("model_type", "mtp_num_hidden_layers", "mtp_use_dedicated_embeddings", "full_attention_interval"):
        cfg.pop(key)
    config = Qwen3_5TextConfig(**cfg)
    config._attn_implementation = "sdpa"
    return config


class MtpHead(nn.Module):
    """Qwen3.5's multi-token-prediction head: predicts token t+2 from h[t] and the embedding of token t+1.

    ``x = fc(concat([pre_fc_norm_embedding(embed(tok[t+1])), pre_fc_norm_hidden(h[t])]))``, then one
    full-attention decoder layer, then ``norm``; the tied output head makes the logits.
    """

    def __init__(self, config: Qwen3_5TextConfig):
        super().__init__()
        layer_config = Qwen3_5TextConfig(
            **{**config.to_dict(), "num_hidden_layers": 1, "layer_types": ["full_attention"]}
        )
        layer_config._attn_implementation = config._attn_implementation
        hidden = config.hidden_size
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        self.pre_fc_norm_embedding = Qwen3_5RMSNorm(hidden, eps=config.rms_norm_eps)
        self.pre_fc_norm_hidden = Qwen3_5RMSNorm(hidden, eps=config.rms_norm_eps)
        self.layers = nn.ModuleList([Qwen3_5DecoderLayer(layer_config, 0)])
        self.norm = Qwen3_5RMSNorm(hidden, eps=config.rms_norm_eps)
        nn.init.normal_(self.fc.weight, std=config.initializer_range)

    def forward(self, next_embeds: torch.Tensor, hidden: torch.Tensor, position_embeddings) -> torch.Tensor:
        x = self.fc(torch.cat([self.pre_fc_norm_embedding(next_embeds), self.pre_fc_norm_hidden(hidden)], dim=-1))
        x = self.layers[0](x, position_embeddings=position_embeddings, attention_mask=None)
        return self.norm(x)


class TinyAgent(nn.Module):
    """The transformers ``Qwen3_5ForCausalLM`` backbone plus the jointly trained MTP head."""

    def __init__(self, shape: Shape, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        config = hf_config(shape)
        self.lm = Qwen3_5ForCausalLM(config)
        self.mtp = MtpHead(config)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """Hidden states before and after the final norm, and the rotary embeddings used."""
        captured = {}
        hook = self.lm.model.norm.register_forward_pre_hook(lambda _m, args: captured.__setitem__("h", args[0]))
        try:
            out = self.lm.model(input_ids=input_ids, use_cache=False)
        finally:
            hook.remove()
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(input_ids.shape[0], -1)
        rope = self.lm.model.rotary_emb(out.last_hidden_state, positions)
        return captured["h"], out.last_hidden_state, rope

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm.lm_head(hidden)

    def mtp_hidden(self, input_ids: torch.Tensor, pre_norm: torch.Tensor, rope) -> torch.Tensor:
        """MTP output states for positions 0..T-2 (each predicting token t+2)."""
        next_embeds = self.lm.model.embed_tokens(input_ids[:, 1:])
        cos, sin = rope
        return self.mtp(next_embeds, pre_norm[:, :-1], (cos[:, :-1], sin[:, :-1]))
