"""The agent loop on the real embedded model: events, stop reasons, interruption, prompt-cache reuse, traces."""

import threading

import pytest

from agent.agent import Agent
from agent.session import SessionWriter, load_trace
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.sampling import Sampling
from tools.builtin import builtin_tools
from tools.registry import Registry


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp="on")


def make_agent(engine, workspace, **kwargs):
    kwargs.setdefault("sampling", Sampling(max_tokens=12))
    return Agent(engine, Registry(builtin_tools()), workspace, **kwargs)


def expected_stops(events, stats, max_tokens, max_steps):
    """The stop reasons the loop promises for what its last generation did."""
    last = events[events.index(stats[-2]) + 1 if len(stats) > 1 else 0 : events.index(stats[-1])]
    if any(e.type in ("tool_call", "error") for e in last):  # calls are answered while steps remain
        return ("repeated_failure",) if len(stats) < max_steps else ("max_steps", "repeated_failure")
    return ("length",) if stats[-1].tokens >= max_tokens else ("answered",)


def test_a_turn_starts_with_the_request_and_ends_with_done(engine, tmp_path):
    with make_agent(engine, tmp_path, max_steps=2) as agent:
        events = list(agent.send("Say hello."))
    assert events[0].type == "user" and events[0].text == "Say hello."
    done = events[-1]
    assert done.type == "done" and [e.type for e in events].count("done") == 1
    assert 1 <= done.steps <= 2
    stats = [e for e in events if e.type == "stats"]
    assert done.stop_reason in expected_stops(events, stats, max_tokens=12, max_steps=2)
    assert len(stats) == done.steps
    assert done.tokens == sum(s.tokens for s in stats) <= 2 * 12
    assert agent.messages[0] == {"role": "user", "content": "Say hello."}
    assert agent.messages[1]["role"] == "assistant"


def test_a_length_stop_is_not_an_answer(engine, tmp_path):
    with make_agent(engine, tmp_path, sampling=Sampling(max_tokens=1)) as agent:
        done = list(agent.send("Write a long story about a boat."))[-1]
    if done.stop_reason != "answered":  # a one-token answer can only be cut off or a bare EOS
        assert done.stop_reason == "length" and "1-token limit" in done.message
        assert not done.answered


def test_the_second_turn_reuses_the_prompt_cache(engine, tmp_path):
    with make_agent(engine, tmp_path, max_steps=1) as agent:
        first = [e for e in agent.send("hello") if e.type == "stats"]
        second = [e for e in agent.send("and again") if e.type == "stats"]
    assert first[0].reused_prompt_tokens == 0 or first[0].reused_prompt_tokens < first[0].prompt_tokens
    assert second[0].reused_prompt_tokens >= first[0].prompt_tokens
    assert second[0].prompt_tokens > second[0].reused_prompt_tokens


def test_reset_forgets_the_conversation(engine, tmp_path):
    with make_agent(engine, tmp_path, max_steps=1, system="Be brief.") as agent:
        list(agent.send("hello"))
        agent.reset()
        assert agent.messages == [{"role": "system", "content": "Be brief."}]
        stats = [e for e in agent.send("hello") if e.type == "stats"]
    assert stats[0].prompt_tokens > 0


def test_interrupt_from_another_thread_stops_the_turn(engine, tmp_path):
    with make_agent(engine, tmp_path, sampling=Sampling(max_tokens=400)) as agent:
        events = []
        for event in agent.send("Tell me everything you know."):
            events.append(event)
            if event.type == "user":
                threading.Thread(target=agent.interrupt).start()
                threading.Event().wait(0.05)
    done = events[-1]
    assert done.stop_reason == "interrupted" and done.tokens < 400
    assert agent.messages[-1]["role"] in ("assistant", "tool")


def test_the_trace_holds_every_event_in_order(engine, tmp_path):
    trace = tmp_path / "trace.jsonl"
    with make_agent(engine, tmp_path, max_steps=1, trace=SessionWriter(trace)) as agent:
        events = list(agent.send("hello"))
    assert load_trace(trace) == events


def test_a_failing_generation_ends_the_turn_with_an_error(engine, tmp_path):
    with make_agent(engine, tmp_path, sampling=Sampling(max_tokens=0)) as agent:
        events = list(agent.send("hello"))
    assert [e.type for e in events] == ["user", "error", "done"]
    assert events[-1].stop_reason == "error" and "max_tokens must be at least 1" in events[-1].message


@pytest.mark.parametrize(
    "prompt", ["What is 37 * 91? Use Python.", "Write 'hello' to notes.txt.", "List the files here."]
)
def test_every_call_the_model_makes_gets_exactly_one_result(engine, tmp_path, prompt):
    asked = []

    def approve(request):
        asked.append(request.call.id)
        return "deny"

    with make_agent(engine, tmp_path, approve=approve, max_steps=2, sampling=Sampling(max_tokens=48)) as agent:
        events = list(agent.send(prompt))
    calls = [e.call.id for e in events if e.type == "tool_call"]
    results = [e.call_id for e in events if e.type == "tool_result"]
    malformed = [e for e in events if e.type == "error"]
    # An output cut off by max_tokens ends the turn ("length"): its unfinished call is not answered.
    unanswered = 1 if events[-1].stop_reason == "length" and malformed else 0
    assert len(results) == len(calls) + len(malformed) - unanswered
    assert set(calls) <= set(results)
    validated = [e.call for e in events if e.type == "tool_validated"]
    side_effects = [c.id for c in validated if agent.registry.get(c.name).side_effects]
    assert asked == side_effects
    assert [e.call_id for e in events if e.type == "approval"] == side_effects
    tool_messages = [m for m in agent.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == results


def test_the_trained_model_computes_with_python_and_answers(engine, tmp_path):
    with make_agent(engine, tmp_path, max_steps=3, sampling=Sampling(max_tokens=64)) as agent:
        events = list(agent.send("What is 37 * 91? Use Python."))
    [validated] = [e.call for e in events if e.type == "tool_validated"]
    assert validated.name == "run_python"
    assert next(e for e in events if e.type == "tool_result").content.strip() == "3367"
    done = events[-1]
    assert done.stop_reason == "answered" and "3367" in done.answer and done.steps == 2
    stats = [e for e in events if e.type == "stats"]
    assert stats[1].reused_prompt_tokens >= stats[0].prompt_tokens  # the second step extends the first's cache
