"""Every module's KL sensitivity from one backward pass per calibration batch.

Per batch the model runs twice: as the float32 reference, then as if every target module were at
the low format, each module's output ``W x`` plus its own quantization error ``(Q(W) - W) x``
scaled by a scalar ``s_m = 1``. The gradient of the batch's summed token KL with respect to each
``s_m`` is the first-order change in KL when that module's error is taken away with every other
module quantized (mlx-lm's ``dynamic_quant`` estimate, here taken from activations, never from
weight gradients, so no second copy of the weights exists). KL is quadratic about the reference,
``KL ~ 1/2 d'Hd``, and its gradient along a module's own error is ``d_m'H d ~ 2 x`` that module's
own KL (plus its interaction with the others), so half of it is recorded as the module's KL at the
low format; other formats are scaled by weight-error ratios as before. The cost is linear in depth:
one reference forward, one forward with the error terms, one backward.

The head (the full-vocabulary logits) is one custom function that streams over vocabulary chunks
with running log-sum-exps and computes its own gradient in the same pass: neither the reference's
nor the model's logits are ever held for more than one chunk.

With an MTP head (``mtp_weight`` > 0) the objective also holds the KL of the head's drafts: at
every position ``t`` the head's distribution over token ``t + 2`` from the model's last hidden
state and the embedding of token ``t + 1``, against the same from the reference's, weighted by
``mtp_weight``. The head itself runs unquantized on both sides: what it adds is the weight of the
modules its drafts depend on (the last blocks' output, the embedding, the shared output head), so
the allocation keeps the bf16 model's acceptance at the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from optiq_runtime.allocate import Width
from optiq_runtime.errors import BadInputError
from optiq_runtime.forward import Stack, fast_forward
from optiq_runtime.progress import Progress, ProgressCallback
from optiq_runtime.sensitivity import Sensitivity, Target, qdq, weight_errors

# Bytes the head's live chunk of logits (about eight [tokens, chunk] float32 arrays) may take.
HEAD_BUDGET_BYTES = 128 * 1024 * 1024
# Memory one batch's block inputs plus one block's backward pass may take; batches are sized to it.
ACTIVATION_BUDGET_BYTES = 768 * 1024 * 1024
# Floats one block's backward keeps per token per unit of Linear width (inputs + outputs): ~0.35 MB a
# token for a block of Qwen3.5-0.8B's shape, measured.
ACTIVATION_FLOATS_PER_WIDTH = 3
# Progress units of each step, about in proportion to its time: a block's reference forward, its
# forward with the errors (quantizing its weights), its backward (both again, plus the vjp); a head chunk.
REFERENCE_UNITS, ERROR_UNITS, BACKWARD_UNITS, HEAD_UNITS = 1, 2, 3, 1
CACHE_LIMIT_BYTES = 256 * 1024 * 1024  # MLX's cache of freed buffers while measuring
VERIFY_TOKENS = 16  # tokens the block-by-block cut is checked on against the model's own forward
DRAFT_KL_WEIGHT = 1.0  # the MTP head's drafts' KL beside the model's own in the objective (build default)


class WithError(nn.Module):
    """A Linear whose output may carry its own quantization error, scaled by ``scale`` (None: exact)."""

    def __init__(self, inner: nn.Module, width: Width):
        super().__init__()
        self.inner = inner
        self.width = width
        self.scale = None

    def __call__(self, x: mx.array) -> mx.array:
        y = self.inner(x)
        if self.scale is None:
            return y
        weight = self.inner.weight
        error = qdq(weight, self.width.bits, self.width.group_size) - weight
        return y + self.scale * mx.stop_gradient(x @ error.T)


class EmbeddingWithError(nn.Module):
    """An Embedding whose looked-up rows may carry their quantization error (groups run along a row)."""

    def __init__(self, inner: nn.Module, width: Width):
        super().__init__()
        self.inner = inner
        self.width = width
        self.scale = None

    def __call__(self, tokens: mx.array) -> mx.array:
        rows = self.inner(tokens)
        if self.scale is None:
            return rows
        error = qdq(rows, self.width.bits, self.width.group_size) - rows
        return rows + self.scale * mx.stop_gradient(error)

    def as_linear(self, x: mx.array) -> mx.array:
        """The tied head with its error (whole-vocabulary: ``head_kl`` is the memory-bounded way)."""
        logits = self.inner.as_linear(x)
        if self.scale is None:
            return logits
        weight = self.inner.weight
        return logits + self.scale * (x @ (qdq(weight, self.width.bits, self.width.group_size) - weight).T)


def _online(state: dict, name: str, logits: mx.array, sums: dict[str, mx.array], products: dict[str, mx.array]) -> None:
    """Fold one vocabulary chunk into running sums of ``exp(logits)``: plain, times each of ``sums``
    (``[tokens, chunk]``) and matrix products with each of ``products`` (``[chunk, hidden]``)."""
    old = state.get(name)
    top = logits.max(axis=-1, keepdims=True)
    top = top if old is None else mx.maximum(old["max"], top)
    e = mx.exp(logits - top)
    fresh = {"max": top, "sum": e.sum(axis=-1, keepdims=True)}
    fresh.update({key: (e * value).sum(axis=-1, keepdims=True) for key, value in sums.items()})
    fresh.update({key: e @ value for key, value in products.items()})
    if old is not None:
        factor = mx.exp(old["max"] - top)
        fresh = {k: v if k == "max" else v + factor * old[k] for k, v in fresh.items()}
    state[name] = fresh


def vocab_chunk(tokens: int) -> int:
    """Vocabulary rows per head chunk for a batch of ``tokens``."""
    return max(256, HEAD_BUDGET_BYTES // (8 * 4 * tokens))


def _nothing(units: int = 1) -> None:
    pass


def head_statistics(
    weight: mx.array, width: Width, reference: mx.array, normed: mx.array, tick: Callable[[int], None] = _nothing
) -> tuple[float, mx.array, float]:
    """(summed token KL, d(KL)/d(normed), d(KL)/d(head scale)) at scale 1, chunk by chunk over the vocabulary.

    ``weight`` is the head's float32 ``[vocab, hidden]`` matrix, ``reference`` and ``normed`` the
    reference's and the model's normed final hidden states ``[tokens, hidden]``; the model's logits
    are ``normed @ Q(W)'``. Every chunk is evaluated before the next, so one chunk of logits is live.
    """
    state: dict = {}
    chunk = vocab_chunk(normed.shape[0])
    for start in range(0, weight.shape[0], chunk):
        exact = weight[start : start + chunk]
        quantized = qdq(exact, width.bits, width.group_size)
        ref_logits = reference @ exact.T
        logits = normed @ quantized.T
        error = logits - normed @ exact.T
        _online(state, "ref", ref_logits, {"spread": logits - ref_logits, "error": error}, {"rows": quantized})
        _online(state, "model", logits, {"error": error}, {"rows": quantized})
        mx.eval(state)
        tick(HEAD_UNITS)
    ref, model = state["ref"], state["model"]
    ref_lse = ref["max"] + mx.log(ref["sum"])
    model_lse = model["max"] + mx.log(model["sum"])
    kl = (model_lse - ref_lse - ref["spread"] / ref["sum"]).sum()
    grad_normed = model["rows"] / model["sum"] - ref["rows"] / ref["sum"]
    grad_scale = (model["error"] / model["sum"] - ref["error"] / ref["sum"]).sum()
    mx.eval(kl, grad_normed, grad_scale)
    return kl.item(), grad_normed, grad_scale.item()


class ErrorInjector:
    """Installs error-carrying wrappers on a model's targets for the duration of a ``with`` block."""

    def __init__(self, model: nn.Module, targets: list[Target], width: Width):
        modules = dict(tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module))
        self.model = model
        self.originals = {t.path: modules[t.path] for t in targets}
        self.wrappers = {
            path: (EmbeddingWithError if isinstance(m, nn.Embedding) else WithError)(m, width)
            for path, m in self.originals.items()
        }

    @property
    def head_path(self) -> str:
        """The target that computes the logits: ``lm_head``, else the tied embedding."""
        paths = list(self.originals)
        return next((p for p in paths if p.endswith("lm_head")), None) or next(
            p for p, m in self.originals.items() if isinstance(m, nn.Embedding)
        )

    def __enter__(self) -> ErrorInjector:
        self.model.update_modules(tree_unflatten(list(self.wrappers.items())))
        return self

    def __exit__(self, *exc) -> None:
        self.model.update_modules(tree_unflatten(list(self.originals.items())))

    def set(self, scales: dict[str, mx.array] | None) -> None:
        """Scale every wrapper's error (None: none carries it)."""
        for path, wrapper in self.wrappers.items():
            wrapper.scale = None if scales is None else scales[path]

    def update(self, scales: dict[str, mx.array]) -> None:
        """Scale only the named wrappers' errors."""
        for path, scale in scales.items():
            self.wrappers[path].scale = scale


