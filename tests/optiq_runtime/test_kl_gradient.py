"""The KL-gradient sensitivity on a random checkpoint in the real Hugging Face layout: the all-low KL it
reports is the quantized model's, its per-module scores are the derivatives of that KL, and it never
holds the full-vocabulary logits."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from checkpoints import write_random_checkpoint
from mlx.utils import tree_flatten

from optiq_runtime import kl_gradient
from optiq_runtime.allocate import Width
from optiq_runtime.backbone import text_args
from optiq_runtime.forward import fast_forward, lower_inverse
from optiq_runtime.kl import Reference
from optiq_runtime.kl_gradient import DraftObjective, ErrorInjector, batch_scores, tokens_per_batch
from optiq_runtime.load import load_network
from optiq_runtime.mtp import load_mtp_head
from optiq_runtime.sensitivity import find_targets, qdq

LOW = Width(4, 64)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("base"), seed=11, num_hidden_layers=4, vocab_size=3000)


@pytest.fixture(scope="module")
def setup(base):
    model, _ = load_network(base, upcast=True)
    rows = mx.array(np.random.default_rng(0).integers(0, 3000, (2, 48)), dtype=mx.int32)
    stack = fast_forward(model, rows[:1, :16])
    targets = [t for t in find_targets(model, 64) if not t.fixed]
    return model, stack, targets, rows


def _modules(model):
    return dict(tree_flatten(model.leaf_modules(), is_leaf=nn.Module.is_module))


def test_targets_carry_the_real_tensor_names(setup):
    model, stack, targets, _ = setup
    paths = {t.path for t in targets}
    assert stack.exact and "language_model.model.embed_tokens" in paths
    assert "language_model.model.layers.0.linear_attn.in_proj_qkv" in paths
    assert (
        "language_model.model.layers.3.self_attn.q_proj" in paths
        and "language_model.model.layers.2.mlp.down_proj" in paths
    )


def test_all_low_kl_is_the_quantized_models_kl(setup, monkeypatch):
    model, stack, targets, rows = setup
    monkeypatch.setattr(kl_gradient, "vocab_chunk", lambda tokens: 1000)  # three chunks: the running lse is exercised
    with ErrorInjector(model, targets, LOW) as injector:
        _, all_low, drafts_kl = batch_scores(stack, injector, LOW, rows)
    assert drafts_kl == 0.0
    reference = Reference.from_logits(stack(rows))
    modules = _modules(model)
    originals = {t.path: modules[t.path].weight for t in targets}
    try:
        for t in targets:
            modules[t.path].weight = qdq(originals[t.path], LOW.bits, LOW.group_size)
        quantized = reference.kl(stack(rows)).sum().item()
    finally:
        for t in targets:
            modules[t.path].weight = originals[t.path]
    assert all_low == pytest.approx(quantized, rel=1e-3)


def test_scores_are_derivatives_of_the_kl(setup, monkeypatch):
    """Each score is d(KL)/d(scale) at the all-low model: checked by central differences of the KL."""
    model, stack, targets, rows = setup
    monkeypatch.setattr(kl_gradient, "vocab_chunk", lambda tokens: 1000)
    checked = [
        "language_model.model.embed_tokens",
        "language_model.model.layers.0.linear_attn.in_proj_qkv",
        "language_model.model.layers.1.linear_attn.out_proj",
        "language_model.model.layers.3.self_attn.v_proj",
        "language_model.model.layers.2.mlp.down_proj",
    ]
    with ErrorInjector(model, targets, LOW) as injector:
        scores, _, _ = batch_scores(stack, injector, LOW, rows)
        reference = Reference.from_logits(stack(rows))

        def kl_at(path: str, scale: float) -> float:
            scales = {p: mx.array(scale if p == path else 1.0) for p in injector.wrappers}
            injector.set(scales)
            value = reference.kl(stack(rows)).sum().item()
            injector.set(None)
            return value

        for path in checked:
            step = 0.05
            numeric = (kl_at(path, 1 + step) - kl_at(path, 1 - step)) / (2 * step)
            # The backward pass runs through the float weights (error terms carry no gradient of their own),
            # so a score is the derivative up to what the other modules' errors do to the Jacobian.
            assert scores[path] == pytest.approx(numeric, rel=0.15, abs=1e-3 * abs(scores[checked[0]])), path
    assert scores["language_model.model.embed_tokens"] > 0


def _project(stack, states):
    """The output head over states (with its error when the injector set one)."""
    return stack.text.lm_head(states) if "lm_head" in stack.text else stack.inner.embed_tokens.as_linear(states)


def test_the_drafts_term_adds_the_heads_kl_and_its_derivatives(setup, base, monkeypatch):
    """With the MTP head in the objective, the scores are the derivatives of the model's KL plus the weighted KL
    of the head's next-next-token distribution (from the model's states against the reference's)."""
    model, stack, targets, rows = setup
    monkeypatch.setattr(kl_gradient, "vocab_chunk", lambda tokens: 1000)
    drafts = DraftObjective(load_mtp_head(base, text_args(model), upcast=True), 3.0)
    checked = [
        "language_model.model.embed_tokens",
        "language_model.model.layers.3.mlp.down_proj",
        "language_model.model.layers.0.linear_attn.in_proj_qkv",
    ]
    with ErrorInjector(model, targets, LOW) as injector:
        scores, kl, drafts_kl = batch_scores(stack, injector, LOW, rows, drafts=drafts)
        without, kl_alone, _ = batch_scores(stack, injector, LOW, rows)
        hidden = stack.backbone(stack.embed(rows))
        main = Reference.from_logits(stack.head(hidden))
        head = Reference.from_logits(_project(stack, drafts.states(stack, rows, hidden)))

        def objective(path: str, scale: float) -> tuple[float, float]:
            injector.set({p: mx.array(scale if p == path else 1.0) for p in injector.wrappers})
            hidden = stack.backbone(stack.embed(rows))
            value = (
                main.kl(stack.head(hidden)).sum().item(),
                head.kl(_project(stack, drafts.states(stack, rows, hidden))).sum().item(),
            )
            injector.set(None)
            return value

        _, all_low_drafts = objective("", 1.0)
        assert kl == pytest.approx(kl_alone, rel=1e-6)
        assert drafts_kl == pytest.approx(3.0 * all_low_drafts, rel=1e-3) and drafts_kl > 0
        step = 0.05
        for path in checked:
            (up, up_drafts), (down, down_drafts) = objective(path, 1 + step), objective(path, 1 - step)
            numeric = (up - down + 3.0 * (up_drafts - down_drafts)) / (2 * step)
            assert scores[path] == pytest.approx(numeric, rel=0.15, abs=1e-3 * abs(scores[checked[0]])), path
            assert scores[path] != pytest.approx(without[path], rel=1e-3), path  # the head's drafts weigh in


def test_the_lower_triangular_inverse_has_the_right_gradient():
    mx.random.seed(0)
    matrix = mx.tril(mx.random.normal((3, 8, 8)) * 0.3, -1) + mx.eye(8)
    weights = mx.tril(mx.random.normal((3, 8, 8)))

    def loss(m):
        return (lower_inverse(m) * weights).sum()

    grad = mx.tril(mx.grad(loss)(matrix))
    bump = mx.zeros((3, 8, 8)).at[1, 5, 2].add(1e-2)
    numeric = (loss(matrix + bump) - loss(matrix - bump)).item() / 2e-2
    assert grad[1, 5, 2].item() == pytest.approx(numeric, rel=1e-2)


def test_batches_shrink_with_the_budget(setup):
    model, _, _, _ = setup
    assert tokens_per_batch(model, 64, budget_bytes=1) == 64  # at least one row
    assert tokens_per_batch(model, 64, budget_bytes=2**30) > tokens_per_batch(model, 64, budget_bytes=2**26)
    assert tokens_per_batch(model, 64) % 64 == 0
