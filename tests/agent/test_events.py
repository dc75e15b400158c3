"""Events are tagged pydantic models that round-trip through JSON (headless runs print them as JSONL)."""

from pydantic import TypeAdapter

from agent.events import ErrorEvent, Event, TextEvent, ToolCall, ToolCallEvent, ToolCallStartEvent, call_id


def test_events_round_trip_by_type_tag():
    adapter = TypeAdapter(Event)
    events = [
        TextEvent(text="hi"),
        ToolCallStartEvent(name="f"),
        ToolCallEvent(call=ToolCall(name="f", arguments={"a": [1]}, raw="<x>")),
        ErrorEvent(message="bad", raw="<tool_call>"),
    ]
    for event in events:
        assert adapter.validate_json(event.model_dump_json()) == event
    assert [e.type for e in events] == ["text", "tool_call_start", "tool_call", "error"]


def test_call_ids_are_deterministic_and_distinct():
    assert ToolCall(name="f", arguments={}, raw="r").id == ToolCall(name="f", arguments={}, raw="r").id
    assert ToolCall(name="f", arguments={}, raw="r").id != ToolCall(name="f", arguments={}, raw="s").id
    assert call_id(1, "r") != call_id(2, "r")
    assert ToolCall(name="f", arguments={}, id="call_given").id == "call_given"
