"""Random Qwen3.5 checkpoints in the Hugging Face layout, written by the tests themselves.

Tests of the loader, quantizer and MTP engine need checkpoints whose drafts are often
rejected and whose configuration varies; real ones cannot be downloaded here. These are
built from mlx-lm's own Qwen3.5 modules with random weights, then saved the way a Hugging
Face Qwen3.5 checkpoint stores them: ``model.language_model.*`` keys, RMSNorm weights as
offsets from 1 (the gated norm inside linear attention excepted), conv1d weights as
``(channels, 1, kernel)``, and the 15 ``mtp.*`` tensors of a one-layer MTP head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.models import qwen3_5

from optiq_runtime.embedded import embedded_base_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
OFFSET_NORMS = (
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    "q_norm.weight",
    "k_norm.weight",
    "pre_fc_norm_embedding.weight",
    "pre_fc_norm_hidden.weight",
)


def small_text_config(vocab_size: int, **overrides) -> dict:
    """A tiny hybrid config: every Linear input a multiple of 64, full attention every 4th layer."""
    config = {
        "model_type": "qwen3_5_text",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "linear_num_key_heads": 2,
        "linear_num_value_heads": 2,
        "linear_key_head_dim": 32,
        "linear_value_head_dim": 32,
        "linear_conv_kernel_dim": 4,
        "full_attention_interval": 4,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab_size,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "mtp_num_hidden_layers": 1,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
    }
    config.update(overrides)
    interval = config["full_attention_interval"]
    config["layer_types"] = [
        "full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(config["num_hidden_layers"])
    ]
    return config


# Real shapes for benchmarks (random weights: time, memory and exactness mean something, acceptance does not).
QWEN35_08B = {
    "hidden_size": 1024,
    "intermediate_size": 3584,
    "num_hidden_layers": 24,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 256,
    "linear_num_key_heads": 16,
    "linear_num_value_heads": 16,
    "linear_key_head_dim": 128,
    "linear_value_head_dim": 128,
    "full_attention_interval": 4,
    "vocab_size": 248320,
}
# A 2B-class shape: Qwen3.5-0.8B's layer pattern at twice the width.
QWEN35_2B_CLASS = {**QWEN35_08B, "hidden_size": 2048, "intermediate_size": 6144}
REAL_SHAPES = {"0.8B": QWEN35_08B, "2B": QWEN35_2B_CLASS}


def write_real_shape_checkpoint(path: Path, shape: str = "0.8B", seed: int = 0) -> Path:
    """A random checkpoint of a real Qwen3.5 text shape (``REAL_SHAPES``) in Hugging Face layout."""
    return write_random_checkpoint(path, seed=seed, **REAL_SHAPES[shape])


def _to_hf(key: str, value: mx.array) -> tuple[str, mx.array]:
    """One mlx-lm parameter under its Hugging Face name and storage convention."""
    key = key.replace("language_model.model.", "model.language_model.")
    if key.endswith("conv1d.weight"):
        value = value.moveaxis(2, 1)
    is_mtp_norm = key.startswith("mtp.") and _is_norm(key)
    if key.endswith(OFFSET_NORMS) or key == "model.language_model.norm.weight" or is_mtp_norm:
        value = value - 1.0
    return key, value


def _mtp_parameters(args: qwen3_5.TextModelArgs) -> dict[str, mx.array]:
    """The 15 tensors of a one-layer MTP head, in mlx-lm's (absolute) norm convention."""
    hidden = args.hidden_size
    layer = qwen3_5.DecoderLayer(args, layer_idx=args.full_attention_interval - 1)
    params = {f"mtp.layers.0.{k}": v for k, v in tree_flatten(layer.parameters())}
    bound = (2 * hidden) ** -0.5
    params["mtp.fc.weight"] = mx.random.uniform(-bound, bound, (hidden, 2 * hidden))
    for name in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"):
        params[f"mtp.{name}.weight"] = mx.ones((hidden,))
    return params


def _jitter_norms(params: dict[str, mx.array], scale: float = 0.1) -> dict[str, mx.array]:
    """Move norm weights off exactly 1 so a missing +1 offset would change the logits."""
    return {k: v + scale * mx.random.normal(v.shape) if _is_norm(k) else v for k, v in params.items()}


def _is_norm(key: str) -> bool:
    """Whether ``key`` is an RMSNorm weight (``...norm.weight``, ``mtp.pre_fc_norm_hidden.weight``)."""
    module, _, leaf = key.rpartition(".")
    return leaf == "weight" and "norm" in module.rpartition(".")[2]


def write_random_checkpoint(
    path: Path, seed: int = 0, mtp: bool = True, tokenizer_from: Path | None = None, **overrides
) -> Path:
    """Write a random Qwen3.5 checkpoint in Hugging Face layout to ``path``; returns ``path``.

    ``overrides`` change the text config (e.g. ``num_hidden_layers=8``); the tokenizer files
    come from ``tokenizer_from`` (default: the embedded tiny-agent).
    """
    source = Path(tokenizer_from or embedded_base_path())
    vocab_size = json.loads((source / "config.json").read_text())["text_config"]["vocab_size"]
    text_config = small_text_config(overrides.pop("vocab_size", vocab_size), **overrides)
    mx.random.seed(seed)
    model = qwen3_5.Model(qwen3_5.ModelArgs(model_type="qwen3_5", text_config=dict(text_config)))
    params = dict(tree_flatten(model.parameters()))
    if mtp:
        params.update(_mtp_parameters(model.language_model.args))
    params = _jitter_norms(params)
    weights = dict(_to_hf(k, v.astype(mx.float32)) for k, v in params.items())
    weights = {k: v.astype(mx.bfloat16) for k, v in weights.items()}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(path / "model.safetensors"), weights, metadata={"format": "pt"})
    if not mtp:
        text_config["mtp_num_hidden_layers"] = 0
    config = {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "tie_word_embeddings": text_config["tie_word_embeddings"],
        "text_config": text_config,
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, path / name)
    return path
