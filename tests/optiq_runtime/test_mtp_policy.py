"""The MTP policy (auto/on/off from a measured cost model), its cache per machine, and the reduced draft vocabulary."""

from __future__ import annotations

import json

import pytest
from checkpoints import write_random_checkpoint

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from optiq_runtime.mtp_cost import (
    CostModel,
    DepthCost,
    costs_file,
    heldout_prompts,
    machine_key,
    measure,
    read_costs,
    write_costs,
)
from optiq_runtime.mtp_policy import MIN_SPEEDUP, MtpPolicy
from optiq_runtime.sampling import Sampling


def costs(**speedups) -> CostModel:
    depths = {int(d[1:]): DepthCost(round_cost=2.0, tokens_per_round=2.0 * s, speedup=s) for d, s in speedups.items()}
    return CostModel(machine_key(), "model", 0.01, 1.0, depths)


def test_auto_turns_mtp_on_at_the_best_depth_only_when_it_pays():
    assert MtpPolicy("auto", costs=costs(d1=1.2, d2=1.4, d3=1.1)).decision.depth == 2
    off = MtpPolicy("auto", costs=costs(d1=1.0, d2=0.7)).decision
    assert not off.mtp and off.reason.startswith("MTP off: a round costs 2.00 steps for 2.00 tokens")
    assert not MtpPolicy("auto", costs=costs(d1=MIN_SPEEDUP - 0.01)).decision.mtp
    assert MtpPolicy("auto", costs=costs(d1=MIN_SPEEDUP)).decision.mtp
    assert not MtpPolicy("auto").decision.mtp  # not measured: off


def test_forced_modes_and_depth():
    assert MtpPolicy("on", costs=costs(d1=0.5)).decision.mtp
    assert MtpPolicy(True, 3).decision.depth == 3
    assert not MtpPolicy("off", costs=costs(d1=2.0)).decision.mtp
    assert not MtpPolicy("on", available=False).decision.mtp
    assert MtpPolicy("auto", 1, costs=costs(d1=1.3, d2=2.0)).decision.depth == 1  # the depth asked for
    with pytest.raises(BadInputError):
        MtpPolicy("sometimes")
    with pytest.raises(BadInputError):
        MtpPolicy("on", 0)


def test_cost_cache_is_keyed_by_machine(tmp_path):
    file = tmp_path / "optiq" / "mtp_costs.json"
    model = costs(d1=1.5)
    write_costs(file, model)
    assert read_costs(file, model.machine, "model").depths[1].speedup == 1.5
    other = {**model.machine, "threads": model.machine["threads"] + 7}
    assert read_costs(file, other, "model") is None  # another machine measures again
    assert read_costs(file, model.machine, "another build") is None
    write_costs(file, CostModel(other, "model", 0.02, 1.0, {}))
    assert len(json.loads(file.read_text())["entries"]) == 2


def test_shipped_model_caches_outside_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    assert str(costs_file(embedded_base_path())).startswith(str(tmp_path / "home"))
    built = tmp_path / "built"
    (built / "optiq").mkdir(parents=True)
    assert costs_file(built) == built.resolve() / "optiq" / "mtp_costs.json"


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp="on")


def test_measured_model_and_auto_decision(engine):
    model = measure(engine, (1, 2), tokens=12, budget_s=20.0)
    assert set(model.depths) == {1, 2} and model.plain_step_s > 0
    for depth, cost in model.depths.items():
        assert cost.round_cost > 0 and 1.0 <= cost.tokens_per_round <= 1 + depth + 1e-9
        assert len(cost.acceptance) == depth
    assert engine.policy.mode == "on" and engine.auto_fallback  # restored after measuring
    engine.policy.costs, engine.policy.mode = model, "auto"
    try:
        decision = engine.mtp_decision
        assert decision.mtp == (max(c.speedup for c in model.depths.values()) >= MIN_SPEEDUP)
        engine.generate(engine.tokenizer.encode("Hello"), Sampling(max_tokens=4))
        assert engine.last_stats.mtp_reason == decision.reason
    finally:
        engine.policy.costs, engine.policy.mode = None, "on"


def test_measuring_keeps_to_its_budget(engine):
    """The budget bounds the whole measurement: none leaves no depth measured (and auto then stays off); a
    short one ends every run when it is spent, long turns or not."""
    import time

    nothing = measure(engine, (1, 2), budget_s=0.0)
    assert nothing.depths == {} and nothing.best_depth() is None and nothing.runs == 0
    policy = MtpPolicy("auto", costs=nothing)
    assert not policy.decision.mtp and "no depth could be measured" in policy.decision.reason
    started = time.perf_counter()
    short = measure(engine, (1, 2), budget_s=1.5)
    assert (
        short.measured_s <= 1.5 + 2.0 and time.perf_counter() - started <= 1.5 + 2.0
    )  # a step or a compile over, at most
    assert engine.policy.mode == "on" and engine.tokenizer.eos_token_ids  # restored