def _flat(x: mx.array) -> mx.array:
    return x.reshape(-1, x.shape[-1])


def steps_per_batch(stack: Stack, vocab: int, tokens: int, heads: int = 1) -> int:
    """Progress units of one batch: each block's three passes, each output head's chunks (the model's, the MTP
    head's), and saving the state."""
    blocks = (REFERENCE_UNITS + ERROR_UNITS + BACKWARD_UNITS) * stack.blocks
    return blocks + heads * HEAD_UNITS * -(-vocab // vocab_chunk(tokens)) + 1


@dataclass
class DraftObjective:
    """The MTP head's drafts in the objective: the head (unquantized) and the weight of its KL beside the model's."""

    head: nn.Module
    weight: float

    def states(self, stack: Stack, tokens: mx.array, hidden: mx.array) -> mx.array:
        """The head's normed outputs ``[rows * (T - 1), D]``: position ``t`` from ``hidden[t]`` and token ``t + 1``."""
        out = self.head(stack.embed(tokens[:, 1:]), hidden[:, :-1], None)
        return _flat(self.head.norm(out))


def draft_scores(
    stack: Stack,
    injector: ErrorInjector,
    width: Width,
    objective: DraftObjective,
    tokens: mx.array,
    reference_hidden: mx.array,
    hidden: mx.array,
    tick: Callable[[int], None] = _nothing,
) -> tuple[float, mx.array, dict[str, float]]:
    """The drafts' summed KL, its gradient w.r.t. the last block's output ``hidden``, and w.r.t. the scales of the
    output head and the embedding (the paths the head reads besides ``hidden``); all times the objective's weight."""
    injector.set(None)
    reference = objective.states(stack, tokens, reference_hidden)
    mx.eval(reference)
    ones = {path: mx.array(1.0) for path in injector.wrappers}
    injector.set(ones)
    embed_paths = [p for p, m in injector.originals.items() if isinstance(m, nn.Embedding)]

    def states(h: mx.array, *scales: mx.array) -> mx.array:
        injector.update(dict(zip(embed_paths, scales)))
        return objective.states(stack, tokens, h)

    model = states(hidden, *(ones[p] for p in embed_paths))
    mx.eval(model)
    kl, grad_states, head_grad = head_statistics(
        injector.originals[injector.head_path].weight, width, reference, model, tick
    )
    _, grads = mx.vjp(states, [hidden, *(ones[p] for p in embed_paths)], [grad_states])
    mx.eval(grads)
    weight = objective.weight
    scores = {injector.head_path: weight * head_grad}
    for path, value in zip(embed_paths, grads[1:]):
        scores[path] = scores.get(path, 0.0) + weight * value.item()
    return weight * kl, weight * grads[0], scores


def batch_scores(
    stack: Stack,
    injector: ErrorInjector,
    width: Width,
    tokens: mx.array,
    tick: Callable[[int], None] = _nothing,
    drafts: DraftObjective | None = None,
) -> tuple[dict[str, float], float, float]:
    """d(objective)/d(scale) for every target over one batch, the summed token KL of the all-low model, and its
    drafts' weighted KL (0 without ``drafts``). The objective is the summed token KL, plus the drafts' weighted KL.

    The backward pass runs block by block from the block inputs kept by the forward pass (each
    block's forward is run again inside its vjp), so only one block's activations are live.
    """
    injector.set(None)
    hidden = stack.embed(tokens)
    for index in range(stack.blocks):
        hidden = stack.block(index, hidden)
        mx.eval(hidden)
        tick(REFERENCE_UNITS)
    reference = _flat(stack.inner.norm(hidden))
    ones = {path: mx.array(1.0) for path in injector.wrappers}
    injector.set(ones)
    inputs = [stack.embed(tokens)]
    for index in range(stack.blocks):
        inputs.append(stack.block(index, inputs[-1]))
        mx.eval(inputs[-1])
        tick(ERROR_UNITS)

    def final(h: mx.array) -> mx.array:
        return _flat(stack.inner.norm(h))

    normed = final(inputs[-1])
    mx.eval(normed)
    head_path = injector.head_path
    kl, grad_normed, head_grad = head_statistics(injector.originals[head_path].weight, width, reference, normed, tick)
    _, (grad,) = mx.vjp(final, [inputs[-1]], [grad_normed])
    scores = {head_path: head_grad}
    draft_kl = 0.0
    if drafts is not None:
        draft_kl, draft_grad, extra = draft_scores(stack, injector, width, drafts, tokens, hidden, inputs[-1], tick)
        grad = grad + draft_grad
        for path, value in extra.items():
            scores[path] = scores.get(path, 0.0) + value
        injector.set(ones)
    by_block = _paths_by_block(injector, stack.blocks)
    for index in range(stack.blocks - 1, -1, -1):
        grad = _block_backward(stack, injector, index, inputs[index], grad, by_block.get(index, []), scores)
        tick(BACKWARD_UNITS)
    embed_paths = by_block.get(-1, [])
    if embed_paths:

        def embed(*scales):
            injector.update(dict(zip(embed_paths, scales)))
            return stack.embed(tokens)

        _, grads = mx.vjp(embed, [ones[p] for p in embed_paths], [grad])
        mx.eval(grads)
        for path, value in zip(embed_paths, grads):
            scores[path] = scores.get(path, 0.0) + value.item()
    injector.set(None)
    return scores, kl, draft_kl


def _block_backward(
    stack: Stack,
    injector: ErrorInjector,
    index: int,
    hidden: mx.array,
    grad: mx.array,
    paths: list[str],
    scores: dict[str, float],
) -> mx.array:
    """Block ``index``'s vjp at its input ``hidden``: adds its modules' scores, returns d/d(input)."""

    def block(h, *scales):
        injector.update(dict(zip(paths, scales)))
        return stack.block(index, h)

    _, grads = mx.vjp(block, [hidden, *(mx.array(1.0) for _ in paths)], [grad])
    mx.eval(grads)
    for path, value in zip(paths, grads[1:]):
        scores[path] = scores.get(path, 0.0) + value.item()
    return grads[0]


def _paths_by_block(injector: ErrorInjector, blocks: int) -> dict[int, list[str]]:
    """The wrapped targets of each block (-1: before the first, the embedding); the head is scored apart."""
    from optiq_runtime.sensitivity import _block_of

    found: dict[int, list[str]] = {}
    for path in injector.wrappers:
        if path != injector.head_path or isinstance(injector.originals[path], nn.Embedding):
            found.setdefault(_block_of(path, blocks), []).append(path)
    return found


def tokens_per_batch(model: nn.Module, seq_len: int, budget_bytes: int = ACTIVATION_BUDGET_BYTES) -> int:
    """Calibration tokens per batch (whole rows) whose backward pass stays within ``budget_bytes``."""
    per_token = activation_bytes_per_token(model)
    return seq_len * max(1, budget_bytes // (per_token * seq_len))


def activation_bytes_per_token(model: nn.Module) -> int:
    """What one token takes during a batch: its input to every block, and one block's backward pass
    (a multiple of the block's Linear inputs and outputs)."""
    text = getattr(model, "language_model", model)
    blocks = len(text.model.layers)
    widths = sum(
        sum(m.weight.shape)
        for layer in text.model.layers
        for _, m in tree_flatten(layer.leaf_modules(), is_leaf=nn.Module.is_module)
        if isinstance(m, nn.Linear)
    )
    hidden = text.model.embed_tokens.weight.shape[-1]
    return 4 * (hidden * (blocks + 1) + ACTIVATION_FLOATS_PER_WIDTH * widths // blocks)


def _weight_errors(
    model: nn.Module, state: Sensitivity, widths: tuple[Width, ...], progress: ProgressCallback | None
) -> None:
    """Fill in each target's squared weight error at ``widths`` (from its bf16 values)."""
    modules = dict(tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module))
    todo = [
        path
        for path, layer in state.layers.items()
        if not layer.get("fixed") and any(w.label not in layer.get("mse", {}) for w in widths)
    ]
    bar = Progress("weight errors", len(todo), progress)
    for path in todo:
        state.layers[path].setdefault("mse", {}).update(weight_errors(modules[path].weight, widths))
        bar.advance()


def measure(
    model: nn.Module,
    rows: mx.array,
    state: Sensitivity,
    widths: tuple[Width, ...],
    state_file: Path | None,
    progress: ProgressCallback | None = None,
    drafts: DraftObjective | None = None,
) -> Sensitivity:
    """Weight errors at ``widths``, then the KL gradient over the batches not yet done, saving after each.

    ``drafts`` adds the MTP head's drafts to the objective (``state.mtp_weight`` must say so, for the fingerprint).
    """
    previous_limit = mx.set_cache_limit(CACHE_LIMIT_BYTES)  # freed buffers count as resident memory
    try:
        return _measure(model, rows, state, widths, state_file, progress, drafts)
    finally:
        mx.set_cache_limit(previous_limit)
        mx.clear_cache()


def _measure(
    model: nn.Module,
    rows: mx.array,
    state: Sensitivity,
    widths: tuple[Width, ...],
    state_file: Path | None,
    progress: ProgressCallback | None,
    drafts: DraftObjective | None,
) -> Sensitivity:
    mx.clear_cache()
    _weight_errors(model, state, widths, progress)
    stack = fast_forward(model, rows[:1, :VERIFY_TOKENS])
    if not stack.exact:
        raise BadInputError(
            f"{type(model).__name__}: running it block by block does not reproduce its logits, "
            "so its sensitivity cannot be measured; use --method uniform"
        )
    per_batch = max(1, state.batch_tokens // rows.shape[1])
    targets = [t for t in state.targets() if not t.fixed]
    with ErrorInjector(model, targets, state.low) as injector:
        steps = steps_per_batch(
            stack,
            injector.originals[injector.head_path].weight.shape[0],
            per_batch * rows.shape[1],
            1 + (drafts is not None),
        )
        bar = Progress("sensitivity", state.batches * steps, progress, done=state.batches_done * steps)
        for index in range(state.batches_done, state.batches):
            scores, kl, draft_kl = batch_scores(
                stack, injector, state.low, rows[index * per_batch : (index + 1) * per_batch], bar.advance, drafts
            )
            for path, score in scores.items():  # only whole batches count, so a resumed run adds up right
                sums = state.layers[path]["kl_sum"]
                sums[state.low.label] = sums.get(state.low.label, 0.0) + score / 2
            state.all_low_kl_sum += kl
            state.all_low_draft_kl_sum += draft_kl
            state.batches_done += 1
            state.tokens_done += rows[index * per_batch : (index + 1) * per_batch].size
            if state_file is not None:
                state.save(state_file)
            bar.advance()
    return state
