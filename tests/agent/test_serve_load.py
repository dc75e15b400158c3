"""`optiq serve` under load and with misbehaving clients, on loopback: bursts, the queue, disconnects, timeouts, metrics.

Bursts use raw ``http.client`` connections released together by a barrier, so a reset (no HTTP
answer at all) is seen as one. Disconnect tests use real clients that close their connection;
the engine is the real one (a random checkpoint, which does not stop early) slowed by composition
to a known step time, or the scripted one where the test needs a long answer from a known text.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time

import openai
import pytest
from checkpoints import write_random_checkpoint

from agent.serve import ServeConfig, Server
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.sampling import Sampling
from tests.agent.scripted_engine import ScriptedEngine

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp=True)


def post(port: int, body: dict, path: str = "/v1/chat/completions", timeout: float = 120):
    """One request on a new connection: (status or "reset", headers, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    except (ConnectionError, http.client.HTTPException, OSError):
        return "reset", {}, b""
    finally:
        connection.close()


def burst(port: int, bodies: list[dict]) -> list[tuple]:
    """Send every body from its own thread, all released at the same moment."""
    gate, answers, lock = threading.Barrier(len(bodies)), [], threading.Lock()

    def client(body: dict) -> None:
        gate.wait()
        answer = post(port, body)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=client, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return answers


def get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def wait_until(check, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_bursts_of_40_and_64_are_all_answered_200_or_429(engine):
    with Server(engine, ServeConfig(port=0)) as server:
        for clients, stream in ((40, False), (64, True)):
            bodies = [{"messages": QUESTION, "max_tokens": 16, "stream": stream} for _ in range(clients)]
            answers = burst(server.port, bodies)
            statuses = [status for status, _, _ in answers]
            assert len(answers) == clients
            assert set(statuses) <= {200, 429}, statuses  # no reset, no 5xx
            assert statuses.count(200) >= 1 + server.config.queue_size  # the one generating and the whole queue
            for status, headers, body in answers:
                if status == 429:
                    assert int(headers["Retry-After"]) >= 1 and json.loads(body)["error"]["code"] == "queue_full"
            after = [post(server.port, {"messages": QUESTION, "max_tokens": 16}) for _ in range(4)]
            assert [status for status, _, _ in after] == [200] * 4
        assert wait_until(lambda: metric(get(server.port, "/metrics"), "optiq_generating") == 0)
        text = get(server.port, "/metrics")
        assert metric(text, 'optiq_requests_total{status="200"}') >= 2 * (1 + server.config.queue_size) + 8
        assert (
            metric(text, 'optiq_requests_total{status="200"}') + metric(text, 'optiq_requests_total{status="429"}')
            == 40 + 64 + 8
        )
        assert metric(text, "optiq_queue_waiting") == 0 and metric(text, "optiq_generating") == 0


def test_a_queued_client_that_leaves_is_dropped_from_the_queue():
    engine = ScriptedEngine(["word " * 400, "ok"], step_s=0.02)
    with Server(engine, ServeConfig(port=0, queue_size=2)) as server:
        holder = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        holder.request(
            "POST", "/v1/chat/completions", json.dumps({"messages": QUESTION, "stream": True, "max_tokens": 400})
        )
        assert holder.getresponse().status == 200 and engine.started.wait(5)
        waiter = socket.create_connection(("127.0.0.1", server.port))
        body = json.dumps({"messages": QUESTION, "max_tokens": 2}).encode()
        waiter.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert wait_until(lambda: json.loads(get(server.port, "/health"))["waiting"] == 1)
        waiter.close()  # gone while waiting
        assert wait_until(lambda: json.loads(get(server.port, "/health"))["waiting"] == 0, 3)
        holder.close()  # the generation stops; the next request is served at once
        assert engine.stopped_early.wait(5)
        assert wait_until(lambda: not json.loads(get(server.port, "/health"))["generating"])
        status, _, answer = post(server.port, {"messages": QUESTION, "max_tokens": 2})
        assert status == 200 and json.loads(answer)["choices"][0]["message"]["content"] == "ok"
        assert len(engine.prompts) == 2  # the request that left never reached the model
        text = get(server.port, "/metrics")
        assert metric(text, "optiq_generations_interrupted_total") == 1
        assert metric(text, 'optiq_requests_total{status="499"}') == 1  # the one that left the queue


class PacedEngine:
    """A real engine whose decode steps take at least ``step_s``; records each stop check (time, answer)."""

    def __init__(self, engine: Engine, step_s: float):
        self.engine = engine
        self.step_s = step_s
        self.checks: list[tuple[float, bool]] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, prompt_tokens, sampling=Sampling(), *, stop=None, should_stop=None, guide=None):
        def paced() -> bool:
            time.sleep(self.step_s)
            halt = bool(should_stop and should_stop())
            self.checks.append((time.monotonic(), halt))
            return halt

        return self.engine.stream(prompt_tokens, sampling, stop=stop, should_stop=paced, guide=guide)


@pytest.fixture(scope="module")
def random_engine(tmp_path_factory):
    """A random checkpoint: it does not stop by itself, so a stream runs until it is stopped."""
    folder = write_random_checkpoint(tmp_path_factory.mktemp("load"), seed=3)
    return Engine.load(folder, mtp=True)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_the_model_within_one_step(random_engine, stream):
    paced = PacedEngine(random_engine, step_s=0.1)
    with Server(paced, ServeConfig(port=0)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=0.6 if not stream else 30)
        # Seed 0 runs to max_tokens on every machine; unseeded, the random model now and then samples its end token early.
        request = dict(model=server.service.model_id, messages=QUESTION, max_tokens=400, temperature=1.0, seed=0)
        if stream:
            answer = client.chat.completions.create(stream=True, **request)
            chunks = iter(answer)
            for _ in range(4):
                next(chunks)
            left = time.monotonic()
            answer.close()  # the client goes away mid-stream
        else:
            with pytest.raises(openai.APITimeoutError):  # the client gives up and closes its connection
                client.chat.completions.create(**request)
            left = time.monotonic()
        assert wait_until(lambda: not json.loads(get(server.port, "/health"))["generating"], 5)
        after = [stop for at, stop in paced.checks if at > left]
        assert after and after[-1] is True  # stopped because the client left, not at max_tokens
        assert after.count(False) <= 1, after  # at most one more decode step ran
        assert random_engine.last_stats.finish_reason == "interrupted" and random_engine.last_stats.tokens < 400


def read_to_close(connection: socket.socket) -> str:
    """Everything the server sends until it closes the connection (as it does after 408 and 413)."""
    data = b""
    while chunk := connection.recv(4096):
        data += chunk
    return data.decode()


def test_stalled_bodies_time_out_and_oversized_chunked_bodies_are_refused(engine):
    with Server(engine, ServeConfig(port=0, body_timeout_s=0.5, max_request_bytes=2048)) as server:
        stalled = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        stalled.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"messa')
        started = time.monotonic()
        answer = read_to_close(stalled)
        assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer and time.monotonic() - started < 5
        stalled.close()
        chunked = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        chunk = b"x" * 1500
        chunked.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%X\r\n%s\r\n" % (len(chunk), chunk)) * 2
            + b"0\r\n\r\n"
        )
        assert read_to_close(chunked).startswith("HTTP/1.1 413")
        chunked.close()
        assert post(server.port, {"messages": QUESTION, "max_tokens": 2})[0] == 200


