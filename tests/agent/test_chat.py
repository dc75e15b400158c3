"""Prompt rendering: each turn's prompt extends the previous prompt and generation, with the embedded template."""

import pytest

from agent.chat import ChatRenderer, Transcript
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.load import load_tokenizer
from tools.builtin import builtin_tools
from tools.registry import Registry

CALL = "<tool_call>\n<function=run_python>\n<parameter=code>\nprint(1)\n</parameter>\n</function>\n</tool_call>"


@pytest.fixture(scope="module")
def renderer():
    return ChatRenderer(load_tokenizer(embedded_base_path()), Registry(builtin_tools()).openai())


def assistant_call():
    function = {"name": "run_python", "arguments": {"code": "print(1)"}}
    return {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": function}]}


def test_the_first_prompt_renders_tools_and_an_empty_think_block(renderer):
    text = renderer.tokenizer.decode(renderer.full([{"role": "user", "content": "hi"}]))
    assert "run_python" in text and "<tools>" in text
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not renderer.ending_thinking()


def test_a_tool_turn_continues_exactly_as_the_template_renders_it(renderer):
    messages = [{"role": "user", "content": "hi"}]
    transcript = Transcript(renderer)
    first = transcript.prompt(messages, messages)
    transcript.generated(renderer.encode(CALL))  # the engine does not report the EOS it stopped on
    messages += [assistant_call(), {"role": "tool", "tool_call_id": "c1", "name": "run_python", "content": "1"}]
    second = transcript.prompt(messages, messages[-1:])
    assert second[: len(first)] == first
    assert renderer.tokenizer.decode(second) == renderer.tokenizer.decode(renderer.full(messages))


def test_a_new_user_turn_extends_even_where_the_template_drops_earlier_think_blocks(renderer):
    messages = [{"role": "user", "content": "hi"}]
    transcript = Transcript(renderer)
    transcript.prompt(messages, messages)
    transcript.generated(renderer.encode("Hello!"))
    seen = list(transcript.tokens)
    messages += [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "again"}]
    prompt = transcript.prompt(messages, messages[-1:])
    assert prompt[: len(seen)] == seen
    tail = renderer.tokenizer.decode(prompt[len(seen) :])
    assert tail == "<|im_end|>\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_thinking_on_leaves_the_prompt_inside_a_think_block(renderer):
    thinking = ChatRenderer(renderer.tokenizer, renderer.tools, enable_thinking=True)
    assert thinking.ending_thinking()
    assert thinking.tokenizer.decode(thinking.full([{"role": "user", "content": "hi"}])).endswith("<think>\n")
