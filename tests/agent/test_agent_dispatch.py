"""Tool-call handling in the loop, driven by model-like text with the embedded model's tokenizer.

The embedded model cannot be made to write a given call, so these tests replay scripted outputs
through the real loop: parser, validation, approval, the built-in tools and the sandbox are real.
"""

from pathlib import Path

import pytest

from agent.agent import Agent
from agent.approval import ApprovalDecision, approve_all, approve_none
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Step
from optiq_runtime.load import load_tokenizer
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import GenerationStats
from tools.builtin import builtin_tools
from tools.registry import Registry
from tools.tool import Tool


class ScriptedOutputs:
    """Plays the model's side from a list of outputs, token by token; records every prompt."""

    def __init__(self, tokenizer, outputs: list[str]):
        self.tokenizer = tokenizer
        self.outputs = list(outputs)
        self.prompts: list[list[int]] = []
        self.last_stats = GenerationStats()
        self.model_path = embedded_base_path()
        self.mtp_enabled, self.mtp_depth, self.mtp_available, self.mtp_decision = False, 2, False, None
        self.context_length = None

    def stream(self, prompt_tokens, sampling=Sampling(), *, stop=None, should_stop=None, guide=None):
        prompt, max_tokens = prompt_tokens, sampling.max_tokens
        self.prompts.append(list(prompt))
        ids = self.tokenizer.encode(self.outputs.pop(0), add_special_tokens=False)
        self.last_stats = GenerationStats(prompt_tokens=len(prompt), finish_reason="eos")
        for index, token in enumerate(ids[:max_tokens]):
            if should_stop and should_stop():
                self.last_stats.finish_reason = "interrupted"
                return
            self.last_stats.tokens = index + 1
            yield Step([token], self.tokenizer.decode([token]))
        if len(ids) >= max_tokens:
            self.last_stats.finish_reason = "length"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(embedded_base_path())


def call(name: str, **arguments) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in arguments.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def run(tokenizer, workspace: Path, outputs: list[str], approve=approve_none, tools=None, extends=True, **kwargs):
    engine = ScriptedOutputs(tokenizer, outputs)
    registry = Registry(tools if tools is not None else builtin_tools())
    with Agent(engine, registry, workspace, approve, **kwargs) as agent:
        events = list(agent.send("do it"))
    extended = [after[: len(before)] == before for before, after in zip(engine.prompts, engine.prompts[1:])]
    assert all(extended) or not extends, "each prompt must extend the previous one"
    return agent, events


def types(events):
    return [e.type for e in events if e.type not in ("text", "reasoning", "stats", "tool_call_start")]


def test_python_call_runs_in_the_sandbox_and_its_result_goes_back(tokenizer, tmp_path):
    agent, events = run(tokenizer, tmp_path, [call("run_python", code="print(37 * 91)"), "37 * 91 = 3367"])
    assert types(events) == ["user", "tool_call", "tool_validated", "tool_result", "done"]
    result = next(e for e in events if e.type == "tool_result")
    assert result.ok and "3367" in result.content and result.name == "run_python"
    done = events[-1]
    assert done.stop_reason == "answered" and done.answer == "37 * 91 = 3367" and done.steps == 2
    assert [m["role"] for m in agent.messages] == ["user", "assistant", "tool", "assistant"]
    assert agent.messages[1]["tool_calls"][0]["function"] == {
        "name": "run_python",
        "arguments": {"code": "print(37 * 91)"},
    }
    assert agent.messages[2]["tool_call_id"] == result.call_id


def test_invalid_call_goes_back_with_the_validation_message(tokenizer, tmp_path):
    agent, events = run(tokenizer, tmp_path, [call("read_file", file="a.txt"), "I could not read it."])
    rejected = next(e for e in events if e.type == "tool_rejected")
    assert rejected.reason == "invalid"
    assert any("missing required argument 'path'" in error for error in rejected.errors)
    result = next(e for e in events if e.type == "tool_result")
    assert not result.ok and "path" in result.content
    assert agent.messages[2]["role"] == "tool" and "missing required argument 'path'" in agent.messages[2]["content"]
    assert events[-1].stop_reason == "answered"


def test_unknown_tool_lists_the_available_ones(tokenizer, tmp_path):
    _, events = run(tokenizer, tmp_path, [call("launch_rocket", target="moon"), "ok"])
    result = next(e for e in events if e.type == "tool_result")
    assert "no tool named 'launch_rocket'" in result.content and "run_python" in result.content


def test_malformed_call_is_reported_to_the_model(tokenizer, tmp_path):
    _, events = run(
        tokenizer, tmp_path, ["<tool_call>\n<function=read_file>\n<parameter=path>\na.txt</tool_call>", "ok"]
    )
    assert "error" in types(events)
    result = next(e for e in events if e.type == "tool_result")
    assert not result.ok and result.content


def test_the_same_failing_call_twice_stops_the_turn(tokenizer, tmp_path):
    failing = call("read_file", path="missing.txt")
    _, events = run(tokenizer, tmp_path, [failing, failing, "never reached"])
    done = events[-1]
    assert done.stop_reason == "repeated_failure" and done.steps == 2
    assert "read_file" in done.message and "missing.txt" in done.message
    assert [e.reason for e in events if e.type == "tool_rejected"] == ["repeated"]


