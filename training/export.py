"""Write a trained TinyAgent as a Hugging Face Qwen3.5 checkpoint folder that stock mlx-lm loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

from optiq_runtime.fp8 import SCALE_SUFFIX
from training.arch import SPECIAL_IDS, Shape, TinyAgent, text_config
from training.tokenizer import save_tokenizer

MODEL_NAME = "tiny-agent"
# Qwen's *-FP8 checkpoints: e4m3 matrices, one float32 scale per 128x128 block (``optiq_runtime.fp8`` reads them).
FP8_BLOCK = (128, 128)
FP8_MAX = 448.0  # the largest finite e4m3 value
FP8_CONFIG = {
    "quant_method": "fp8",
    "fmt": "e4m3",
    "activation_scheme": "dynamic",
    "weight_block_size": list(FP8_BLOCK),
}


def checkpoint_tensors(model: TinyAgent) -> dict[str, torch.Tensor]:
    """The state dict under Qwen3.5's key names, in bf16.

    RMSNorm weights are already stored as offsets by transformers' ``Qwen3_5RMSNorm`` (it
    computes ``x * (1 + w)``); the gated norm inside linear attention is a plain scale. Both
    are exported as they are. conv1d keeps the Hugging Face shape ``(channels, 1, kernel)``.
    """
    tensors = {}
    for key, value in model.lm.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to the embeddings
        tensors["model.language_model." + key.removeprefix("model.")] = value
    for key, value in model.mtp.state_dict().items():
        tensors["mtp." + key] = value
    return {k: v.detach().to(torch.bfloat16).contiguous() for k, v in tensors.items()}


def to_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` as e4m3 and its float32 per-block scales: ``fp8 * scale`` is the weight, block by block."""
    rows, cols = weight.shape
    (b0, b1), w = FP8_BLOCK, weight.float()
    padded = torch.nn.functional.pad(w, (0, -cols % b1, 0, -rows % b0))
    blocks = padded.reshape(padded.shape[0] // b0, b0, padded.shape[1] // b1, b1)
    scale = (blocks.abs().amax(dim=(1, 3)) / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    quantized = (blocks / scale[:, None, :, None]).reshape(padded.shape)[:rows, :cols]
    return quantized.to(torch.float8_e4m3fn).contiguous(), scale.contiguous()


def from_fp8(quantized: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight an e4m3 matrix and its per-block scales encode (the inverse of ``to_fp8``)."""
    expanded = scale.repeat_interleave(FP8_BLOCK[0], 0).repeat_interleave(FP8_BLOCK[1], 1)
    return quantized.float() * expanded[: quantized.shape[0], : quantized.shape[1]]


def fp8_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with every matrix but the (tied) embedding in block-scaled fp8, as Qwen's FP8 releases keep them."""
    out = {}
    for key, value in tensors.items():
        if value.ndim == 2 and not key.endswith("embed_tokens.weight"):
            out[key], out[key + SCALE_SUFFIX] = to_fp8(value)
        else:
            out[key] = value
    return out


def config_json(shape: Shape, fp8: bool = False) -> dict:
    config = {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "tie_word_embeddings": True,
        "text_config": text_config(shape),
        "torch_dtype": "bfloat16",
    }
    if fp8:
        config["quantization_config"] = dict(FP8_CONFIG)
    return config


def generation_config() -> dict:
    return {
        "eos_token_id": [SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]],
        "pad_token_id": SPECIAL_IDS["<|endoftext|>"],
        "do_sample": False,
        "temperature": 0.0,
    }


def export(
    model: TinyAgent, shape: Shape, tokenizer: Tokenizer, out: Path, card: str | None = None, fp8: bool = False
) -> Path:
    """Write config, weights, tokenizer files, generation config and (when given) the model card.

    ``fp8``: matrices in block-scaled fp8 (half the bytes of bf16), the format of Qwen's FP8 releases."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = checkpoint_tensors(model)
    save_file(fp8_tensors(tensors) if fp8 else tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config_json(shape, fp8), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(generation_config(), indent=2) + "\n")
    save_tokenizer(tokenizer, out)
    if card is not None:
        (out / "README.md").write_text(card)
    return out


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """An exported checkpoint's tensors under their stored names, fp8 matrices dequantized to float32."""
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
    for key in [k for k in tensors if k.endswith(SCALE_SUFFIX)]:
        weight = key.removesuffix(SCALE_SUFFIX)
        tensors[weight] = from_fp8(tensors[weight], tensors.pop(key))
    return tensors


def load_exported(folder: Path, shape: Shape) -> TinyAgent:
    """The TinyAgent whose exported checkpoint is in ``folder`` (the inverse of ``checkpoint_tensors``)."""
    tensors = read_tensors(folder)
    model = TinyAgent(shape)
    state = model.state_dict()
    for key, value in tensors.items():
        if key.startswith("mtp."):
            name = "mtp." + key.removeprefix("mtp.")
        else:
            name = "lm.model." + key.removeprefix("model.language_model.")
        if name not in state:
            raise ValueError(f"{folder}: unexpected tensor {key}")
        state[name] = value.float()
    state["lm.lm_head.weight"] = state["lm.model.embed_tokens.weight"]
    model.load_state_dict(state)
    return model
