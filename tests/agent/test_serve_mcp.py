"""`optiq serve --mcp`: the server offers a real MCP server's tools beside the request's and runs them itself."""

import json
import sys
from pathlib import Path

import openai
import pytest

from agent.cli.serve import _server_tools
from agent.serve import ServeConfig, Server
from tests.agent.test_serve import MODEL, QUESTION, WEATHER, ScriptedEngine, call_text, streamed

SERVER = str(Path(__file__).parents[1] / "tools" / "mcp_server.py")


@pytest.fixture(scope="module")
def server_tools(tmp_path_factory):
    path = tmp_path_factory.mktemp("mcp") / "servers.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "t": {"command": sys.executable, "args": [SERVER], "approval": "allow"},
                    "careful": {"command": sys.executable, "args": [SERVER]},
                }
            }
        )
    )
    tools = _server_tools([str(path)])
    assert [s.name for s in tools.servers] == ["t"]  # a server set to ask is not offered: nobody could answer it
    with tools.start() as started:
        yield started.registry


def serve(engine, registry):
    server = Server(engine, ServeConfig(port=0), registry).start()
    return server, openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)


def test_the_server_runs_its_tools_and_answers_with_their_results(server_tools):
    outputs = [
        "Adding." + call_text("add", a="2", b="40"),
        "It is 42.",
        "Adding." + call_text("add", a="2", b="40"),
        "It is 42.",
    ]
    engine = ScriptedEngine(outputs)
    server, client = serve(engine, server_tools)
    try:
        answer = client.chat.completions.create(model=MODEL, messages=QUESTION).choices[0]
        assert answer.message.content == "Adding.It is 42." and not answer.message.tool_calls
        assert answer.finish_reason == "stop"
        first, second = (engine.tokenizer.decode(p) for p in engine.prompts)
        assert '"name": "add"' in first  # offered in the prompt
        assert "42" not in first and "42" in second.split("Adding.")[-1]  # the tool's result went back to the model
        stream, _ = streamed(client, messages=QUESTION)
        assert stream["content"] == "Adding.It is 42." and stream["calls"] == [] and stream["finish"] == "stop"
    finally:
        server.close()


def test_a_call_to_a_client_tool_goes_back_to_the_client(server_tools):
    engine = ScriptedEngine([call_text("get_weather", city="Paris")])
    server, client = serve(engine, server_tools)
    try:
        answer = client.chat.completions.create(model=MODEL, messages=QUESTION, tools=[WEATHER]).choices[0]
        [call] = answer.message.tool_calls
        assert call.function.name == "get_weather" and answer.finish_reason == "tool_calls"
    finally:
        server.close()
