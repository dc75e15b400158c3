"""Client side of the `optiq serve` load measurements: streamed requests over raw HTTP, timed and tallied.

Each request is one fresh connection (as a burst of independent clients is), sent with
``http.client``; a reset or a dropped connection is counted as such, never retried. Time to first
token is measured to the first event that carries generated text or a tool call.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

RESET = "reset"  # no HTTP answer at all: the connection was refused, reset or dropped


@dataclass
class Answer:
    """What one request got: an HTTP status (or ``RESET``), its timings and token count."""

    status: int | str
    seconds: float = 0.0
    ttft: float | None = None
    tokens: int = 0
    retry_after: str | None = None


@dataclass
class Tally:
    """Answers of one run, with the wall time it took."""

    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    def statuses(self) -> dict[str, int]:
        return dict(sorted(Counter(str(a.status) for a in self.answers).items()))

    def served(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 200]

    def ttft(self, quantile: float) -> float | None:
        times = sorted(a.ttft for a in self.served() if a.ttft is not None)
        if not times:
            return None
        return times[min(len(times) - 1, int(round(quantile * (len(times) - 1))))]

    def tokens_per_s(self) -> float:
        """Completion tokens of all served answers over the run's wall time."""
        return sum(a.tokens for a in self.served()) / self.seconds if self.seconds else 0.0

    def single_tokens_per_s(self) -> float:
        """Completion tokens over the time spent in served requests (one client: no waiting between)."""
        busy = sum(a.seconds for a in self.served())
        return sum(a.tokens for a in self.served()) / busy if busy else 0.0

    def row(self) -> dict:
        p50, p95 = self.ttft(0.5), self.ttft(0.95)
        return {
            "requests": len(self.answers),
            "statuses": self.statuses(),
            "tokens_per_s": round(self.tokens_per_s(), 2),
            "ttft_p50_ms": None if p50 is None else round(p50 * 1000, 1),
            "ttft_p95_ms": None if p95 is None else round(p95 * 1000, 1),
            "missing_retry_after": sum(1 for a in self.answers if a.status == 429 and not a.retry_after),
        }


def openai_body(request: dict, model: str | None = None) -> tuple[str, dict]:
    body = {**request, "stream": True, "stream_options": {"include_usage": True}}
    return "/v1/chat/completions", body


def anthropic_body(request: dict, model: str | None = None) -> tuple[str, dict]:
    body = {
        "model": model,
        "messages": request["messages"],
        "max_tokens": request["max_tokens"],
        "temperature": request.get("temperature", 1.0),
        "stream": True,
    }
    if request.get("tools"):
        body["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"]["description"],
                "input_schema": t["function"]["parameters"],
            }
            for t in request["tools"]
        ]
    if request.get("tool_choice") == "required":
        body["tool_choice"] = {"type": "any"}
    return "/v1/messages", body


def send(port: int, path: str, body: dict, timeout: float = 600) -> Answer:
    """One streamed request on a new connection; reads the answer to its end."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json", "x-api-key": "bench"})
        response = connection.getresponse()
        answer = Answer(response.status, retry_after=response.getheader("Retry-After"))
        if response.status == 200:
            _read_events(response, answer, started)
        else:
            response.read()
    except (ConnectionError, http.client.HTTPException, OSError):
        return Answer(RESET, time.perf_counter() - started)
    finally:
        connection.close()
    answer.seconds = time.perf_counter() - started
    return answer


def _read_events(response, answer: Answer, started: float) -> None:
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data:") or line == "data: [DONE]":
            continue
        event = json.loads(line[5:])
        if answer.ttft is None and _carries_output(event):
            answer.ttft = time.perf_counter() - started
        answer.tokens = _completion_tokens(event) or answer.tokens


def _carries_output(event: dict) -> bool:
    if event.get("type") == "content_block_delta":  # Anthropic
        delta = event["delta"]
        return bool(delta.get("text") or delta.get("partial_json") or delta.get("thinking"))
    if event.get("type") == "content_block_start":
        return event["content_block"]["type"] == "tool_use"
    for choice in event.get("choices") or []:  # OpenAI
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
    return False


def _completion_tokens(event: dict) -> int | None:
    if event.get("type") == "message_delta":
        return event["usage"]["output_tokens"]
    usage = event.get("usage")
    return usage.get("completion_tokens") if isinstance(usage, dict) else None


def sequential(port: int, bodies: list[tuple[str, dict]]) -> Tally:
    """Send the requests one after another from one client."""
    tally = Tally()
    started = time.perf_counter()
    for path, body in bodies:
        tally.answers.append(send(port, path, body))
    tally.seconds = time.perf_counter() - started
    return tally


def burst(port: int, bodies: list[tuple[str, dict]], clients: int) -> Tally:
    """``clients`` threads, released together, share ``bodies`` (each takes the next until none is left)."""
    tally, lock, gate = Tally(), threading.Lock(), threading.Barrier(clients + 1)
    todo = list(bodies)

    def client() -> None:
        gate.wait()
        while True:
            with lock:
                if not todo:
                    return
                path, body = todo.pop(0)
            answer = send(port, path, body)
            with lock:
                tally.answers.append(answer)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    tally.seconds = time.perf_counter() - started
    return tally


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
