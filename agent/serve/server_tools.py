"""The server's own tools (``optiq serve --mcp``): offered beside a request's tools, run by the server.

A request's tools are extended with the server's (a client tool of the same name wins). When an
answer calls server tools only, the server validates and runs them (as the agent does) and
generates again with their results, up to ``MAX_ROUNDS`` generations; the client gets the text of
every round and never sees the server's calls. An answer that calls a client tool goes back to the
client as it is, minus any server calls in it (not run). A server cannot ask anyone, so only tools
that need no approval are offered (``optiq serve`` leaves out servers set to ``"ask"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.context import cap_output
from agent.engine import Engine
from agent.serve.completion import Call, Completion, Piece
from agent.serve.schema import ChatRequest, FunctionSpec, Message, ToolSpec
from agent.toolrun import ToolRunner
from tools.registry import Registry
from tools.validate import validate_call

MAX_ROUNDS = 8


class ServerToolLoop:
    """Looks like a ``Completion`` to the HTTP layer: iterate ``pieces()`` once, then read ``plan`` and ``outcome``."""

    def __init__(self, complete: Callable[[ChatRequest], Completion], request: ChatRequest, tools: Registry):
        self._complete = complete
        self._tools = tools
        self._request, self._server_names = _offer(request, tools)
        self.current = complete(self._request)  # built now, so a prompt that does not fit fails before any output
        self._ran_tools = False
        self._generated: list[int] = []

    @property
    def engine(self) -> Engine:
        return self.current.engine

    @property
    def plan(self):
        return self.current.plan

    @property
    def outcome(self):
        return self.current.outcome

    def reply_message(self) -> dict[str, Any]:
        return self.current.reply_message()

    def pieces(self, should_stop: Callable[[], bool] | None = None) -> Iterator[Piece]:
        for round_ in range(MAX_ROUNDS):
            if round_:
                self.current = self._complete(self._request)
            hidden: list[Call] = []
            visible = 0
            for piece in self.current.pieces(should_stop=should_stop):
                if isinstance(piece, Call) and piece.name in self._server_names:
                    hidden.append(piece)
                    continue
                if isinstance(piece, Call):
                    piece, visible = replace(piece, index=visible), visible + 1
                yield piece
            self._generated += self.current.outcome.generated
            if not hidden or visible or self.current.outcome.finish_reason != "tool_calls" or round_ == MAX_ROUNDS - 1:
                break
            self._request = self._after(self.current, hidden)
            self._ran_tools = True
        self._settle()

    def _after(self, completion: Completion, calls: list[Call]) -> ChatRequest:
        """The request plus this answer and its tools' results; later rounds choose tools freely."""
        answer = Message.model_validate(
            {
                "role": "assistant",
                "content": completion.outcome.content,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            }
        )
        results = [Message(role="tool", tool_call_id=c.id, name=c.name, content=self._run(c)) for c in calls]
        return self._request.model_copy(
            update={"messages": [*self._request.messages, answer, *results], "tool_choice": None}
        )

    def _run(self, call: Call) -> str:
        if call.errors:  # validated as the model wrote it (see completion): the errors are the result
            return "\n".join(call.errors)
        tool = self._tools.get(call.name)
        validation = validate_call({"name": call.name, "arguments": json.loads(call.arguments)}, tool)
        if not validation.ok or tool is None:  # an unknown name fails validation
            return "\n".join(validation.errors)
        runner = ToolRunner(Path.cwd())
        try:
            content, _ = runner.execute(tool, validation.arguments)
        finally:
            runner.close()
        return cap_output(content)

    def _settle(self) -> None:
        """The answer's outcome: every round's tokens; never extended by the next request once tools ran unseen."""
        outcome = self.current.outcome
        outcome.generated = self._generated
        outcome.calls = [c for c in outcome.calls if c.name not in self._server_names]
        if not outcome.calls and outcome.finish_reason == "tool_calls":
            outcome.finish_reason = "stop"
        if self._ran_tools:
            outcome.clean = False


def _offer(request: ChatRequest, tools: Registry) -> tuple[ChatRequest, set[str]]:
    """The request with the server's tools added after its own, and the names the server answers."""
    own = {spec.function.name for spec in request.tools or []}
    added = [tool for tool in tools if tool.name not in own]
    specs = [
        ToolSpec(
            type="function", function=FunctionSpec(name=t.name, description=t.description, parameters=t.parameters)
        )
        for t in added
    ]
    return request.model_copy(update={"tools": [*(request.tools or []), *specs]}), {t.name for t in added}
