"""Streaming equals parsing at once, at every chunk boundary; no input crashes the parser or runs code."""

import builtins

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import ReasoningEvent, TextEvent
from agent.toolcalls import FORMATS, StreamParser, collect, parse_tool_calls

OUTPUTS = [
    (
        "<think>\nPlan: call it.\n</think>\n\nSure.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
        "</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n<function=b>\n<parameter=q>\na<b=c\n</parameter>\n"
        "</function>\n</tool_call>\nAfter < text.",
        {},
    ),
    (
        'Text <tool_call>\n{"name": "f", "arguments": {"a": "</tool_call"}}\n</tool_call><tool_call>{"name": "g", '
        '"arguments": "{\\"x\\": 1}"}</tool_call> tail <think',
        {},
    ),
    (
        "Thinking <tool_call> is fine here\n</think>\n\n<tool_call>\n<function=f>\n<parameter=a>\n1\n</tool_call>",
        {"in_reasoning": True},
    ),
    ("<tool_call>\n<function=f>\n<parameter=a>\nunfinished", {"fmt": "qwen_xml"}),
    ('<think>x</think>```python\n[f(a=1, b="<tool_call>"), g.h(c=[1, {"k": null}])]\n```', {"fmt": "pythonic"}),
    ("[f(1)]", {"fmt": "pythonic"}),
]


def merged(events):
    out = []
    for event in events:
        if out and isinstance(event, (TextEvent, ReasoningEvent)) and type(out[-1]) is type(event):
            out[-1] = type(event)(text=out[-1].text + event.text)
        else:
            out.append(event)
    return out


def stream(chunks, **options):
    parser = StreamParser(**options)
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return merged(events + parser.close())


def at_once(text, **options):
    return stream([text], **options)


@pytest.mark.parametrize(("text", "options"), OUTPUTS)
def test_every_single_split_gives_the_same_events(text, options):
    expected = at_once(text, **options)
    assert collect(expected) == parse_tool_calls(text, **options)
    for cut in range(len(text) + 1):
        assert stream([text[:cut], text[cut:]], **options) == expected, cut


@pytest.mark.parametrize(("text", "options"), OUTPUTS)
def test_character_by_character_gives_the_same_events(text, options):
    assert stream(list(text), **options) == at_once(text, **options)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(OUTPUTS), st.data())
def test_any_chunking_gives_the_same_events(output, data):
    text, options = output
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=12)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert stream(chunks, **options) == at_once(text, **options)


PIECES = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "<function=",
        "</function>",
        "<parameter=",
        "</parameter>",
        "<tool_",
        "</thi",
        "\n",
        " ",
        ">",
        "<",
        "=",
        "f",
        "x",
        '"',
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        ",",
        ":",
        "1",
        "'",
        '{"name": "f", "arguments": {"a": 1}}',
        "```",
        "f(a=1)",
        "true",
        "\\",
        "é",
    ]
)
OUTPUT_TEXT = st.lists(PIECES, max_size=30).map("".join) | st.text(max_size=60)


@settings(max_examples=200, deadline=None)
@given(OUTPUT_TEXT, st.sampled_from(FORMATS), st.booleans(), st.data())
def test_fuzz_no_crash_and_chunking_is_invisible(text, fmt, in_reasoning, data):
    options = {"fmt": fmt, "in_reasoning": in_reasoning}
    expected = at_once(text, **options)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert stream(chunks, **options) == expected
    parsed = collect(expected)
    call_tags = ("<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=", "</parameter>")
    markup = ("<think>", "</think>") if fmt == "pythonic" else (*call_tags, "<think>", "</think>")
    for marker in markup:  # in pythonic answers <tool_call> is just text
        assert marker not in parsed.content
    assert all(e.raw for e in parsed.errors)


UNREADABLE = "could not read the calls as Python"


@pytest.mark.parametrize(
    "text, said",
    [
        ("[" + "f(a=[" * 3000 + "]" * 3000 + ")]", UNREADABLE),
        ("f(a=" + "[" * 3000 + "]" * 3000 + ")", UNREADABLE),
        ("f(a=" + "-" * 5000 + "1)", UNREADABLE),
        ("f(a=" + "{'a': " * 2000 + "1" + "}" * 2000 + ")", UNREADABLE),
        ("f(a=1)\x00", UNREADABLE),
        ("f(a=9**9**9**9)", "'9**9**9**9' is an expression; write the value itself"),  # never evaluated
    ],
    ids=["deep-calls", "deep-list", "many-signs", "deep-dict", "nul", "huge-power"],
)
def test_hostile_pythonic_input_is_one_error_that_keeps_the_text(text, said):
    parsed = parse_tool_calls(text, fmt="pythonic")
    assert not parsed.calls and parsed.content == ""
    [error] = parsed.errors
    assert said in error.message and error.raw


def test_a_pythonic_call_with_thousands_of_arguments_is_read_whole():
    parsed = parse_tool_calls("f(" + ", ".join(f"a{i}={i}" for i in range(3000)) + ")", fmt="pythonic")
    [call] = parsed.calls
    assert call.name == "f" and call.arguments == {f"a{i}": i for i in range(3000)} and not parsed.errors


def test_hostile_nesting_in_hermes_and_xml():
    deep = '<tool_call>{"name": "f", "arguments": ' + "[" * 100000 + "]" * 100000 + "}</tool_call>"
    assert parse_tool_calls(deep).errors
    many = "<tool_call>" + "<function=f></function>" * 2000 + "</tool_call>"
    assert len(parse_tool_calls(many).calls) == 2000


def test_nothing_is_evaluated(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the parser ran code")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    target = tmp_path / "pwned"
    text = f"[f(a=open({str(target)!r}, 'w').write('x')), g(b=__import__('os').system('touch {target}'))]"
    parsed = parse_tool_calls(text, fmt="pythonic")
    assert parsed.calls == [] and len(parsed.errors) == 2
    assert not target.exists()


def test_call_tags_written_after_a_closed_call_are_dropped_from_the_text():
    # A reply sampled at temperature 1 (a Claude Code-shaped request to the server) closed its call, then wrote on.
    text = (
        "<tool_call>\n<function=Glob>\n<parameter=pattern>\n**/*.py\n</parameter>\n</function>\n</tool_call>\n"
        "path the user\n</parameter>\n<parameter=zuma\n</parameter>\n</function>"
    )
    parsed = collect(at_once(text))
    assert [c.name for c in parsed.calls] == ["Glob"] and parsed.calls[0].arguments == {"pattern": "**/*.py"}
    assert parsed.content.split() == ["path", "the", "user", "zuma"]
    assert stream(list(text)) == at_once(text)