def test_load_measures_once_then_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPTIQ_MTP_BUDGET_S", "8")  # a short measurement is still measured and cached
    folder = write_random_checkpoint(tmp_path / "model", seed=5)
    first = Engine.load(folder)
    file = folder / "optiq" / "mtp_costs.json"
    assert first.policy.costs is not None and file.is_file()
    stamp = file.stat().st_mtime_ns
    second = Engine.load(folder)
    assert second.policy.costs.to_json() == first.policy.costs.to_json() and file.stat().st_mtime_ns == stamp
    assert second.mtp_decision.reason


def test_policy_owns_its_history(engine):
    engine.reset(mtp_history=True)
    assert len(engine.policy.history.speedups) == 0
    # an agent turn, which the model answers at length (a bare "Count: one two three" now ends at once)
    engine.generate(heldout_prompts(engine.tokenizer)[0], Sampling(max_tokens=24))
    assert engine.last_stats.tokens > 8
    assert engine.last_stats.mtp_used and engine.last_stats.round_s
    stats = engine.last_stats  # each timed round's whole loop iteration, closed when the next step starts
    assert len(stats.round_s) - 1 <= len(stats.round_iteration_s) <= len(stats.round_s)
    assert all(whole >= part for whole, part in zip(stats.round_iteration_s, stats.round_s))


def test_the_budget_can_be_set_and_a_bad_one_is_refused(monkeypatch):
    from optiq_runtime.mtp_cost import MEASURE_BUDGET_S, measure_budget

    monkeypatch.delenv("OPTIQ_MTP_BUDGET_S", raising=False)
    assert measure_budget() == MEASURE_BUDGET_S
    monkeypatch.setenv("OPTIQ_MTP_BUDGET_S", "240")
    assert measure_budget() == 240.0
    for bad in ("soon", "0", "-5", "inf"):
        monkeypatch.setenv("OPTIQ_MTP_BUDGET_S", bad)
        with pytest.raises(BadInputError, match="OPTIQ_MTP_BUDGET_S"):
            measure_budget()


def test_each_depth_is_measured_on_its_own_runs(engine):
    """What a round yields depends on the depth (a round starts after its last kept token, so the depth decides which
    positions are drafted): each depth's acceptance and tokens per round are those of greedy runs at that depth."""
    prompts = sorted(heldout_prompts(engine.tokenizer), key=len)[:3]
    model = measure(engine, (1, 2), prompts=prompts, tokens=16, budget_s=60.0)
    assert model.turns == len(prompts)
    saved, engine.auto_fallback = engine.policy.depth, False
    try:
        for depth, cost in model.depths.items():
            engine.mtp_depth, drafted, accepted, tokens, rounds = depth, [0] * depth, [0] * depth, 0, 0
            for prompt in prompts:
                engine.reset()
                engine.generate(prompt, Sampling(max_tokens=16))
                stats = engine.last_stats
                drafted = [a + b for a, b in zip(drafted, stats.drafted)]
                accepted = [a + b for a, b in zip(accepted, stats.accepted)]
                tokens, rounds = tokens + stats.decode_tokens, rounds + stats.steps
            assert cost.acceptance == [a / d for a, d in zip(accepted, drafted)]
            assert cost.tokens_per_round == tokens / rounds
    finally:
        engine.auto_fallback, engine.policy.depth = True, saved


def test_a_turns_predicted_time_is_a_fixed_cost_and_its_steps(engine):
    """A run's time is its mode's fixed cost plus its steps at the median step; the speed-up is the median over
    turns of the plain run's time over the MTP run's, with each run's own steps and rounds."""
    from optiq_runtime.mtp_cost import _Mode, _speedup
    from optiq_runtime.stats import GenerationStats

    def run(steps: int, step_s: float, fixed_s: float, tokens: int) -> GenerationStats:
        times = [step_s] * (steps - 2)
        stats = GenerationStats(decode_s=fixed_s + steps * step_s, decode_tokens=tokens, steps=steps)
        stats.plain_iteration_s, stats.round_iteration_s, stats.finish_reason = times, times, "eos"
        return stats

    turns = [{None: run(n, 0.01, 0.03, n - 1), 1: run(r, 0.015, 0.005, n - 1)} for n, r in ((9, 5), (21, 11), (41, 22))]
    plain, mtp = _Mode.of([t[None] for t in turns], True), _Mode.of([t[1] for t in turns], False)
    assert plain.fixed_s == pytest.approx(0.03) and mtp.iteration_s == pytest.approx(0.015)
    expected = (0.03 + 21 * 0.01) / (0.005 + 11 * 0.015)  # the median turn's
    assert _speedup(plain, mtp, turns, 1, typical=0.0) == pytest.approx(expected)
    assert _speedup(plain, mtp, [], 1, typical=20.0) == pytest.approx(
        (0.03 + 20 / plain.tokens_per_step * 0.01) / (0.005 + 20 / mtp.tokens_per_step * 0.015)
    )
