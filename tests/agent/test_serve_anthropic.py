"""`optiq serve`'s Anthropic Messages API on a loopback port, driven by the official ``anthropic`` client.

As in ``test_serve``, the embedded model asserts the protocol (blocks, events, stop reasons,
validated tool calls, the prompt cache across a tool round trip); a scripted engine plays the
model where a test needs exact output. The SDK sends ``temperature`` through ``extra_body``: its
``create`` no longer names it, the API still takes it.
"""

from __future__ import annotations

import http.client
import json

import anthropic
import pytest

from agent.serve import ServeConfig, Server
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from tests.agent.claude_code_request import TOOLS as CLAUDE_CODE_TOOLS
from tests.agent.claude_code_request import claude_code_request
from tests.agent.scripted_engine import ScriptedEngine, call_text

MODEL = "tiny-agent"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "The time in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
FIXED_USE = {"type": "tool_use", "id": "toolu_fixed", "name": "get_weather", "input": {"city": "Paris"}}
GREEDY = {"temperature": 0}
MARKUP = ("<tool_call>", "</tool_call>", "<function=", "<parameter=", "<|im_start|>", "<|im_end|>", "<|endoftext|>")


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp=True)


@pytest.fixture(scope="module")
def server(engine):
    with Server(engine, ServeConfig(port=0, api_key="s3cret")) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{server.port}", api_key="s3cret", max_retries=0, timeout=120)


def assert_no_markup(text: str) -> None:
    for tag in MARKUP:
        assert tag not in text, f"raw markup {tag!r} in a text block: {text!r}"


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def events(client, **request) -> list:
    return list(client.messages.create(model=MODEL, stream=True, **request))


def assemble(stream: list) -> dict:
    """Check the event order of one streamed message and put its blocks back together."""
    assert stream[0].type == "message_start" and stream[-1].type == "message_stop"
    assert stream[-2].type == "message_delta"
    blocks, open_index = [], None
    for event in stream[1:-2]:
        if event.type == "content_block_start":
            assert open_index is None and event.index == len(blocks)
            open_index = event.index
            blocks.append(
                {
                    "type": event.content_block.type,
                    "text": "",
                    "json": "",
                    "name": getattr(event.content_block, "name", None),
                }
            )
        elif event.type == "content_block_delta":
            assert event.index == open_index
            blocks[-1]["text"] += getattr(event.delta, "text", "") or ""
            blocks[-1]["json"] += getattr(event.delta, "partial_json", "") or ""
        elif event.type == "content_block_stop":
            assert event.index == open_index
            open_index = None
    assert open_index is None
    return {"blocks": blocks, "delta": stream[-2], "start": stream[0]}


# -- plain answers ---------------------------------------------------------------------


def test_plain_answer_is_a_message(client):
    message = client.messages.create(
        model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Say hello."}], extra_body=GREEDY
    )
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.id.startswith("msg_")
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert all(block.type == "text" for block in message.content)
    assert_no_markup(text_of(message))
    assert 1 <= message.usage.output_tokens <= 8 and message.usage.input_tokens > 5
    assert message.model_extra["optiq"]["mtp_depth"] == 2


def test_streamed_message_equals_the_whole_one(client):
    request = dict(max_tokens=16, messages=[{"role": "user", "content": "Count to five."}], extra_body=GREEDY)
    whole = client.messages.create(model=MODEL, **request)
    streamed = assemble(events(client, **request))
    assert "".join(b["text"] for b in streamed["blocks"]) == text_of(whole)
    assert streamed["delta"].delta.stop_reason == whole.stop_reason
    assert streamed["delta"].usage.output_tokens == whole.usage.output_tokens
    assert streamed["start"].message.usage.input_tokens == whole.usage.input_tokens


def test_system_as_text_or_blocks_is_the_same_prompt(client):
    system = "You answer in one word."
    plain = client.messages.count_tokens(model=MODEL, system=system, messages=QUESTION)
    blocks = client.messages.count_tokens(
        model=MODEL,
        system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        messages=QUESTION,
    )
    bare = client.messages.count_tokens(model=MODEL, messages=QUESTION)
    assert plain.input_tokens == blocks.input_tokens > bare.input_tokens


def test_count_tokens_is_the_prompt_a_message_is_made_from(client):
    request = dict(system="Be brief.", messages=QUESTION, tools=[WEATHER])
    counted = client.messages.count_tokens(model=MODEL, **request)
    made = client.messages.create(model=MODEL, max_tokens=2, extra_body=GREEDY, **request)
    assert counted.input_tokens == made.usage.input_tokens


def test_models_are_listed_for_both_clients(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).display_name == MODEL
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})
    listing = json.loads(connection.getresponse().read())
    assert (
        listing["object"] == "list"
        and listing["data"][0]["object"] == "model"
        and listing["data"][0]["owned_by"] == "optiq"
    )


