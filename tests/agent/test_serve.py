"""`optiq serve` on a loopback port, driven by the official ``openai`` client.

The embedded model is real but not smart, so tests against it assert the protocol: tool calls
come back structured (or as reported errors), never as markup in ``content``; streamed and whole
answers agree; a growing conversation reuses the prompt cache. Where a test needs the model to
write a given thing (an invalid call, a call under ``tool_choice="none"``) or to keep generating
(queue, disconnect), a scripted engine plays the model's side through the real server.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import subprocess
import sys
import time

import openai
import pytest

from agent.serve import ServeConfig, Server
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.errors import BadInputError
from tests.agent.scripted_engine import ScriptedEngine, call_text

MODEL = "tiny-agent"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
MARKUP = ("<tool_call>", "</tool_call>", "<function=", "<parameter=", "<|im_start|>", "<|im_end|>", "<|endoftext|>")


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp=True)


@pytest.fixture(scope="module")
def server(engine):
    with Server(engine, ServeConfig(port=0, max_request_bytes=64 * 1024)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def assert_no_markup(text: str | None) -> None:
    for tag in MARKUP:
        assert tag not in (text or ""), f"raw markup {tag!r} in content: {text!r}"


def assert_protocol(message, finish_reason: str) -> None:
    """A forced call comes back as structured calls or as reported errors; content never holds markup."""
    assert_no_markup(message.content)
    errors = (message.model_extra or {}).get("tool_call_errors") or []
    assert message.tool_calls or errors
    for call in message.tool_calls or []:
        assert call.id.startswith("call_") and call.type == "function"
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments), dict)
    if message.tool_calls and finish_reason != "length":
        assert finish_reason == "tool_calls"
    for error in errors:
        assert error["errors"] and all(isinstance(e, str) for e in error["errors"])


def expected_finish(completion_tokens: int, max_tokens: int, called: bool) -> str:
    """The finish reason the server promises: the length limit first, then calls, else a stop."""
    if completion_tokens >= max_tokens:
        return "length"
    return "tool_calls" if called else "stop"


def streamed(client, **request):
    """Send a streaming request; returns the assembled answer and the raw chunks."""
    chunks = list(client.chat.completions.create(model=MODEL, stream=True, **request))
    content, calls, errors, finish = "", {}, [], None
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            assert_no_markup(delta.content)
            content += delta.content or ""
            errors += (delta.model_extra or {}).get("tool_call_errors") or []
            for part in delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or part.id
                call["name"] += part.function.name or ""
                call["arguments"] += part.function.arguments or ""
            finish = choice.finish_reason or finish
    return {"content": content, "calls": [calls[i] for i in sorted(calls)], "errors": errors, "finish": finish}, chunks


def echo(message) -> dict:
    """The assistant message as a client sends it back in the next request."""
    return message.model_dump(include={"role", "content", "tool_calls"}, exclude_none=True)


FIXED_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_fixed", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ],
}


# -- plain answers ---------------------------------------------------------------------


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    status, body, _ = raw(server, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == MODEL and body["mtp"] is True


def test_plain_answer_reports_usage_and_mtp(client):
    raw_response = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
    )
    answer = raw_response.parse()
    choice = answer.choices[0]
    assert isinstance(choice.message.content, str) and not choice.message.tool_calls
    assert_no_markup(choice.message.content)
    assert choice.finish_reason in ("stop", "length")
    assert 1 <= answer.usage.completion_tokens <= 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert raw_response.headers["x-optiq-mtp"] == "on"
    report = answer.model_extra["optiq"]
    assert report["mtp"] is True and report["mtp_depth"] == 2
    assert raw_response.headers["x-optiq-mtp-acceptance"] == (
        "" if report["mtp_acceptance"] is None else f"{report['mtp_acceptance']:.4f}"
    )


def test_streamed_answer_equals_whole_answer(client):
    request = dict(messages=[{"role": "user", "content": "Count to five."}], max_tokens=16, temperature=0, seed=1)
    whole = client.chat.completions.create(model=MODEL, **request).choices[0]
    stream, chunks = streamed(client, stream_options={"include_usage": True}, **request)
    assert stream["content"] == whole.message.content
    assert stream["finish"] == whole.finish_reason
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert chunks[-2].model_extra["optiq"]["mtp_depth"] == 2


def test_growing_conversation_reuses_the_prompt_cache(client):
    first = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER], max_tokens=6, temperature=0)
    grown = QUESTION + [echo(first.choices[0].message), {"role": "user", "content": "And tomorrow?"}]
    second = client.chat.completions.create(model=MODEL, messages=grown, tools=[WEATHER], max_tokens=6, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens, (cached, first.usage)
    assert second.usage.prompt_tokens > cached


# -- tool calls ------------------------------------------------------------------------


def test_tool_call_round_trip(client):
    first = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[WEATHER], tool_choice=NAMED, max_tokens=24, temperature=0
    )
    choice = first.choices[0]
    assert_protocol(choice.message, choice.finish_reason)
    call = echo(choice.message) if choice.message.tool_calls else FIXED_CALL
    call_id = call["tool_calls"][0]["id"]
    history = QUESTION + [call, {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "sunny", "c": 21}'}]
    answer = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], max_tokens=12, temperature=0
    )
    choice = answer.choices[0]
    assert choice.finish_reason == expected_finish(answer.usage.completion_tokens, 12, bool(choice.message.tool_calls))
    assert_no_markup(answer.choices[0].message.content)
    assert answer.usage.prompt_tokens > first.usage.prompt_tokens


def test_tool_call_round_trip_streaming(client):
    first, _ = streamed(
        client, messages=QUESTION, tools=[WEATHER], tool_choice="required", max_tokens=24, temperature=0
    )
    assert first["calls"] or first["errors"]
    for call in first["calls"]:
        assert call["id"].startswith("call_") and call["name"] == "get_weather"
        assert isinstance(json.loads(call["arguments"]), dict)
    if first["calls"] and first["finish"] != "length":
        assert first["finish"] == "tool_calls"
    made = first["calls"][0] if first["calls"] else None
    call = (
        FIXED_CALL
        if made is None
        else {
            "role": "assistant",
            "content": first["content"] or None,
            "tool_calls": [
                {
                    "id": made["id"],
                    "type": "function",
                    "function": {"name": made["name"], "arguments": made["arguments"]},
                }
            ],
        }
    )
    history = QUESTION + [call, {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": "sunny"}]
    answer, chunks = streamed(
        client, messages=history, tools=[WEATHER], max_tokens=12, temperature=0, stream_options={"include_usage": True}
    )
    usage = chunks[-1].usage
    assert answer["finish"] == expected_finish(usage.completion_tokens, 12, bool(answer["calls"]))
    # The history starts with the first request's prompt, which the server's cache still holds.
    reused = next(c.model_extra["optiq"] for c in chunks if (c.model_extra or {}).get("optiq"))["reused_prompt_tokens"]
    assert 0 < reused == usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens


def test_tool_choice_none_never_returns_calls(client):
    answer = client.chat.completions.create(
        model=MODEL, messages=QUESTION, tools=[WEATHER], tool_choice="none", max_tokens=16, temperature=0
    )
    choice = answer.choices[0]
    assert not choice.message.tool_calls and choice.finish_reason in ("stop", "length")
    assert isinstance(choice.message.content, str)
    assert_no_markup(choice.message.content)


# -- bad input -------------------------------------------------------------------------


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return response.status, json.loads(data), response
    finally:
        connection.close()


@pytest.mark.parametrize(
    "body, status, param",
    [
        (b'{"model": "tiny-agent", "messages": [', 400, None),
        (b'["not", "an", "object"]', 400, None),
        (json.dumps({"messages": QUESTION, "temperature": "hot"}).encode(), 422, "temperature"),
        (json.dumps({"messages": QUESTION, "max_tokens": "8"}).encode(), 422, "max_tokens"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 422, "messages.0.role"),
        (json.dumps({"messages": []}).encode(), 422, "messages"),
        (json.dumps({"messages": QUESTION, "n": 2}).encode(), 422, "n"),
    ],
)
def test_malformed_requests_get_error_objects(server, body, status, param):
    code, answer, _ = raw(server, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert code == status
    error = answer["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and "Traceback" not in error["message"]
    assert error["param"] == param


def test_bad_requests_through_the_client(client):
    bad_schema = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "strng"}}}},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[bad_schema], max_tokens=4)
    assert (
        caught.value.body["code"] == "invalid_tool_schema"
        and caught.value.body["param"] == "tools.0.function.parameters"
    )
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=4)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=10**6)
    assert caught.value.body["code"] == "context_length_exceeded" and caught.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 5000}], max_tokens=4
        )
    assert caught.value.body["code"] == "context_length_exceeded" and caught.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "tool", "content": "no id"}], max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    # The server is still serving.
    assert client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2).choices


def test_oversized_body_gets_413_and_unknown_route_404(server, client):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 70_000}]}).encode()
    status, answer, _ = raw(server, "POST", "/v1/chat/completions", big)
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    status, answer, _ = raw(server, "POST", "/v1/embeddings", b"{}")
    assert status == 404 and "POST /v1/embeddings" in answer["error"]["message"]
    assert client.models.list().data


def test_unknown_fields_are_ignored_and_named(server):
    body = json.dumps({"messages": QUESTION, "max_tokens": 2, "logit_bias": {"1": 5}, "user": "u"}).encode()
    status, answer, response = raw(server, "POST", "/v1/chat/completions", body)
    assert status == 200 and answer["object"] == "chat.completion"
    assert response.getheader("x-optiq-ignored-fields") == "logit_bias,user"


# -- API key ---------------------------------------------------------------------------


def test_binding_beyond_loopback_needs_an_api_key(engine):
    with pytest.raises(BadInputError, match="--api-key"):
        Server(engine, ServeConfig(host="0.0.0.0", port=0))
    ServeConfig(host="0.0.0.0", api_key="k").check()
    ServeConfig(host="::1").check()


def test_api_key_is_required_when_set(engine):
    with Server(engine, ServeConfig(port=0, api_key="s3cret")) as server:
        for key in ("wrong", "s3cret2"):
            stranger = openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=30)
            with pytest.raises(openai.AuthenticationError):
                stranger.models.list()
            with pytest.raises(openai.AuthenticationError):
                stranger.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2)
        owner = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0, timeout=30)
        assert owner.models.list().data[0].id == MODEL
        assert owner.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2).choices
        assert raw(server, "GET", "/health")[0] == 200


# -- scripted model: exact outputs, slow outputs ----------------------------------------


def scripted_client(engine, **config):
    server = Server(engine, ServeConfig(port=0, **config)).start()
    return server, openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)


def test_scripted_calls_are_coerced_validated_and_reported():
    outputs = [
        "Checking." + call_text("get_weather", city="Paris", days="3") + call_text("get_weather", days="soon"),
        "Checking." + call_text("get_weather", city="Paris", days="3") + call_text("get_weather", days="soon"),
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo",
    ]
    server, client = scripted_client(ScriptedEngine(outputs))
    try:
        whole = client.chat.completions.with_raw_response.create(model=MODEL, messages=QUESTION, tools=[WEATHER])
        message = whole.parse().choices[0].message
        assert whole.parse().choices[0].finish_reason == "tool_calls"
        assert message.content == "Checking."
        good, bad = message.tool_calls
        assert json.loads(good.function.arguments) == {"city": "Paris", "days": 3}  # coerced by schema
        assert json.loads(bad.function.arguments) == {"days": "soon"}  # returned as the model made it
        [report] = message.model_extra["tool_call_errors"]
        assert report["index"] == 1 and report["id"] == bad.id and report["name"] == "get_weather"
        assert any("city" in e for e in report["errors"]) and any("days" in e for e in report["errors"])
        assert whole.headers["x-optiq-tool-call-errors"] == "1"

        stream, _ = streamed(client, messages=QUESTION, tools=[WEATHER])
        assert stream["content"] == "Checking." and stream["finish"] == "tool_calls"
        assert [json.loads(c["arguments"]) for c in stream["calls"]] == [{"city": "Paris", "days": 3}, {"days": "soon"}]
        assert [e["index"] for e in stream["errors"]] == [1]

        cut = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER]).choices[0]
        assert not cut.message.tool_calls and cut.message.content in ("", None)
        [report] = cut.message.model_extra["tool_call_errors"]
        assert report["index"] is None and "Oslo" in report["raw"] and "cut off" in report["errors"][0]
    finally:
        server.close()


def test_tool_choice_none_and_stop_strings_end_the_output():
    outputs = [
        "Let me look." + call_text("get_weather", city="Paris"),
        "one two STOP three",
        "one two ST",
    ]
    server, client = scripted_client(ScriptedEngine(outputs))
    try:
        none = client.chat.completions.create(
            model=MODEL, messages=QUESTION, tools=[WEATHER], tool_choice="none"
        ).choices[0]
        assert none.message.content == "Let me look." and not none.message.tool_calls and none.finish_reason == "stop"
        stopped = client.chat.completions.create(model=MODEL, messages=QUESTION, stop=["STOP"]).choices[0]
        assert stopped.message.content == "one two" and stopped.finish_reason == "stop"
        stream, _ = streamed(client, messages=QUESTION, stop="STOP")
        assert stream["content"] == "one two ST"  # a partial stop string at the end is text after all
    finally:
        server.close()


def test_forced_call_is_prefilled_into_the_prompt():
    engine = ScriptedEngine(["<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"])
    prompts = engine.prompts
    server, client = scripted_client(engine)
    try:
        answer = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER], tool_choice=NAMED)
        [call] = answer.choices[0].message.tool_calls
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        tail = engine.tokenizer.decode(prompts[0][-12:])
        assert tail.endswith("<tool_call>\n<function=get_weather>\n")
    finally:
        server.close()


def test_full_queue_answers_429_and_disconnect_stops_generation():
    engine = ScriptedEngine(["word " * 400, "ok"], step_s=0.02)
    server, client = scripted_client(engine, queue_size=0)
    try:
        stream = client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True, max_tokens=400)
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        assert engine.started.wait(5)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2)
        assert caught.value.body["code"] == "queue_full" and "busy" in caught.value.body["message"]
        stream.close()  # the client goes away mid-stream
        assert engine.stopped_early.wait(5)
        answer, deadline = None, time.monotonic() + 5
        while answer is None and time.monotonic() < deadline:
            try:
                answer = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2)
            except openai.RateLimitError:
                time.sleep(0.05)  # the stopped generation may still be releasing the slot
        assert answer is not None and answer.choices[0].message.content == "ok"
    finally:
        server.close()


def test_thinking_is_reasoning_content_and_max_tokens_is_capped():
    outputs = ["Paris is in France.</think>\n\nIt is sunny.", "word " * 60]
    server, client = scripted_client(ScriptedEngine(outputs), max_tokens=40)
    try:
        thinking = {"chat_template_kwargs": {"enable_thinking": True}}
        message = client.chat.completions.create(model=MODEL, messages=QUESTION, extra_body=thinking).choices[0].message
        assert message.content == "It is sunny."
        assert message.model_extra["reasoning_content"] == "Paris is in France."
        capped = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=100)
        assert capped.usage.completion_tokens == 40 and capped.choices[0].finish_reason == "length"
    finally:
        server.close()


def test_next_turn_extends_the_tokens_seen():
    output = "Sure." + call_text("get_weather", city="Paris", days="2")
    engine = ScriptedEngine([output, "It is sunny.", "Bye."])
    prompts = engine.prompts
    server, client = scripted_client(engine)
    try:
        first = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER]).choices[0].message
        history = QUESTION + [echo(first), {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny"}]
        second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER]).choices[0].message
        seen = prompts[0] + engine.tokenizer.encode(output, add_special_tokens=False)
        assert prompts[1][: len(seen)] == seen  # the model's own tokens, not a re-rendering of them
        changed = history + [{"role": "assistant", "content": "something else"}, {"role": "user", "content": "ok"}]
        assert second.content == "It is sunny."
        client.chat.completions.create(model=MODEL, messages=changed, tools=[WEATHER])
        # Not an extension of what was seen (a different assistant turn): rendered whole again.
        assert prompts[2][: len(seen)] != seen and "something else" in engine.tokenizer.decode(prompts[2])
    finally:
        server.close()


# -- the command -----------------------------------------------------------------------


def test_cli_refuses_an_open_host_without_a_key(capsys):
    from agent.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_cli_serves_until_stopped():
    command = [
        sys.executable,
        "-m",
        "agent.cli",
        "serve",
        "--model",
        str(embedded_base_path()),
        "--port",
        "0",
        "--no-mtp",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        match, lines, deadline = None, [], time.monotonic() + 90
        while match is None and time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stderr], [], [], 1)[0]:
                lines.append(process.stderr.readline())
                match = re.search(r"at http://127\.0\.0\.1:(\d+)/v1", lines[-1])
        assert match and "MTP off" in lines[-1], lines
        connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=30)
        connection.request("GET", "/health")
        body = json.loads(connection.getresponse().read())
        connection.close()
        assert body["model"] == MODEL and body["mtp"] is False
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_disconnect_stops_a_whole_answer_too():
    engine = ScriptedEngine(["word " * 400], step_s=0.02)
    server = Server(engine, ServeConfig(port=0)).start()
    try:
        body = json.dumps({"messages": QUESTION, "max_tokens": 400}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        assert engine.started.wait(5)
        connection.close()  # gone before the answer is ready
        assert engine.stopped_early.wait(5)
        assert engine.last_stats.tokens < 400
    finally:
        server.close()


FROBNICATE = {
    "type": "function",
    "function": {
        "name": "zq_frobnicate",
        "description": "Frobnicate a folder.",
        "parameters": {
            "type": "object",
            "properties": {"target_folder": {"type": "string"}},
            "required": ["target_folder"],
        },
    },
}
FROB_QUESTION = [{"role": "user", "content": "Please frobnicate the zq with target folder `docs`."}]


def called_names(client) -> list[str]:
    reply = client.chat.completions.create(model=MODEL, messages=FROB_QUESTION, tools=[FROBNICATE], temperature=0)
    message = reply.choices[0].message
    errors = (message.model_extra or {}).get("tool_call_errors") or []
    return [c.function.name for c in message.tool_calls or []] + [e.get("name", "?") for e in errors]


def test_call_names_are_guided_to_the_request_tools_unless_turned_off(client, engine):
    guided = called_names(client)
    assert guided and set(guided) == {"zq_frobnicate"}  # one call or several, every name an offered one
    with Server(engine, ServeConfig(port=0, guide_calls=False)) as unguided:
        free = openai.OpenAI(base_url=unguided.url, api_key="unused", max_retries=0, timeout=60)
        # tiny-agent left alone writes a function name it remembers.
        assert set(called_names(free)) != {"zq_frobnicate"}
