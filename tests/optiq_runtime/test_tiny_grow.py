"""Growing tiny-agent deeper or its attention wider (issue #20): the grown model computes what the trained one did, and runs in optiq."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from optiq_runtime import embedded_base_path  # noqa: E402
from training import build  # noqa: E402
from training.export import load_exported  # noqa: E402
from training.grow import (  # noqa: E402
    SHAPE_FILE,
    grow,
    shape_from_config,
    widen_attention,
    widen_hidden,
    workdir_shape,
)


@pytest.fixture(scope="module")
def shipped():
    shape = shape_from_config(embedded_base_path())
    return load_exported(embedded_base_path(), shape).eval(), shape


def _logits(model, ids):
    with torch.no_grad():
        pre_norm, post_norm, rope = model(ids)
        return model.logits(post_norm), model.logits(model.mtp_hidden(ids, pre_norm, rope))


def test_grown_model_computes_the_trained_models_logits_and_mtp_drafts(shipped):
    model, shape = shipped
    big, big_shape = grow(model, shape, shape.num_hidden_layers + 4, seed=1)
    assert big_shape.num_hidden_layers == shape.num_hidden_layers + 4
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in model.parameters())
    ids = torch.randint(3, shape.vocab_size, (1, 96), generator=torch.Generator().manual_seed(0))
    for small, grown in zip(_logits(model, ids), _logits(big.eval(), ids)):
        assert torch.equal(small, grown)
    # The new layers are real layers, not copies: only their residual writers start at zero.
    new = big.lm.model.layers[shape.num_hidden_layers]
    assert new.mlp.down_proj.weight.abs().sum() == 0
    assert new.mlp.up_proj.weight.abs().sum() > 0


def test_wider_attention_computes_the_trained_models_logits_and_mtp_drafts(shipped):
    model, shape = shipped
    heads, kv = 2 * shape.num_attention_heads, 2 * shape.num_key_value_heads
    big, big_shape = widen_attention(model, shape, heads, kv, seed=1)
    assert (big_shape.num_attention_heads, big_shape.num_key_value_heads) == (heads, kv)
    ids = torch.randint(3, shape.vocab_size, (1, 96), generator=torch.Generator().manual_seed(0))
    for small, grown in zip(_logits(model, ids), _logits(big.eval(), ids)):
        assert torch.equal(small, grown)
    # The new heads are real heads: fresh queries and keys, only the output projection's new columns at zero.
    attention = big.mtp.layers[0].self_attn
    old_width = shape.num_attention_heads * shape.head_dim
    assert attention.o_proj.weight[:, old_width:].abs().sum() == 0
    assert attention.o_proj.weight[:, :old_width].abs().sum() > 0
    assert attention.q_proj.weight[2 * old_width :].abs().sum() > 0


def test_wider_residual_stream_computes_the_trained_models_logits_and_mtp_drafts(shipped):
    """Zero-padded dimensions change each norm's mean square; the rescaled norms undo that up to their epsilon."""
    model, shape = shipped
    hidden, intermediate = 2 * shape.hidden_size, 2 * shape.intermediate_size - 128
    big, big_shape = widen_hidden(model, shape, hidden, intermediate, seed=1)
    assert (big_shape.hidden_size, big_shape.intermediate_size) == (hidden, intermediate)
    ids = torch.randint(3, shape.vocab_size, (1, 96), generator=torch.Generator().manual_seed(0))
    for small, wide in zip(_logits(model, ids), _logits(big.eval(), ids)):
        assert (small - wide).abs().max() < 0.05 * small.abs().max()
        assert (small.argmax(-1) == wide.argmax(-1)).float().mean() >= 0.95  # random tokens: some near-ties
    for norm in big.modules():  # with each epsilon scaled as the mean square was, the logits are the same
        if type(norm).__name__ == "Qwen3_5RMSNorm" and norm.weight.shape[0] == hidden:
            norm.eps *= shape.hidden_size / hidden
    for small, wide in zip(_logits(model, ids), _logits(big.eval(), ids)):
        assert (small - wide).abs().max() < 1e-3
    # The new dimensions are real: fresh readers, and writers at zero only where they would write.
    old = shape.hidden_size
    layer = big.lm.model.layers[0]
    assert big.lm.model.embed_tokens.weight[:, old:].abs().sum() == 0
    assert layer.mlp.down_proj.weight[old:].abs().sum() == 0
    assert layer.mlp.down_proj.weight[:, shape.intermediate_size :].abs().sum() == 0
    assert layer.mlp.up_proj.weight[:, old:].abs().sum() > 0
    assert big.mtp.fc.weight[:, hidden + old :].abs().sum() > 0