# -- tools -----------------------------------------------------------------------------


def test_forced_tool_round_trip_reuses_the_prompt_cache(client):
    first = client.messages.create(
        model=MODEL,
        max_tokens=32,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body=GREEDY,
    )
    uses = [b for b in first.content if b.type == "tool_use"]
    errors = first.model_extra["optiq"].get("tool_call_errors") or []
    assert uses or errors
    assert_no_markup(text_of(first))
    for use in uses:
        assert use.name == "get_weather" and use.id.startswith("toolu_") and isinstance(use.input, dict)
    if uses and first.stop_reason != "max_tokens":
        assert first.stop_reason == "tool_use"
    made = [b.model_dump(exclude_none=True, exclude={"caller", "toolset_name"}) for b in first.content]
    reply = made if uses else [FIXED_USE]
    history = QUESTION + [
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": reply[-1]["id"],
                    "content": [{"type": "text", "text": "sunny, 21 C"}],
                }
            ],
        },
    ]
    second = client.messages.create(model=MODEL, max_tokens=12, messages=history, tools=[WEATHER], extra_body=GREEDY)
    assert second.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert_no_markup(text_of(second))
    assert second.usage.input_tokens > first.usage.input_tokens
    if uses and first.stop_reason == "tool_use":
        # The tool_use went back as the model's own tokens: the whole first exchange came from the cache.
        assert second.model_extra["optiq"]["reused_prompt_tokens"] >= first.usage.input_tokens


def test_forced_tool_streams_as_input_json(client):
    stream = assemble(
        events(
            client,
            max_tokens=32,
            messages=QUESTION,
            tools=[WEATHER, CLOCK],
            tool_choice={"type": "any"},
            extra_body=GREEDY,
        )
    )
    uses = [b for b in stream["blocks"] if b["type"] == "tool_use"]
    errors = stream["delta"].model_extra["optiq"].get("tool_call_errors") or []
    assert uses or errors
    for use in uses:
        assert use["name"] in ("get_weather", "get_time") and isinstance(json.loads(use["json"]), dict)
    if uses and stream["delta"].delta.stop_reason != "max_tokens":
        assert stream["delta"].delta.stop_reason == "tool_use"


def test_tool_choice_none_never_returns_tool_use(client):
    message = client.messages.create(
        model=MODEL, max_tokens=16, messages=QUESTION, tools=[WEATHER], tool_choice={"type": "none"}, extra_body=GREEDY
    )
    assert all(block.type == "text" for block in message.content)
    assert message.stop_reason in ("end_turn", "max_tokens")


def scripted(outputs: list[str], **config):
    engine = ScriptedEngine(outputs)
    server = Server(engine, ServeConfig(port=0, **config)).start()
    return (
        engine,
        server,
        anthropic.Anthropic(base_url=f"http://127.0.0.1:{server.port}", api_key="unused", max_retries=0, timeout=30),
    )


def test_scripted_calls_are_validated_as_on_the_openai_route():
    made = "Checking." + call_text("get_weather", city="Paris", days="3") + call_text("get_weather", days="soon")
    engine, server, client = scripted([made, made])
    try:
        message = client.messages.create(model=MODEL, max_tokens=200, messages=QUESTION, tools=[WEATHER])
        assert message.stop_reason == "tool_use"
        text, good, bad = message.content
        assert text.type == "text" and text.text == "Checking."
        assert good.input == {"city": "Paris", "days": 3}  # coerced by the schema, as on the OpenAI route
        assert bad.input == {"days": "soon"}  # returned as the model made it, with the reasons beside it
        [report] = message.model_extra["optiq"]["tool_call_errors"]
        assert report["id"] == bad.id and report["index"] == 1 and any("city" in e for e in report["errors"])
        stream = assemble(events(client, max_tokens=200, messages=QUESTION, tools=[WEATHER]))
        assert [b["type"] for b in stream["blocks"]] == ["text", "tool_use", "tool_use"]
        assert [json.loads(b["json"]) for b in stream["blocks"][1:]] == [{"city": "Paris", "days": 3}, {"days": "soon"}]
        assert [e["index"] for e in stream["delta"].model_extra["optiq"]["tool_call_errors"]] == [1]
    finally:
        server.close()


def test_forced_tools_are_prefilled_from_the_first_token():
    engine, server, client = scripted(
        ["<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>", "get_time>\n</function>\n</tool_call>"]
    )
    try:
        named = client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=QUESTION,
            tools=[WEATHER, CLOCK],
            tool_choice={"type": "tool", "name": "get_weather"},
        )
        assert [(b.name, b.input) for b in named.content] == [("get_weather", {"city": "Paris"})]
        assert engine.tokenizer.decode(engine.prompts[0][-12:]).endswith("<tool_call>\n<function=get_weather>\n")
        anyone = client.messages.create(
            model=MODEL, max_tokens=64, messages=QUESTION, tools=[WEATHER, CLOCK], tool_choice={"type": "any"}
        )
        assert [b.name for b in anyone.content] == ["get_time"]
        assert engine.tokenizer.decode(engine.prompts[1][-8:]).endswith("<tool_call>\n<function=")
    finally:
        server.close()


