"""Reading tool calls in each format, and explaining each malformed one."""

import pytest

from agent.toolcalls import StreamParser, parse_tool_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "hours": {"type": "array"}},
        },
    },
}

QWEN = (
    "<think>\nThe user wants weather.\n</think>\n\nLet me check.\n\n"
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
    "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n"
    "<tool_call>\n<function=write_file>\n<parameter=content>\nif a < b and c == d:\n    x = '<p>'\n\n"
    "</parameter>\n</function>\n</tool_call>"
)


def test_qwen_xml_calls_content_and_reasoning():
    parsed = parse_tool_calls(QWEN)
    assert parsed.reasoning == "The user wants weather."
    assert parsed.content == "Let me check."
    assert [(c.name, c.arguments) for c in parsed.calls] == [
        ("get_weather", {"city": "Paris", "days": "3"}),
        ("write_file", {"content": "if a < b and c == d:\n    x = '<p>'\n"}),
    ]
    assert parsed.errors == []
    assert parsed.calls[0].raw.startswith("<function=get_weather>")


def test_qwen_xml_values_are_coerced_when_tools_are_given():
    parsed = parse_tool_calls(QWEN, tools=[WEATHER])
    assert parsed.calls[0].arguments == {"city": "Paris", "days": 3}


def test_several_functions_in_one_tool_call_stay_separate():
    text = (
        "<tool_call>\n<function=a>\n<parameter=x>\n1\n</parameter>\n</function>\n"
        "<function=b>\n<parameter=x>\n2\n</parameter>\n</function>\n</tool_call>"
    )
    parsed = parse_tool_calls(text, fmt="qwen_xml")
    assert [(c.name, c.arguments) for c in parsed.calls] == [("a", {"x": "1"}), ("b", {"x": "2"})]
    assert len({c.id for c in parsed.calls}) == 2


def test_function_without_parameters_and_inline_values():
    text = "<tool_call><function=now></function><function=f><parameter=k>v=1</parameter></function></tool_call>"
    assert [(c.name, c.arguments) for c in parse_tool_calls(text).calls] == [("now", {}), ("f", {"k": "v=1"})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "<tool_call>\n<function=f>\n<parameter=a>\n1\n",
            "the tool call was cut off: the output ended before </tool_call>",
        ),
        (
            "<tool_call>\n<function=f>\n<parameter=a>\n1\n</function></tool_call>",
            "f: parameter 'a' has no closing </parameter>",
        ),
        (
            "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</tool_call>",
            "the call to f has no closing </function>",
        ),
        (
            "<tool_call>\n<function=f>\nhello\n</function>\n</tool_call>",
            "f: unexpected text 'hello\\n'; each argument is",
        ),
        (
            "<tool_call><function=f><parameter=a>1</parameter><parameter=a>2</parameter></function></tool_call>",
            "f: parameter 'a' is given twice",
        ),
        ("<tool_call>\n</tool_call>", "the tool call is empty"),
        ("<tool_call>call f please</tool_call>", "could not read the tool call: expected <function=NAME>"),
        ("<tool_call>\n<function=\n>\n</function></tool_call>", "could not read the function name"),
    ],
)
def test_malformed_xml_is_an_error_with_its_raw_text(text, message):
    parsed = parse_tool_calls(text)
    assert parsed.calls == []
    [error] = parsed.errors
    assert message in error.message
    assert error.raw and error.raw in text


def test_a_bad_call_does_not_take_its_neighbours_down():
    text = (
        "<tool_call>\n<function=a>\n<parameter=x>\n1\n</function>\n"
        "<function=b>\n<parameter=y>\n2\n</parameter>\n</function>\n</tool_call>"
    )
    parsed = parse_tool_calls(text)
    assert [c.name for c in parsed.calls] == ["b"]
    assert parsed.errors[0].message == "a: parameter 'x' has no closing </parameter>"


def test_hermes_object_and_string_arguments():
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}\n</tool_call>\n'
        '<tool_call>{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}</tool_call>'
    )
    parsed = parse_tool_calls(text, fmt="hermes")
    assert [(c.name, c.arguments) for c in parsed.calls] == [
        ("get_weather", {"city": "Oslo", "days": 2}),
        ("f", {"a": [1, 2]}),
    ]
    assert parse_tool_calls(text).calls == parsed.calls


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"name": "f", "arguments": {"a": 1}', "the tool call is not valid JSON"),
        ('{"arguments": {}}', 'the tool call has no "name" string'),
        ('{"name": "f", "arguments": "{oops"}', "f: the arguments string is not valid JSON"),
        ('{"name": "f", "arguments": [1]}', 'f: "arguments" must be an object'),
        ("[1]", "a tool call must be a JSON object"),
    ],
)
def test_malformed_hermes_is_an_error(body, message):
    parsed = parse_tool_calls(f"<tool_call>{body}</tool_call>")
    assert parsed.calls == [] and message in parsed.errors[0].message
    assert parsed.errors[0].raw == f"<tool_call>{body}</tool_call>"