def test_wider_residual_stream_refuses_shrinking(shipped):
    model, shape = shipped
    with pytest.raises(ValueError, match="cannot shrink"):
        widen_hidden(model, shape, shape.hidden_size - 64, shape.intermediate_size)


@pytest.mark.parametrize(
    ("scale", "error"),
    [
        ((1, 1, -1, 0), "cannot shrink"),
        ((2, 1, 0, 0), "other key/value heads"),
        ((3, 2, 0, 0), "other key/value heads"),
    ],
)
def test_widen_refuses_shrinking_or_regrouping_the_old_heads(shipped, scale, error):
    """``scale`` = (query factor, kv factor, query offset, kv offset) applied to the shipped head counts."""
    model, shape = shipped
    heads = scale[0] * shape.num_attention_heads + scale[2]
    kv = scale[1] * shape.num_key_value_heads + scale[3]
    with pytest.raises(ValueError, match=error):
        widen_attention(model, shape, heads, kv)


def test_grow_refuses_fewer_layers(shipped):
    model, shape = shipped
    with pytest.raises(ValueError, match="cannot grow"):
        grow(model, shape, shape.num_hidden_layers - 1)


@pytest.mark.parametrize(
    "flags", [["--layers", "8"], ["--heads", "4", "2"], ["--hidden", "256", "512"], ["--no-space-merges"]]
)
def test_build_refuses_changing_a_model_without_init(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "w"), *flags])
    assert exit_info.value.code == 2
    assert f"{flags[0]} needs --init" in capsys.readouterr().err


@pytest.mark.slow
def test_grown_export_loads_in_optiq_with_the_trained_models_tokens(tmp_path):
    """A 0-minute run growing 4 more layers and twice the heads exports a checkpoint that optiq's engine decodes exactly as the shipped one."""
    from optiq_runtime.engine import Engine
    from optiq_runtime.sampling import Sampling

    workdir, out = tmp_path / "w", tmp_path / "out"
    old = shape_from_config(embedded_base_path())
    layers, heads, kv = old.num_hidden_layers + 4, 2 * old.num_attention_heads, 2 * old.num_key_value_heads
    argv = ["--out", str(out), "--workdir", str(workdir), "--minutes", "0", "--no-measure", "--which", "last"]
    grow_flags = ["--layers", str(layers), "--heads", str(heads), str(kv)]
    assert build.main([*argv, "--init", str(embedded_base_path()), *grow_flags]) == 0
    assert workdir_shape(workdir).num_hidden_layers == layers
    assert json.loads((workdir / SHAPE_FILE).read_text())["num_attention_heads"] == heads
    config = json.loads((out / "config.json").read_text())["text_config"]
    assert config["num_hidden_layers"] == layers and config["layer_types"][-1] == "full_attention"
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (heads, kv)
    tokens = []
    for folder in (embedded_base_path(), out):
        engine = Engine.load(folder, mtp="off")
        prompt = engine.tokenizer.apply_chat_template(
            [{"role": "user", "content": "What is 37 * 91? Use Python."}], add_generation_prompt=True, tokenize=True
        )
        tokens.append(engine.generate(list(prompt), Sampling(max_tokens=24)))
    assert len(tokens[0]) > 3 and tokens[0] == tokens[1]
