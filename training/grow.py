"""A bigger tiny-agent from a trained one: layers appended, attention heads added (issue #20).

Training a bigger shape from scratch costs CPU days; growing keeps what the trained model knows.
Deeper: the grown model has the same layer types at the old positions (``full_attention_interval``
is unchanged) and new layers after them whose output projections are zero. Wider attention: every
full-attention layer (the MTP head's too) gets new query heads and key/value heads after the old
ones, the old query heads still reading the old key/value heads, and the output projection's new
columns are zero. Wider residual stream and MLPs: new dimensions start at zero and the norms are
rescaled for them. Either way nothing new writes to the residual stream at first: the grown model
computes what the old one did (to the norms' epsilon, when the stream widens), and training then
puts the new parts to use.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from training.arch import Shape, TinyAgent, text_config

SHAPE_FILE = "shape.json"
# The projections that write a layer's output into the residual stream.
RESIDUAL_WRITERS = ("linear_attn.out_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight")


def deeper(shape: Shape, layers: int) -> Shape:
    """``shape`` with ``layers`` layers; the old layers keep their types at their positions."""
    if layers < shape.num_hidden_layers:
        raise ValueError(f"cannot grow {shape.num_hidden_layers} layers to {layers}")
    return dataclasses.replace(shape, num_hidden_layers=layers)


def grow(model: TinyAgent, shape: Shape, layers: int, seed: int = 0) -> tuple[TinyAgent, Shape]:
    """``model`` (of ``shape``) with layers appended up to ``layers``; it computes the same logits."""
    big_shape = deeper(shape, layers)
    old_types = text_config(shape)["layer_types"]
    if text_config(big_shape)["layer_types"][: len(old_types)] != old_types:
        raise ValueError("the grown shape would change the old layers' types")
    big = TinyAgent(big_shape, seed=seed)
    state = big.state_dict()
    for key, value in model.state_dict().items():
        state[key] = value.clone()
    for index in range(shape.num_hidden_layers, layers):
        for writer in RESIDUAL_WRITERS:
            key = f"lm.model.layers.{index}.{writer}"
            if key in state:
                state[key].zero_()
    state["lm.lm_head.weight"] = state["lm.model.embed_tokens.weight"]
    big.load_state_dict(state)
    return big, big_shape


def wider(shape: Shape, heads: int, kv_heads: int) -> Shape:
    """``shape`` with ``heads`` query and ``kv_heads`` key/value heads per attention layer."""
    old_heads, old_kv = shape.num_attention_heads, shape.num_key_value_heads
    if heads < old_heads or kv_heads < old_kv:
        raise ValueError(f"cannot shrink attention from {old_heads}/{old_kv} heads to {heads}/{kv_heads}")
    if heads % kv_heads or heads // kv_heads != old_heads // old_kv:
        # A query head h reads key/value head h // (heads / kv_heads); the old heads must keep theirs.
        raise ValueError(f"{heads}/{kv_heads} heads would move the old query heads to other key/value heads")
    return dataclasses.replace(shape, num_attention_heads=heads, num_key_value_heads=kv_heads)


def widen_attention(
    model: TinyAgent, shape: Shape, heads: int, kv_heads: int, seed: int = 0
) -> tuple[TinyAgent, Shape]:
    """``model`` with ``heads``/``kv_heads`` attention heads; it computes the same logits."""
    big_shape = wider(shape, heads, kv_heads)
    big = TinyAgent(big_shape, seed=seed)
    state, old = big.state_dict(), model.state_dict()
    for key, value in old.items():
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
        elif key.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            target[: value.shape[0]] = value  # old heads first; new heads keep their fresh init
        elif key.endswith("o_proj.weight"):
            target.zero_()
            target[:, : value.shape[1]] = value
        else:
            raise ValueError(f"unexpected shape change in {key}: {tuple(value.shape)} -> {tuple(target.shape)}")
    state["lm.lm_head.weight"] = state["lm.model.embed_tokens.weight"]
    big.load_state_dict(state)
    return big, big_shape


def broader(shape: Shape, hidden: int, intermediate: int) -> Shape:
    """``shape`` with a ``hidden``-wide residual stream and ``intermediate``-wide MLPs."""
    if hidden < shape.hidden_size or intermediate < shape.intermediate_size:
        raise ValueError(
            f"cannot shrink hidden/intermediate {shape.hidden_size}/{shape.intermediate_size} to {hidden}/{intermediate}"
        )
    return dataclasses.replace(shape, hidden_size=hidden, intermediate_size=intermediate)


# The modules that write into the residual stream, the MTP head's input projection among them.
_HIDDEN_WRITERS = RESIDUAL_WRITERS + ("mtp.fc.weight",)


def widen_hidden(
    model: TinyAgent, shape: Shape, hidden: int, intermediate: int, seed: int = 0
) -> tuple[TinyAgent, Shape]:
    """``model`` with a wider residual stream and MLPs; it computes the same logits.

    The old values sit in the first rows and columns; the new residual dimensions start at zero
    (zero embedding columns, zero rows in every projection that writes to the stream) and the new
    MLP units write nothing (zero columns in ``down_proj``). Zeros in the stream shrink each RMS by
    ``sqrt(old / new)``, so every hidden-size norm's scale (``1 + weight``) shrinks by as much. The
    new input columns keep their fresh init: they read zeros now and pass gradient to the new dims.
    """
    big_shape = broader(shape, hidden, intermediate)
    big = TinyAgent(big_shape, seed=seed)
    state, old_hidden = big.state_dict(), shape.hidden_size
    shrink = (old_hidden / hidden) ** 0.5
    for key, value in model.state_dict().items():
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
        elif value.ndim == 1:  # a norm over the residual stream: weights are offsets from 1
            target.fill_(shrink - 1.0)
            target[:old_hidden] = (1.0 + value) * shrink - 1.0
        elif key == "mtp.fc.weight":  # reads [embedding norm, hidden norm]: two blocks of hidden
            target[:old_hidden, :old_hidden] = value[:, :old_hidden]
            target[:old_hidden, hidden : hidden + old_hidden] = value[:, old_hidden:]
        else:
            target[: value.shape[0], : value.shape[1]] = value
        if key.endswith(_HIDDEN_WRITERS):
            target[old_hidden:] = 0.0
        if key.endswith("mlp.down_proj.weight"):
            target[:, value.shape[1] :] = 0.0
        if key == "lm.model.embed_tokens.weight":
            target[:, old_hidden:] = 0.0
    state["lm.lm_head.weight"] = state["lm.model.embed_tokens.weight"]
    big.load_state_dict(state)
    return big, big_shape


def shape_from_config(folder: Path) -> Shape:
    """The Shape of an exported checkpoint, read from its ``config.json``."""
    config = json.loads((folder / "config.json").read_text())["text_config"]
    names = {f.name for f in dataclasses.fields(Shape)}
    return Shape(**{key: value for key, value in config.items() if key in names})


def save_shape(workdir: Path, shape: Shape) -> None:
    (workdir / SHAPE_FILE).write_text(json.dumps(dataclasses.asdict(shape), indent=2) + "\n")


def workdir_shape(workdir: Path) -> Shape | None:
    """The shape a workdir's checkpoints have, when it recorded one (older workdirs: the default)."""
    path = workdir / SHAPE_FILE
    return Shape(**json.loads(path.read_text())) if path.exists() else None
