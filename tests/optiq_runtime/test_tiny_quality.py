"""The quality measurement's call parsing and BFCL-AST style matching."""

from __future__ import annotations

from training.quality import call_matches, parse_calls

TEXT = (
    "<tool_call>\n<function=write_file>\n<parameter=path>\na.txt\n</parameter>\n<parameter=content>\nhi\nthere\n"
    "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=f>\n<parameter=n>\n3\n</parameter>\n"
    '<parameter=l>\n["x", 2]\n</parameter>\n<parameter=b>\ntrue\n</parameter>\n</function>\n</tool_call>'
)


def test_parse_calls_reads_every_call_and_multiline_values():
    calls = parse_calls(TEXT)
    assert calls == [
        ("write_file", {"path": "a.txt", "content": "hi\nthere"}),
        ("f", {"n": "3", "l": '["x", 2]', "b": "true"}),
    ]


def test_call_matches_types_values_and_needs_every_argument():
    first, second = parse_calls(TEXT)
    assert call_matches(("write_file", {"path": "a.txt", "content": "hi\nthere"}), first)
    assert call_matches(("f", {"n": 3, "l": ["x", 2], "b": True}), second)
    assert not call_matches(("f", {"n": 4, "l": ["x", 2], "b": True}), second)
    assert not call_matches(("f", {"n": 3, "l": ["x", 2]}), second)
    assert not call_matches(("g", {"n": 3, "l": ["x", 2], "b": True}), second)
    assert parse_calls("no call here") == []
