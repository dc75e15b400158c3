"""The shipped tiny-agent checkpoint: layout, weights format, mlx-lm loading, chat template."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from optiq_runtime import embedded_base_path
from optiq_runtime.sampling import Sampling

QWEN35_SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]
MTP_KEYS = {
    "mtp.fc.weight",
    "mtp.pre_fc_norm_embedding.weight",
    "mtp.pre_fc_norm_hidden.weight",
    "mtp.norm.weight",
    *(f"mtp.layers.0.self_attn.{n}.weight" for n in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")),
    *(f"mtp.layers.0.mlp.{n}.weight" for n in ("gate_proj", "up_proj", "down_proj")),
    "mtp.layers.0.input_layernorm.weight",
    "mtp.layers.0.post_attention_layernorm.weight",
}
RUN_PYTHON = {
    "type": "function",
    "function": {
        "name": "run_python",
        "description": "Run Python code.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
}


@pytest.fixture(scope="module")
def folder():
    return embedded_base_path()


@pytest.fixture(scope="module")
def text_config(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen3_5"
    return config["text_config"]


@pytest.fixture(scope="module")
def tensors(folder):
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        return {k: f.get_slice(k) for k in f.keys()}


@pytest.fixture(scope="module")
def loaded(folder):
    """mlx-lm's own Qwen3.5 model and tokenizer, loaded through optiq (which dequantizes an fp8 base first)."""
    from optiq_runtime.load import load_model

    model = load_model(folder, upcast=False)
    return model.model, model.tokenizer


def test_folder_is_package_data_named_tiny_agent(folder):
    assert folder.name == "tiny-agent"
    assert folder.parent.name == "models" and folder.parent.parent.name == "optiq_runtime"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "README.md",
    ):
        assert (folder / name).is_file(), name


def test_at_most_16_mb(folder):
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 16 * 1024 * 1024


def test_config_is_hybrid_qwen35_with_mtp(text_config):
    assert text_config["full_attention_interval"] == 4
    assert text_config["layer_types"] == [
        "full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(text_config["num_hidden_layers"])
    ]
    assert text_config["tie_word_embeddings"] is True
    assert text_config["mtp_num_hidden_layers"] == 1


def test_every_linear_input_dim_is_a_multiple_of_64(text_config, tensors):
    assert text_config["vocab_size"] % 64 == 0 and text_config["hidden_size"] % 64 == 0
    for key, tensor in tensors.items():
        shape = tensor.get_shape()
        if key.endswith("proj.weight") or key.endswith("fc.weight") or "embed_tokens" in key:
            assert shape[-1] % 64 == 0, (key, shape)


def test_weights_use_qwen35_names_in_bf16_or_block_fp8(tensors, text_config, folder):
    names = {k for k in tensors if not k.endswith("_scale_inv")}
    assert {k for k in names if k.startswith("mtp.")} == MTP_KEYS
    assert not any(k.startswith("lm_head") for k in tensors)
    assert all(k.startswith(("model.language_model.", "mtp.")) for k in tensors)
    fp8 = {k for k, t in tensors.items() if t.get_dtype() == "F8_E4M3"}
    assert {k + "_scale_inv" for k in fp8} == set(tensors) - names  # every fp8 matrix has its block scales
    assert {tensors[k].get_dtype() for k in names - fp8} == {"BF16"}
    config = json.loads((folder / "config.json").read_text())
    assert ("quantization_config" in config) == bool(fp8)
    conv = tensors["model.language_model.layers.0.linear_attn.conv1d.weight"].get_shape()
    assert conv[1:] == [1, text_config["linear_conv_kernel_dim"]]


def test_tokenizer_has_qwen35_chat_specials(folder, loaded):
    _, tokenizer = loaded
    vocab = tokenizer.get_vocab()
    assert all(s in vocab for s in QWEN35_SPECIALS)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tool_parser_type"] == "qwen3_coder"
    assert len(vocab) % 64 == 0


def test_mlx_lms_model_generates_what_the_engine_does(folder, loaded):
    import mlx_lm

    from optiq_runtime.engine import Engine

    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, enable_thinking=False, tokenize=False
    )
    text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=8)
    ours = Engine.load(folder, mtp="off").generate(tokenizer.encode(prompt), Sampling(max_tokens=8))
    assert text and text == tokenizer.decode(ours)  # greedy, the same checkpoint: the same answer


def _render(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tools=[RUN_PYTHON], tokenize=False, **kwargs)


def test_template_renders_tools_block_and_empty_think(loaded):
    _, tokenizer = loaded
    text = _render(
        tokenizer,
        [{"role": "user", "content": "What is 37 * 91? Use Python."}],
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert "\n<tools>\n" + json.dumps(RUN_PYTHON) + "\n</tools>" in text
    assert text.endswith(
        "<|im_start|>user\nWhat is 37 * 91? Use Python.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_template_renders_xml_calls_and_grouped_tool_responses(loaded):
    _, tokenizer = loaded
    messages = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "f", "arguments": {"s": "a b", "n": 3, "l": [1, "x"], "b": True}},
                },
                {"type": "function", "function": {"name": "g", "arguments": '{"s": "line\\n\\"q\\"", "n": 2.5}'}},
            ],
        },
        {"role": "tool", "content": "one"},
        {"role": "tool", "content": "two"},
    ]
    text = _render(tokenizer, messages)
    assert (
        "<tool_call>\n<function=f>\n<parameter=s>\na b\n</parameter>\n<parameter=n>\n3\n</parameter>\n"
        '<parameter=l>\n[1, "x"]\n</parameter>\n<parameter=b>\ntrue\n</parameter>\n</function>\n</tool_call>\n'
        '<tool_call>\n<function=g>\n<parameter=s>\nline\n"q"\n</parameter>\n<parameter=n>\n2.5\n</parameter>\n'
        "</function>\n</tool_call><|im_end|>\n"
    ) in text
    assert text.endswith(
        "<|im_start|>user\n<tool_response>\none\n</tool_response>\n<tool_response>\ntwo\n</tool_response><|im_end|>\n"
    )
