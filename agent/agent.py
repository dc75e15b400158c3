"""The agent loop: the model calls tools, the calls are validated and run, the results go back, until it answers.

Public API (the TUI, ``optiq run``, ``optiq eval`` and the server use only this)::

    agent = Agent(engine, registry, workspace, approve=approve_none, max_steps=8)
    for event in agent.send("What is 37 * 91? Use Python."):   # a generator; run it in a worker thread
        ...                                                    # render / print / record each event
    agent.interrupt()   # thread-safe: the generation stops, the partial answer stays, stop reason "interrupted"
    agent.reset()       # forget the conversation (and session-wide approvals)
    agent.messages      # the conversation as chat-template messages (role/content/tool_calls/tool)
    agent.registry      # the tools on offer
    agent.close()       # stop the sandbox worker, close the trace

``send`` yields the events of ``agent.events`` in this order for each step: ``text`` /
``reasoning`` / ``tool_call_start`` / ``tool_call`` / ``error`` (malformed call) as the model
streams, then ``stats``; then per call ``tool_validated`` or ``tool_rejected``, for side-effecting
tools ``approval_request`` and ``approval``, then ``tool_result``; ``notice`` when old tool output is
trimmed; ``error`` with an empty ``raw`` when the generation itself failed. The last event is
always ``done`` (answer, stop reason, steps, tokens, seconds); stop reasons: ``answered``,
``max_steps``, ``length`` (the answer hit ``max_tokens``), ``repeated_failure``, ``interrupted``,
``error``. The turn starts with a ``user`` event so that traces hold the whole conversation.

``approve`` is called with an ``ApprovalRequest`` before a side-effecting tool runs and may block;
it returns ``ApprovalDecision.ALLOW_ONCE``, ``ALLOW_SESSION`` (that tool, until ``reset``) or
``DENY``. Invalid calls, denied calls and tool failures go back to the model as tool results; a
call that failed before and is made again unchanged ends the turn ("repeated_failure").

Prompts are extended turn by turn (``chat.Transcript``), so the engine reuses its prompt cache.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.approval import ApprovalDecision, ApprovalRequest, Approver, approve_none, preview
from agent.chat import ChatRenderer, Transcript
from agent.context import TOOL_OUTPUT_CHARS, cap_output, trim_old_results
from agent.engine import Engine
from agent.events import (
    AgentEvent,
    ApprovalEvent,
    ApprovalRequestEvent,
    DoneEvent,
    ErrorEvent,
    NoticeEvent,
    StatsEvent,
    StopReason,
    ToolCall,
    ToolRejectedEvent,
    ToolResultEvent,
    ToolValidatedEvent,
    UserEvent,
    call_id,
)
from agent.session import SessionWriter
from agent.toolcalls import Parsed, StreamParser, collect
from agent.toolrun import ToolRunner
from optiq_runtime.errors import OptiqError
from optiq_runtime.guide import CallGuide
from optiq_runtime.sampling import Sampling
from tools.registry import Registry
from tools.tool import Tool
from tools.validate import validate_call

CHARS_PER_TOKEN = 3  # a cautious guess, only used to size how much old output to trim
INTERRUPTED = "interrupted by the user"


@dataclass
class Generation:
    """One model output: what the parser read from it, its tokens, and whether it hit ``max_tokens``."""

    parsed: Parsed = field(default_factory=Parsed)
    token_ids: list[int] = field(default_factory=list)
    truncated: bool = False


@dataclass
class _Turn:
    """What one ``send`` has done so far.

    The loop's helpers either return a value and yield nothing, or yield events and return nothing;
    what the second kind produce besides events lands here (``generation``, ``new``, ``repeated``).
    """

    start: float
    steps: int = 0
    tokens: int = 0
    failed: set[str] = field(default_factory=set)  # calls that failed, so a repeat ends the turn
    repeated: str = ""  # why the turn ends on a repeated failing call ('' while it goes on)
    generation: Generation = field(default_factory=Generation)  # the latest model output
    new: list[dict[str, Any]] = field(default_factory=list)  # messages since that output: the next prompt's tail


class Agent:
    """A conversation with tool calls over one engine, registry and workspace."""

    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        workspace: Path,
        approve: Approver = approve_none,
        *,
        max_steps: int = 8,
        enable_thinking: bool = False,
        sampling: Sampling | None = None,
        system: str | None = None,
        sandbox: Any = None,
        context_tokens: int = 8192,
        tool_output_chars: int = TOOL_OUTPUT_CHARS,
        trace: SessionWriter | None = None,
    ):
        self.engine = engine
        self.registry = registry
        self.workspace = Path(workspace)
        self.approve = approve
        self.max_steps = max_steps
        self.enable_thinking = enable_thinking
        self.sampling = sampling or Sampling()
        self.system = system
        self.context_tokens = context_tokens
        self.tool_output_chars = tool_output_chars
        self.trace = trace
        self._runner = ToolRunner(self.workspace, sandbox)
        self._interrupt = threading.Event()
        self.reset()

    # -- public surface

    def send(self, text: str) -> Iterator[AgentEvent]:
        """Run one user request to its end, yielding every event; the last one is ``done``."""
        self._interrupt.clear()
        for event in self._turn(text):
            if self.trace is not None:
                self.trace.write(event)
            yield event

    def interrupt(self) -> None:
        """Stop the running turn at the next token or tool boundary (safe from any thread)."""
        self._interrupt.set()

    def reset(self) -> None:
        """Forget the conversation and session-wide approvals; the next prompt is rendered afresh."""
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        self._allowed: set[str] = set()
        self._renderer = ChatRenderer(self.engine.tokenizer, self.registry.openai(), self.enable_thinking)
        self._transcript = Transcript(self._renderer)
        self._in_reasoning = self._renderer.ending_thinking()

    def close(self) -> None:
        self._runner.close()
        if self.trace is not None:
            self.trace.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop (each ``yield`` below is where an event comes from; ``yield from`` only to a helper
    #    that yields events and returns nothing)

    def _turn(self, text: str) -> Iterator[AgentEvent]:
        turn = _Turn(start=time.monotonic())
        yield UserEvent(text=text)
        turn.new = [self._add({"role": "user", "content": text})]
        while turn.steps < self.max_steps:
            turn.steps += 1
            try:
                prompt, trimmed = self._prompt(turn.new)
                if trimmed:
                    yield NoticeEvent(
                        message=f"trimmed {trimmed} old tool result(s) to fit the context ({len(prompt)} prompt tokens)"
                    )
                yield from self._generate(prompt, turn)
            except (
                OptiqError,
                RuntimeError,
            ) as error:  # the engine failed (bad prompt, out of memory): end the turn cleanly
                self._transcript.reset()
                yield ErrorEvent(message=f"generation failed: {error}", raw="")
                yield self._done(turn, Generation(), "error", f"generation failed: {error}")
                return
            generation = turn.generation
            self._add(_assistant_message(generation))
            stop = self._stop_after(generation)
            if stop:
                yield from self._close_calls(generation.parsed.calls, INTERRUPTED, turn)
                yield self._done(turn, generation, *stop)
                return
            turn.new = []
            yield from self._act(generation, turn)
            if turn.repeated or self._interrupt.is_set():
                reason: tuple[StopReason, str] = (
                    ("repeated_failure", turn.repeated) if turn.repeated else ("interrupted", INTERRUPTED)
                )
                yield self._done(turn, generation, *reason)
                return
        yield self._done(turn, turn.generation, "max_steps", f"stopped after {self.max_steps} steps without an answer")

    def _stop_after(self, generation: Generation) -> tuple[StopReason, str] | None:
        """Why the turn ends with this output, or None when its calls are to be answered and the loop go on."""
        parsed = generation.parsed
        if self._interrupt.is_set():
            return "interrupted", INTERRUPTED
        if parsed.calls or (parsed.errors and not generation.truncated):
            return None
        if generation.truncated:
            return "length", f"the answer reached the {self.sampling.max_tokens}-token limit"
        return "answered", ""

    def _prompt(self, new: list[dict[str, Any]]) -> tuple[list[int], int]:
        """The next prompt's tokens, and how many old tool results were trimmed first to fit the context."""
        prompt = self._transcript.prompt(self.messages, new)
        overflow = len(prompt) + self.sampling.max_tokens - self.context_tokens
        trimmed = trim_old_results(self.messages, overflow * CHARS_PER_TOKEN) if overflow > 0 else 0
        if trimmed:
            self._transcript.reset()
            prompt = self._transcript.prompt(self.messages, new)
        return prompt, trimmed

    def _generate(self, prompt: list[int], turn: _Turn) -> Iterator[AgentEvent]:
        """Stream one model output through the parser, yielding its events, then ``stats``; the output goes to
        ``turn.generation``."""
        parser = StreamParser(self._renderer.tools, in_reasoning=self._in_reasoning)
        generation, events = Generation(), []
        started = time.monotonic()
        guided = self.sampling.guide_calls
        guide = CallGuide.for_tools(self.engine.tokenizer, self._renderer.tools) if guided else None
        steps = self.engine.stream(prompt, self.sampling, should_stop=self._interrupt.is_set, guide=guide)
        for step in steps:
            generation.token_ids += list(step.tokens)
            for event in parser.feed(step.text):
                events.append(event)
                yield event
        for event in parser.close():
            events.append(event)
            yield event
        generation.parsed = collect(events)
        generation.truncated = self.engine.last_stats.finish_reason == "length"
        self._transcript.generated(generation.token_ids)
        turn.tokens += len(generation.token_ids)
        turn.generation = generation
        yield self._stats(turn.steps, prompt, generation, time.monotonic() - started)

    def _stats(self, step: int, prompt: list[int], generation: Generation, seconds: float) -> StatsEvent:
        stats = self.engine.last_stats
        return StatsEvent(
            step=step,
            prompt_tokens=len(prompt),
            reused_prompt_tokens=stats.reused_prompt_tokens,
            tokens=len(generation.token_ids),
            prefill_tok_s=stats.prefill_tok_s,
            decode_tok_s=stats.decode_tok_s,
            acceptance=stats.acceptance if stats.mtp_used else None,
            seconds=seconds,
            mtp=stats.mtp_used,
            mtp_reason=stats.fallback_reason or stats.mtp_reason,
        )

    # -- acting on an output: every call gets a tool message in ``turn.new``

    def _act(self, generation: Generation, turn: _Turn) -> Iterator[AgentEvent]:
        """Answer every call of ``generation`` (malformed ones first), until one repeats a failure."""
        for index, error in enumerate(generation.parsed.errors):
            bad = ToolCall(name="", arguments={}, raw=error.raw, id=call_id(1000 + index, error.raw))
            if f"raw:{error.raw}" in turn.failed:
                yield from self._repeat(bad, turn)
                return
            yield self._result(bad, error.message, ok=False, turn=turn, key=f"raw:{error.raw}")
        for call in generation.parsed.calls:
            if self._interrupt.is_set():
                yield from self._close_calls([call], INTERRUPTED, turn)
                continue
            yield from self._call(call, turn)
            if turn.repeated:
                return

    def _call(self, call: ToolCall, turn: _Turn) -> Iterator[AgentEvent]:
        """Validate one call; a valid one goes on to approval and its tool."""
        validation = validate_call(call, self.registry)
        key = _call_key(call.name, validation.arguments if validation.ok else call.arguments)
        if key in turn.failed:
            yield from self._repeat(call, turn)
        elif not validation.ok:
            yield ToolRejectedEvent(call=call, reason="invalid", errors=validation.errors)
            yield self._result(call, "\n".join(validation.errors), ok=False, turn=turn, key=key)
        else:
            call = call.model_copy(update={"arguments": validation.arguments})
            yield ToolValidatedEvent(call=call)
            yield from self._run(call, self.registry[call.name], turn, key)

    def _run(self, call: ToolCall, tool: Tool, turn: _Turn, key: str) -> Iterator[AgentEvent]:
        """Ask for approval when the tool needs it (the user's answer comes between its two events), then run it."""
        if tool.needs_approval(call.arguments) and tool.name not in self._allowed:
            request = ApprovalRequest(call=call, preview=preview(call.name, call.arguments))
            yield ApprovalRequestEvent(call=call, preview=request.preview)
            decision = self._decide(request, tool)
            yield ApprovalEvent(call_id=call.id, decision=decision.value)
            if decision is ApprovalDecision.DENY:
                message = f"the user denied this {tool.name} call; it did not run. Do not retry it; answer without it."
                yield ToolRejectedEvent(call=call, reason="denied", errors=[message])
                yield self._result(call, message, ok=False, turn=turn, key=key)
                return
        started = time.monotonic()
        content, ok = self._runner.execute(tool, call.arguments)
        yield self._result(call, content, ok=ok, turn=turn, key=key, seconds=time.monotonic() - started)

    def _decide(self, request: ApprovalRequest, tool: Tool) -> ApprovalDecision:
        """The user's answer (may block); allowing for the session lets the tool run unasked until ``reset``."""
        decision = ApprovalDecision(self.approve(request))
        if decision is ApprovalDecision.ALLOW_SESSION:
            self._allowed.add(tool.name)
        return decision

    def _repeat(self, call: ToolCall, turn: _Turn) -> Iterator[AgentEvent]:
        """A call that failed before, made again unchanged: rejected, and the turn ends (``turn.repeated``)."""
        turn.repeated = f"the model repeated a call that had already failed: {_show_call(call)}"
        yield ToolRejectedEvent(call=call, reason="repeated", errors=[turn.repeated])
        yield self._result(call, turn.repeated + "; stopping", ok=False, turn=turn, key="")

    def _result(
        self, call: ToolCall, content: str, *, ok: bool, turn: _Turn, key: str, seconds: float = 0.0
    ) -> ToolResultEvent:
        """Cap the result, add the tool message (also to ``turn.new``), remember the call when it failed.

        Returns the event that reports it, for the caller to yield.
        """
        content = cap_output(content, self.tool_output_chars)
        if not ok and key:
            turn.failed.add(key)
        turn.new.append(self._add({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}))
        return ToolResultEvent(call_id=call.id, name=call.name, content=content, ok=ok, seconds=seconds)

    def _close_calls(self, calls: list[ToolCall], reason: str, turn: _Turn) -> Iterator[AgentEvent]:
        """Answer calls that will not run, so every call in the history has a result."""
        for call in calls:
            turn.new.append(self._add({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": reason}))
            yield ToolResultEvent(call_id=call.id, name=call.name, content=reason, ok=False)

    def _add(self, message: dict[str, Any]) -> dict[str, Any]:
        self.messages.append(message)
        return message

    def _done(self, turn: _Turn, generation: Generation, reason: StopReason, message: str = "") -> DoneEvent:
        return DoneEvent(
            answer=generation.parsed.content,
            stop_reason=reason,
            message=message,
            steps=turn.steps,
            tokens=turn.tokens,
            seconds=time.monotonic() - turn.start,
        )


def _assistant_message(generation: Generation) -> dict[str, Any]:
    """The model's output as a chat message; tool-call arguments stay objects, as chat templates expect."""
    message: dict[str, Any] = {"role": "assistant", "content": generation.parsed.content}
    if generation.parsed.reasoning:
        message["reasoning_content"] = generation.parsed.reasoning
    if generation.parsed.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in generation.parsed.calls
        ]
    return message


def _call_key(name: str, arguments: dict[str, Any]) -> str:
    return name + json.dumps(arguments, sort_keys=True, default=str)


def _show_call(call: ToolCall) -> str:
    if not call.name:
        text = f"a malformed call {call.raw.strip()!r}"
    else:
        text = f"{call.name}({json.dumps(call.arguments, ensure_ascii=False, default=str)})"
    return text if len(text) <= 200 else text[:197] + "..."
