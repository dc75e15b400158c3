"""What the server does, apart from HTTP: its settings, the model it serves, request checks and limits."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.engine import Engine
from agent.serve.completion import Answering, Completion
from agent.serve.errors import bad_request, not_found
from agent.serve.metrics import Metrics
from agent.serve.prompt import Plan, PromptBuilder
from agent.serve.queue import GenerationQueue
from agent.serve.run import Hangup, Run
from agent.serve.schema import ChatRequest, parse_request
from optiq_runtime.errors import BadInputError
from optiq_runtime.sampling import Sampling

DEFAULT_CONTEXT = 4096


@dataclass
class ServeConfig:
    """Server settings; the defaults are the safe ones (loopback, capped sizes, short queue)."""

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    model_id: str | None = None  # default: the model folder's name
    max_request_bytes: int = 4 * 1024 * 1024
    max_tokens: int = 4096  # the most any one answer may generate
    queue_size: int = 8  # requests that may wait while one generates
    temperature: float = 1.0  # OpenAI's defaults when a request names none
    top_p: float = 1.0
    guide_calls: bool = True  # tool-call names limited to the request's tools
    keep_alive_s: int = 15  # an idle keep-alive connection is closed after this
    body_timeout_s: float = 30.0  # a request body must arrive within this (a stalled upload is 408)
    send_timeout_s: float = 60.0  # a client that reads nothing of its answer for this long is dropped

    def check(self) -> None:
        """Refuse settings that would expose the model unprotected or make no sense."""
        if not is_loopback(self.host) and not self.api_key:
            raise BadInputError(
                f"--host {self.host} is reachable from other machines; pass --api-key KEY to require "
                "'Authorization: Bearer KEY', or keep the default --host 127.0.0.1"
            )
        if not 0 <= self.port <= 65535:
            raise BadInputError(f"--port must be between 0 and 65535; got {self.port}")
        if self.max_tokens < 1 or self.queue_size < 0 or self.max_request_bytes < 1024:
            raise BadInputError("--max-tokens must be >= 1, --queue-size >= 0 and the request limit >= 1 KiB")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def context_length(engine: Engine) -> int:
    """The model's context in tokens (``DEFAULT_CONTEXT`` when it does not say, or says something absurd)."""
    length = engine.context_length
    return int(length) if length and length < 10**8 else DEFAULT_CONTEXT