def test_idle_keep_alive_connections_are_closed(engine):
    with Server(engine, ServeConfig(port=0, keep_alive_s=1)) as server:
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        idle.request("GET", "/health")
        assert idle.getresponse().read() and idle.sock is not None  # kept alive
        started = time.monotonic()
        assert idle.sock.recv(1) == b""  # the server hung up on the idle connection
        assert 0.5 < time.monotonic() - started < 5
        idle.close()


def test_metrics_report_speed_and_mtp_acceptance(engine):
    with Server(engine, ServeConfig(port=0)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
        # requests tiny-agent answers in several tokens (a reply of one token has no decode speed)
        for question in ("Say hello to me in a long friendly sentence.", "hello"):
            client.chat.completions.create(
                model="tiny-agent", messages=[{"role": "user", "content": question}], max_tokens=24, temperature=0
            )
        assert wait_until(lambda: metric(get(server.port, "/metrics"), "optiq_generations_total") == 2)
        text = get(server.port, "/metrics")
        assert metric(text, 'optiq_requests_total{status="200"}') == 2
        assert metric(text, "optiq_generated_tokens_total") >= 2
        assert metric(text, "optiq_decode_tokens_per_second") > 0
        drafted, accepted = (
            metric(text, "optiq_mtp_drafted_tokens_total"),
            metric(text, "optiq_mtp_accepted_tokens_total"),
        )
        acceptance = metric(text, "optiq_mtp_acceptance")
        assert (drafted == 0 and acceptance != acceptance) or acceptance == pytest.approx(accepted / drafted, rel=1e-4)