def test_stop_sequences_and_max_tokens_set_the_stop_reason():
    engine, server, client = scripted(["one two STOP three", "word " * 30])
    try:
        stopped = client.messages.create(
            model=MODEL, max_tokens=100, messages=QUESTION, stop_sequences=["STOP", "NEVER"]
        )
        assert (
            text_of(stopped) == "one two" and stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "STOP"
        )
        capped = client.messages.create(model=MODEL, max_tokens=5, messages=QUESTION)
        assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 5
    finally:
        server.close()


def test_tool_results_and_errors_reach_the_prompt():
    engine, server, client = scripted(["Done."])
    try:
        history = QUESTION + [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such city", "is_error": True},
                    {"type": "text", "text": "Try again."},
                ],
            },
        ]
        client.messages.create(model=MODEL, max_tokens=8, system="Be brief.", messages=history, tools=[WEATHER])
        prompt = engine.tokenizer.decode(engine.prompts[0])
        for part in ("Be brief.", "Looking.", "<function=get_weather>", "Error: no such city", "Try again."):
            assert part in prompt
        assert prompt.index("Error: no such city") < prompt.index("Try again.")
    finally:
        server.close()


# -- errors and the key ----------------------------------------------------------------


def test_bad_requests_get_anthropic_errors(client):
    cases = [
        (dict(max_tokens=4, messages=[]), "messages"),
        (
            dict(
                max_tokens=4,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
                        ],
                    }
                ],
            ),
            "image",
        ),
        (
            dict(
                max_tokens=4,
                messages=QUESTION,
                tools=[{**WEATHER, "input_schema": {"type": "object", "properties": {"x": {"type": "strng"}}}}],
            ),
            "input_schema",
        ),
        (dict(max_tokens=4, messages=QUESTION, tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}), "nope"),
        (dict(max_tokens=4, messages=QUESTION, tool_choice={"type": "any"}), "any"),
    ]
    for request, named in cases:
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(model=MODEL, **request)
        assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"
        assert (
            named in caught.value.body["error"]["message"] and "Traceback" not in caught.value.body["error"]["message"]
        )
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=4, messages=QUESTION)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert client.messages.create(model=MODEL, max_tokens=2, messages=QUESTION).content is not None  # still serving


def test_max_tokens_is_required_and_capped_to_the_context(server):
    def post(body: dict):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request(
            "POST", "/v1/messages", json.dumps(body), {"x-api-key": "s3cret", "anthropic-version": "2023-06-01"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    status, body = post({"model": MODEL, "messages": QUESTION})
    assert (
        status == 400 and body["error"]["type"] == "invalid_request_error" and "max_tokens" in body["error"]["message"]
    )
    status, body = post(
        {"model": MODEL, "messages": QUESTION, "max_tokens": 64000, "temperature": 0, "stop_sequences": [" "]}
    )
    assert status == 200 and body["type"] == "message"


def test_the_key_is_taken_from_x_api_key_or_bearer(server):
    url = f"http://127.0.0.1:{server.port}"
    for wrong in (
        anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0),
        anthropic.Anthropic(base_url=url, auth_token="wrong", max_retries=0),
    ):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(model=MODEL, max_tokens=2, messages=QUESTION)
        assert caught.value.body["error"]["type"] == "authentication_error"
    bearer = anthropic.Anthropic(base_url=url, auth_token="s3cret", max_retries=0)
    assert bearer.messages.create(model=MODEL, max_tokens=2, messages=QUESTION).type == "message"


# -- Claude Code's shape ---------------------------------------------------------------


@pytest.mark.slow
def test_a_claude_code_shaped_request_streams_on_the_embedded_model(client):
    body = claude_code_request(MODEL, "List the Python files in this project.")
    assert len(body["tools"]) >= 20 and len(CLAUDE_CODE_TOOLS) >= 20
    stream = list(
        client.messages.create(
            **{k: v for k, v in body.items() if k != "temperature"},
            extra_body={"temperature": body["temperature"]},
            extra_headers={"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
        )
    )
    message = assemble(stream)
    assert message["start"].message.usage.input_tokens > 2500  # the long system prompt and all the tools are in it
    assert message["delta"].delta.stop_reason in ("end_turn", "max_tokens", "tool_use")
    names = {tool["name"] for tool in CLAUDE_CODE_TOOLS}
    for block in message["blocks"]:
        if block["type"] == "tool_use":
            assert block["name"] in names and isinstance(json.loads(block["json"]), dict)
        else:
            assert_no_markup(block["text"])
