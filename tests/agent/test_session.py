"""Session traces: where they go, how they read back, replay and export."""

from agent.events import DoneEvent, TextEvent, ToolCall, ToolCallEvent, ToolResultEvent, UserEvent
from agent.session import SessionWriter, export_markdown, load_trace, new_session_path, replay, sessions_dir

EVENTS = [
    UserEvent(text="What is 2+2?"),
    ToolCallEvent(call=ToolCall(name="run_python", arguments={"code": "print(2+2)"}, raw="r")),
    ToolResultEvent(call_id="c", name="run_python", content="4", ok=True),
    TextEvent(text="It is "),
    TextEvent(text="4."),
    DoneEvent(answer="It is 4.", stop_reason="answered", steps=2, tokens=30, seconds=1.5),
]


def test_sessions_folder_follows_optiq_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    assert sessions_dir() == tmp_path / "home" / "sessions"
    monkeypatch.delenv("OPTIQ_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert sessions_dir() == tmp_path / "xdg" / "optiq" / "sessions"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sessions_dir() == tmp_path / ".local" / "share" / "optiq" / "sessions"


def test_a_trace_reads_back_as_the_same_events(tmp_path):
    path = new_session_path(tmp_path / "sessions")
    with SessionWriter(path) as writer:
        for event in EVENTS:
            writer.write(event)
    assert len(path.read_text().splitlines()) == len(EVENTS)
    assert load_trace(path) == EVENTS
    assert list(replay(path)) == EVENTS
    path.touch()
    assert new_session_path(tmp_path / "sessions") != path


def test_a_bad_trace_line_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(UserEvent(text="hi").model_dump_json() + '\n{"type": "nonsense"}\n')
    try:
        load_trace(path)
    except ValueError as error:
        assert "t.jsonl:2" in str(error)
    else:
        raise AssertionError("a bad line must raise")


def test_export_is_a_readable_transcript():
    text = export_markdown(EVENTS)
    assert "**User:** What is 2+2?" in text
    assert "`run_python`" in text and "print(2+2)" in text
    assert "**Assistant:** It is 4." in text
    assert "answered: 2 steps" in text