class Service:
    """One engine behind a queue; turns checked requests into ``Completion``s run on the model thread."""

    def __init__(self, engine: Engine, config: ServeConfig, tools: Any = None):
        config.check()
        self.tools = tools  # the server's own tools (optiq serve --mcp): a Registry, run by the server
        self.engine = engine
        self.config = config
        self.model_id = config.model_id or engine.model_path.name
        self.context_length = context_length(engine)
        self.queue = GenerationQueue(config.queue_size)
        self.prompts = PromptBuilder(engine.tokenizer)
        self.metrics = Metrics()
        self.created = int(time.time())
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optiq-model")
        self._running: set[Hangup] = set()  # added and removed on the loop, read by stop() from any thread
        self._running_lock = threading.Lock()

    def models(self) -> dict[str, Any]:
        """The model list, readable as OpenAI's (``object``, ``data``) and as Anthropic's (``has_more``, ids)."""
        return {
            "object": "list",
            "data": [self.model_card()],
            "has_more": False,
            "first_id": self.model_id,
            "last_id": self.model_id,
        }

    def model_card(self) -> dict[str, Any]:
        """One model, with OpenAI's fields (``object``, ``created``, ``owned_by``) and Anthropic's (``type``, ``display_name``, ``created_at``)."""
        created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return {
            "id": self.model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "optiq",
            "type": "model",
            "display_name": self.model_id,
            "created_at": created_at,
        }

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.model_id,
            "mtp": bool(self.engine.mtp_enabled),
            "context_length": self.context_length,
            "generating": self.queue.busy,
            "waiting": self.queue.waiting,
        }

    def render_metrics(self) -> str:
        return self.metrics.render(waiting=self.queue.waiting, generating=self.queue.busy, model=self.model_id)

    def check_model(self, name: str | None) -> None:
        if name not in (None, self.model_id):
            raise not_found(
                f"the model {name!r} does not exist here; this server serves {self.model_id!r} (see GET /v1/models)",
                code="model_not_found",
                param="model",
            )

    def parse(self, body: bytes) -> ChatRequest:
        """A checked request (400/404/422 as ``APIError``); checks that need no prompt come first, before queueing."""
        request = parse_request(body)
        self.check_model(request.model)
        wanted = request.requested_max_tokens
        if wanted is not None and wanted > self.context_length:
            param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
            raise bad_request(
                f"{param} is {wanted}, beyond the model's context of {self.context_length} tokens",
                param,
                "context_length_exceeded",
            )
        return request

    def completion(self, request: ChatRequest) -> Answering:
        """Build the prompt and the sampling settings (call while holding the queue's slot)."""
        if self.tools:
            from agent.serve.server_tools import ServerToolLoop

            return ServerToolLoop(self.single_completion, request, self.tools)
        return self.single_completion(request)

    def single_completion(self, request: ChatRequest) -> Completion:
        """One generation for ``request``."""
        plan = self.prompts.build(request)
        return Completion(self.engine, plan, self.sampling(request, plan))

    def sampling(self, request: ChatRequest, plan: Plan) -> Sampling:
        room = self.context_length - len(plan.tokens)
        if room < 1:
            raise bad_request(
                f"the conversation is {len(plan.tokens)} tokens, which fills the model's context of "
                f"{self.context_length}; shorten the messages or the tools",
                "messages",
                "context_length_exceeded",
            )
        wanted = request.requested_max_tokens or self.config.max_tokens
        return Sampling(
            max_tokens=min(wanted, self.config.max_tokens, room),
            temperature=self.config.temperature if request.temperature is None else request.temperature,
            top_p=self.config.top_p if request.top_p is None else request.top_p,
            top_k=request.top_k or 0,
            seed=request.seed,
            stops=tuple(request.stops),
            guide_calls=self.config.guide_calls,
        )

    def remember(self, completion: Answering) -> None:
        """Keep a cleanly ended exchange so that the conversation's next turn extends it."""
        reply = completion.reply_message() if completion.outcome.clean else None
        self.prompts.remember(completion.plan, reply, completion.outcome.generated)

    async def start(self, request: ChatRequest, hangup: Hangup) -> Run:
        """Wait for the model (429 at once when the queue is full), build the prompt, start generating.

        The slot passes on when the model thread is done, whether or not the client has read the answer.
        """
        await self.queue.acquire(hangup.event)
        loop = asyncio.get_running_loop()
        try:
            completion = await loop.run_in_executor(self._model_thread, self.completion, request)
        except BaseException:
            self.queue.release()
            raise
        run = Run(completion, hangup, loop)
        with self._running_lock:
            self._running.add(hangup)
        done = loop.run_in_executor(self._model_thread, run.generate, self.remember)
        done.add_done_callback(lambda _: self._finished(run))
        return run

    def _finished(self, run: Run) -> None:
        with self._running_lock:
            self._running.discard(run.hangup)
        self.metrics.generated(run.completion.outcome.stats)
        self.queue.release()

    async def count_tokens(self, request: ChatRequest) -> int:
        """The prompt's length in tokens, as a generation would see it (tools and forced-call prefill included)."""
        plan = await asyncio.to_thread(self.prompts.build, request)
        return len(plan.tokens)

    def stop(self) -> None:
        """End every running generation within a step and let the model thread go."""
        with self._running_lock:
            running = list(self._running)
        for hangup in running:
            hangup.halt()
        self._model_thread.shutdown(wait=False, cancel_futures=True)