def test_format_restriction():
    xml = "<tool_call><function=f></function></tool_call>"
    assert "expected a JSON object" in parse_tool_calls(xml, fmt="hermes").errors[0].message
    assert (
        "expected <function=NAME>"
        in parse_tool_calls('<tool_call>{"name": "f"}</tool_call>', fmt="qwen_xml").errors[0].message
    )
    with pytest.raises(ValueError, match="unknown tool-call format 'json'"):
        parse_tool_calls("", fmt="json")


@pytest.mark.parametrize(
    "text",
    [
        '[f(a=1, b="x"), pkg.g(c=[1, 2], d={"k": None})]',
        'f(a=1, b="x"), pkg.g(c=[1, 2], d={"k": None})',
        '```python\n[f(a=1, b="x"), pkg.g(c=[1, 2], d={"k": null})]\n```',
        "```\nf(a=1, b='x')\npkg.g(c=(1, 2), d={\"k\": None})\n```".replace("\npkg", ", pkg"),
    ],
)
def test_pythonic_calls(text):
    parsed = parse_tool_calls(text, fmt="pythonic")
    assert parsed.errors == []
    assert [(c.name, c.arguments) for c in parsed.calls] == [
        ("f", {"a": 1, "b": "x"}),
        ("pkg.g", {"c": [1, 2], "d": {"k": None}}),
    ]


def test_pythonic_literals():
    parsed = parse_tool_calls(
        "[f(t=true, n=null, f=False, neg=-2.5, s='a=b', e=[], nested={'a': [{'b': -1}]})]", fmt="pythonic"
    )
    assert parsed.calls[0].arguments == {
        "t": True,
        "n": None,
        "f": False,
        "neg": -2.5,
        "s": "a=b",
        "e": [],
        "nested": {"a": [{"b": -1}]},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[f(1, b=2)]", "f: positional arguments are not allowed"),
        ("[f(a=x)]", "f: could not read argument 'a': x is a bare name; quote text as a string"),
        ("[f(a=__import__('os').system('true'))]", "f: could not read argument 'a'"),
        ("[f(a=1+1)]", "f: could not read argument 'a': '1+1' is an expression"),
        ("[f(**kw)]", "f: **kwargs is not allowed"),
        ("[f(a=1, a=2)]", "f: argument 'a' is given twice"),
        ("[f(a=1,]", "could not read the calls as Python"),
        ("[f(a={1: 2})]", "dict keys must be strings"),
        ("[f(a=1), 3]", "'3' is not a function call"),
        ("[f()(a=1)]", "could not read the function name"),
    ],
)
def test_malformed_pythonic_is_an_error(text, message):
    parsed = parse_tool_calls(text, fmt="pythonic")
    assert any(message in e.message for e in parsed.errors), parsed.errors


def test_pythonic_prose_answer_is_text_and_reasoning_is_split():
    parsed = parse_tool_calls("<think>no tool fits</think>\nI cannot help with that.", fmt="pythonic")
    assert (parsed.content, parsed.reasoning, parsed.calls) == ("I cannot help with that.", "no tool fits", [])
    assert parse_tool_calls("[]", fmt="pythonic").calls == []


def test_pythonic_is_only_read_in_pythonic_format():
    parsed = parse_tool_calls("[f(a=1)]")
    assert parsed.calls == [] and parsed.content == "[f(a=1)]"


def test_output_that_starts_inside_reasoning():
    parsed = parse_tool_calls("Weighing options.\n</think>\n\nDone.", in_reasoning=True)
    assert (parsed.reasoning, parsed.content) == ("Weighing options.", "Done.")
    empty = parse_tool_calls("<think>\n\n</think>\n\nHi")
    assert (empty.reasoning, empty.content) == ("", "Hi")


def test_markup_never_reaches_visible_text():
    text = "a</tool_call>b</think>c<tool_call>\n<function=f>\n</function>\n</tool_call>\nd"
    parsed = parse_tool_calls(text)
    assert parsed.content == "abc\n\nd"
    assert [c.name for c in parsed.calls] == ["f"]


def test_stream_emits_start_then_call_and_ids_are_stable():
    parser = StreamParser()
    events = []
    for piece in [
        "Checking",
        ".\n<tool_",
        "call>\n<function=get_",
        "weather>\n<parameter=city>\nRo",
        "me\n</parameter>\n",
        "</function>\n</tool_call>",
    ]:
        events += parser.feed(piece)
    events += parser.close()
    assert [e.type for e in events] == ["text", "text", "tool_call_start", "tool_call"]
    start = next(e for e in events if e.type == "tool_call_start")
    assert start.name == "get_weather"
    call = events[-1].call
    assert call.arguments == {"city": "Rome"}
    assert call.id == parse_tool_calls("Checking.\n" + call.raw.join(["<tool_call>\n", "\n</tool_call>"])).calls[0].id
    assert call.id.startswith("call_") and len(call.id) == 13


def test_pythonic_stream_holds_back_until_close():
    parser = StreamParser(fmt="pythonic")
    assert parser.feed("[get_weather(city='Oslo')") == []
    assert parser.feed("]") == []
    events = parser.close()
    assert [e.type for e in events] == ["tool_call_start", "tool_call"]
