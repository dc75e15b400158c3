"""Write a trained TinyAgent as a Hugging Face Qwen3.5 checkpoint folder that stock mlx-lm loads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

from training.arch import SPECIAL_IDS, Shape, TinyAgent, text_config
from training.tokenizer import save_tokenizer

MODEL_NAME = "tiny-agent"


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


def config_json(shape: Shape) -> dict:
    return {
        "architectures": ["Qwen3_5ForConditionalGeneration"],
        "model_type": "qwen3_5",
        "tie_word_embeddings": True,
        "text_config": text_config(shape),
        "torch_dtype": "bfloat16",
    }


def generation_config() -> dict:
    return {
        "eos_token_id": [SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]],
        "pad_token_id": SPECIAL_IDS["<|endoftext|>"],
        "do_sample": False,
        "temperature": 0.0,
    }


def export(model: TinyAgent, shape: Shape, tokenizer: Tokenizer, out: Path, card: str | None = None) -> Path:
    """Write config, weights, tokenizer files, generation config and (when given) the model card."""
    out.mkdir(parents=True, exist_ok=True)
    save_file(checkpoint_tensors(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config_json(shape), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(generation_config(), indent=2) + "\n")
    save_tokenizer(tokenizer, out)
    if card is not None:
        (out / "README.md").write_text(card)
    return out


def load_exported(folder: Path, shape: Shape) -> TinyAgent:
    """The TinyAgent whose exported checkpoint is in ``folder`` (the inverse of ``checkpoint_tensors``)."""
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "model.safetensors"))
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
