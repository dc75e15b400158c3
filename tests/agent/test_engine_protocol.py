"""Every engine the agent, the server and the TUI are given satisfies ``agent.engine.Engine``: the real one,
rank 0's tensor-parallel one and the tests' scripted ones, with ``stream``'s exact signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from agent.engine import Engine as EngineProtocol
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.load import load_tokenizer
from optiq_runtime.rank_engine import LeaderEngine
from optiq_runtime.ranks import world
from optiq_runtime.sampling import Sampling
from tests.agent.scripted_engine import ScriptedEngine as ServerScripted
from tests.agent.test_agent_dispatch import ScriptedOutputs
from tests.agent.test_serve_load import PacedEngine
from tests.tui.scripted import ScriptedEngine as TuiScripted

STREAM_PARAMETERS = [(p.name, p.kind, p.default) for p in inspect.signature(EngineProtocol.stream).parameters.values()]


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp="on")


@pytest.fixture(scope="module")
def engines(engine):
    return {
        "Engine": engine,
        "LeaderEngine": LeaderEngine(engine, world()),
        "server ScriptedEngine": ServerScripted(["hi"]),
        "TUI ScriptedEngine": TuiScripted(["hi"]),
        "ScriptedOutputs": ScriptedOutputs(load_tokenizer(embedded_base_path()), ["hi"]),
        "PacedEngine": PacedEngine(engine, step_s=0.0),
    }


@pytest.mark.parametrize(
    "name", ["Engine", "LeaderEngine", "server ScriptedEngine", "TUI ScriptedEngine", "ScriptedOutputs", "PacedEngine"]
)
def test_every_engine_has_the_protocols_members_and_stream_signature(engines, name):
    engine = engines[name]
    assert isinstance(engine, EngineProtocol)
    parameters = [(p.name, p.kind, p.default) for p in inspect.signature(type(engine).stream).parameters.values()]
    assert parameters == STREAM_PARAMETERS


def test_the_real_engine_reports_what_the_protocol_promises(engine):
    assert isinstance(engine.model_path, Path) and engine.mtp_available and engine.mtp_decision is not None
    assert engine.context_length == 4096  # tiny-agent's max_position_embeddings
    assert Sampling().greedy and Sampling().seed == 0  # the default repeats exactly
    steps = list(engine.stream(engine.tokenizer.encode("Hello"), Sampling(max_tokens=3)))
    assert sum(len(s.tokens) for s in steps) == engine.last_stats.tokens <= 3


def test_the_leader_forwards_the_protocols_members_to_its_engine(engines, engine):
    leader = engines["LeaderEngine"]
    assert (leader.model_path, leader.mtp_available, leader.mtp_depth, leader.context_length) == (
        engine.model_path,
        engine.mtp_available,
        engine.mtp_depth,
        engine.context_length,
    )
    assert leader.mtp_decision == engine.mtp_decision and leader.tokenizer is engine.tokenizer