def test_writes_are_denied_without_approval(tokenizer, tmp_path):
    _, events = run(tokenizer, tmp_path, [call("write_file", path="a.txt", content="hi"), "I was not allowed."])
    assert types(events) == [
        "user",
        "tool_call",
        "tool_validated",
        "approval_request",
        "approval",
        "tool_rejected",
        "tool_result",
        "done",
    ]
    assert next(e for e in events if e.type == "approval").decision == "deny"
    assert "denied" in next(e for e in events if e.type == "tool_result").content
    assert not (tmp_path / "a.txt").exists()


def test_approved_writes_land_in_the_workspace(tokenizer, tmp_path):
    _, events = run(
        tokenizer, tmp_path, [call("write_file", path="notes/a.txt", content="hello"), "Done."], approve_all
    )
    request = next(e for e in events if e.type == "approval_request")
    assert "notes/a.txt" in request.preview and "hello" in request.preview
    assert (tmp_path / "notes" / "a.txt").read_text() == "hello"
    assert events[-1].stop_reason == "answered"


def test_allow_for_session_asks_once_per_tool(tokenizer, tmp_path):
    asked = []

    def approve(request):
        asked.append(request.tool)
        return ApprovalDecision.ALLOW_SESSION

    outputs = [call("write_file", path="a.txt", content="1"), call("write_file", path="b.txt", content="2"), "ok"]
    _, events = run(tokenizer, tmp_path, outputs, approve)
    assert asked == ["write_file"]
    assert (tmp_path / "a.txt").read_text() == "1" and (tmp_path / "b.txt").read_text() == "2"


def test_file_tools_stay_inside_the_workspace(tokenizer, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "secret.txt").write_text("s3cret")
    _, events = run(tokenizer, workspace, [call("read_file", path="../secret.txt"), "no"])
    result = next(e for e in events if e.type == "tool_result")
    assert not result.ok and "s3cret" not in result.content


def test_step_limit_stops_a_model_that_keeps_calling(tokenizer, tmp_path):
    outputs = [call("list_dir", path="."), call("run_python", code="print(1)"), "never reached"]
    _, events = run(tokenizer, tmp_path, outputs, max_steps=2)
    done = events[-1]
    assert done.stop_reason == "max_steps" and done.steps == 2 and "2 steps" in done.message


def test_long_tool_output_is_capped_and_says_so(tokenizer, tmp_path):
    agent, events = run(
        tokenizer, tmp_path, [call("run_python", code="print('x' * 20000)"), "long"], tool_output_chars=500
    )
    result = next(e for e in events if e.type == "tool_result")
    assert len(result.content) < 600 and "characters cut" in result.content


def test_old_tool_output_is_trimmed_when_the_context_fills(tokenizer, tmp_path):
    (tmp_path / "big.txt").write_text("word " * 1500)
    outputs = [
        call("read_file", path="big.txt"),
        call("list_dir", path="."),
        call("run_python", code="print(2)"),
        "done",
    ]
    sampling = Sampling(max_tokens=64)
    roomy, _ = run(tokenizer, tmp_path, outputs, approve_all, sampling=sampling)
    second_prompt = len(roomy.engine.prompts[1])  # holds the big result; the third prompt would not fit
    agent, events = run(
        tokenizer,
        tmp_path,
        outputs,
        approve_all,
        extends=False,
        context_tokens=second_prompt + 64 + 20,
        sampling=sampling,
    )
    notices = [e for e in events if e.type == "notice"]
    assert notices and "trimmed 1 old tool result" in notices[0].message
    assert "output trimmed to save context" in agent.messages[2]["content"]
    assert events[-1].stop_reason == "answered"


def test_a_crashing_custom_tool_becomes_a_failed_result(tokenizer, tmp_path):
    def broken(arguments, context):
        raise KeyError("oops")

    tool = Tool("broken", "Always fails.", {"type": "object", "properties": {}}, broken)
    _, events = run(tokenizer, tmp_path, [call("broken"), "sorry"], tools=[tool])
    result = next(e for e in events if e.type == "tool_result")
    assert not result.ok and "KeyError" in result.content
    assert events[-1].stop_reason == "answered"


def test_interrupt_during_an_approval_answers_the_remaining_calls_and_stops(tokenizer, tmp_path):
    holder = {}

    def approve(request):
        holder["agent"].interrupt()  # the user pressed Escape while the dialog was open
        return ApprovalDecision.DENY

    engine = ScriptedOutputs(
        tokenizer, [call("write_file", path="a.txt", content="1") + call("list_dir", path="."), "never"]
    )
    with Agent(engine, Registry(builtin_tools()), tmp_path, approve) as agent:
        holder["agent"] = agent
        events = list(agent.send("do it"))
    results = [e for e in events if e.type == "tool_result"]
    assert [r.name for r in results] == ["write_file", "list_dir"]
    assert results[1].content == "interrupted by the user" and not results[1].ok
    assert events[-1].stop_reason == "interrupted" and events[-1].steps == 1
