"""`optiq serve` measured in one run: MTP on and off, one client on each API, and a load sweep.

Run: python bench/serve.py [--model DIR] [--requests 8] [--max-tokens 64] [--clients 2] [--rounds 2]
                           [--sections mtp,single,sweep,burst] [--sweep 1,4,16,64] [--queue-size 8]
A real server on a loopback port answers a fixed batch (plain questions, tool offers, a forced call).
- mtp: sent by ``--clients`` threads over keep-alive connections, MTP on and off alternating which
  goes first; requests/s and completion tokens/s are wall-clock numbers for the whole batch.
- single: one client streams the batch, on the OpenAI route and on the Anthropic one (when the
  server has it), taking turns: time to first token (p50/p95) and completion tokens/s over the
  time in requests.
- sweep: 1, 4, 16, 64 clients released together, each sending ``--per-client`` streamed requests
  (max_tokens 16): throughput, time to first token p50/p95, and the count of each status
  ("reset" = no HTTP answer at all).
- burst: 40 requests at the same moment, then four one after another.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field

import serve_load

from agent.serve import ServeConfig, Server

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTIONS = (
    "Write a Python function that returns the n-th Fibonacci number.",
    "Explain how a hash map handles collisions.",
    "What is the weather in Paris?",
    "List five names for a command-line tool that searches files.",
    "Read the file notes.txt and summarise it.",
    "Describe step by step how to make a cup of tea.",
)


def batch(size: int, max_tokens: int) -> list[dict]:
    """``size`` chat requests, the same every run: every third offers a tool, every fourth forces it."""
    requests = []
    for index in range(size):
        request = {
            "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if index % 3 == 2:
            request["tools"] = [WEATHER]
        if index % 4 == 3:
            request["tools"] = [WEATHER]
            request["tool_choice"] = "required"
        requests.append(request)
    return requests


@dataclass
class Pass:
    """One mode's run over the batch."""

    mtp: bool
    seconds: float = 0.0
    requests: int = 0
    tokens: int = 0
    acceptance: list[float] = field(default_factory=list)
    fallbacks: int = 0
    failures: int = 0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def send_all(port: int, requests: list[dict], clients: int, result: Pass) -> None:
    """Send ``requests`` from ``clients`` threads, each on one keep-alive connection."""
    lock = threading.Lock()
    todo = list(enumerate(requests))

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    _, request = todo.pop(0)
                answer = post(connection, request)
                with lock:
                    record(result, answer)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started


def post(connection: http.client.HTTPConnection, request: dict) -> dict:
    connection.request("POST", "/v1/chat/completions", json.dumps(request), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return json.loads(response.read())


def record(result: Pass, answer: dict) -> None:
    if "error" in answer:
        result.failures += 1
        print(f"request failed: {answer['error']['message']}", file=sys.stderr)
        return
    result.requests += 1
    result.tokens += answer["usage"]["completion_tokens"]
    report = answer["optiq"]
    if report["mtp_acceptance"] is not None:
        result.acceptance.append(report["mtp_acceptance"])
    result.fallbacks += report["mtp_fallback"] is not None


def run_pass(server: Server, requests: list[dict], clients: int, mtp: bool) -> Pass:
    engine = server.service.engine
    engine.mtp_enabled = mtp
    engine.reset()  # neither mode starts from the other's cache
    result = Pass(mtp)
    send_all(server.port, requests, clients, result)
    return result


def load_engine(model: str | None, depth: int):
    from optiq_runtime.engine import Engine

    if model is None:
        try:
            from optiq_runtime.firstrun import ensure_model
        except ImportError:  # not built in this checkout yet: serve the embedded base
            ensure_model = None
        if ensure_model is not None:
            model = str(ensure_model(None))
    return Engine.load(model, mtp=True, mtp_depth=depth)


def summary(passes: list[Pass]) -> dict:
    def total(mtp: bool) -> dict:
        mine = [p for p in passes if p.mtp == mtp]
        seconds = sum(p.seconds for p in mine)
        requests, tokens = sum(p.requests for p in mine), sum(p.tokens for p in mine)
        acceptance = [a for p in mine for a in p.acceptance]
        return {
            "requests_per_s": round(requests / seconds, 3) if seconds else 0.0,
            "tokens_per_s": round(tokens / seconds, 2) if seconds else 0.0,
            "requests": requests,
            "tokens": tokens,
            "failures": sum(p.failures for p in mine),
            "mean_acceptance": round(sum(acceptance) / len(acceptance), 3) if acceptance else None,
            "fallbacks": sum(p.fallbacks for p in mine),
        }

    on, off = total(True), total(False)
    speedup = on["tokens_per_s"] / off["tokens_per_s"] if off["tokens_per_s"] else 0.0
    return {"mtp_on": on, "mtp_off": off, "tokens_per_s_ratio": round(speedup, 3)}


def report(result: dict, args) -> str:
    lines = [
        f"{args.requests} chat requests x {args.rounds} round(s), max_tokens {args.max_tokens}, {args.clients} client(s)"
    ]
    for name, key in (("MTP on ", "mtp_on"), ("MTP off", "mtp_off")):
        row = result[key]
        extra = f"  acceptance {row['mean_acceptance']:.0%}" if row["mean_acceptance"] is not None else ""
        extra += f"  fell back in {row['fallbacks']} answer(s)" if row["fallbacks"] else ""
        extra += f"  {row['failures']} FAILED" if row["failures"] else ""
        lines.append(f"{name}  {row['requests_per_s']:7.2f} req/s  {row['tokens_per_s']:8.1f} tok/s{extra}")
    lines.append(f"MTP on / off tokens/s: {result['tokens_per_s_ratio']:.2f}x")
    return "\n".join(lines)


def single_rows(server: Server, requests: list[dict], apis: list[str]) -> dict:
    """One client streaming the batch on each API, MTP on (the default).

    The APIs take turns request by request, so the engine's state (its MTP speed guard, the
    machine's load) falls on each alike; the Anthropic request is three questions on from the
    OpenAI one beside it, so that no prompt follows its own twin (whose cache it would reuse).
    """
    server.service.engine.mtp_enabled = True
    model = server.service.model_id
    shapes = {"openai": serve_load.openai_body, "anthropic": serve_load.anthropic_body}
    offsets = {"openai": 0, "anthropic": 3}
    tallies = {api: serve_load.Tally() for api in apis}
    for index in range(-2, len(requests)):  # the first two rounds warm up
        for api in apis:
            path, body = shapes[api](requests[(index + offsets[api]) % len(requests)], model)
            answer = serve_load.send(server.port, path, body)
            if index >= 0:
                tallies[api].answers.append(answer)
    rows = {}
    for api, tally in tallies.items():
        unserved = tally.statuses() == {"404": len(requests)}  # this server has no such route
        rows[api] = None if unserved else {**tally.row(), "tokens_per_s": round(tally.single_tokens_per_s(), 2)}
    return rows


def sweep_rows(server: Server, counts: list[int], per_client: int) -> dict:
    server.service.engine.mtp_enabled = True
    rows = {}
    for clients in counts:
        bodies = [serve_load.openai_body(r) for r in batch(clients * per_client, 16)]
        rows[str(clients)] = serve_load.burst(server.port, bodies, clients).row()
    return rows


def burst_rows(server: Server) -> dict:
    """The issue's scenario: 40 chat completions (max_tokens 16) at once, then four in turn."""
    server.service.engine.mtp_enabled = True
    bodies = [serve_load.openai_body(r) for r in batch(40, 16)]
    at_once = serve_load.burst(server.port, bodies, 40)
    after = serve_load.sequential(server.port, bodies[:4])
    return {"burst_40": at_once.row(), "after": after.row()}


def load_report(result: dict) -> list[str]:
    lines = []
    single = result.get("single")
    if single:
        lines.append("one client, streamed:  TTFT p50 / p95      tok/s")
        for name, row in single.items():
            if row is None:
                lines.append(f"  {name:9}  (no such route)")
                continue
            lines.append(
                f"  {name:9}  {row['ttft_p50_ms']:8.1f} / {row['ttft_p95_ms']:8.1f} ms  {row['tokens_per_s']:8.1f}  {row['statuses']}"
            )
        if single.get("openai") and single.get("anthropic"):
            o, a = single["openai"], single["anthropic"]
            lines.append(
                f"  anthropic / openai: TTFT p50 {a['ttft_p50_ms'] / o['ttft_p50_ms']:.2f}x, tok/s {a['tokens_per_s'] / o['tokens_per_s']:.2f}x"
            )
    for title, rows in (("sweep (clients)", result.get("sweep")), ("burst", result.get("burst"))):
        if not rows:
            continue
        lines.append(f"{title}:  tok/s   TTFT p50 / p95 ms   statuses")
        for name, row in rows.items():
            p50, p95 = row["ttft_p50_ms"], row["ttft_p95_ms"]
            ttft = "-" if p50 is None else f"{p50:.0f} / {p95:.0f}"
            lines.append(
                f"  {name:>8}  {row['tokens_per_s']:7.1f}  {ttft:>17}  {row['statuses']}"
                + (f"  {row['missing_retry_after']} 429 without Retry-After" if row["missing_retry_after"] else "")
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: the built default model, else the embedded base)")
    parser.add_argument("--mtp-depth", type=int, default=2)
    parser.add_argument("--requests", type=int, default=8, help="requests in the batch (default 8)")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request (default 64)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent client threads (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs, alternating which goes first (default 2)")
    parser.add_argument(
        "--no-fallback", action="store_true", help="keep MTP on even where it is slower than plain decoding"
    )
    parser.add_argument("--sections", default="mtp,single,sweep,burst", help="which measurements (default all)")
    parser.add_argument("--sweep", default="1,4,16,64", help="client counts of the sweep (default 1,4,16,64)")
    parser.add_argument("--apis", default="openai,anthropic", help="the APIs of the single-client rows (default both)")
    parser.add_argument("--per-client", type=int, default=2, help="requests each sweep client sends (default 2)")
    parser.add_argument("--queue-size", type=int, default=8, help="the server's queue (default 8, as optiq serve's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    engine = load_engine(args.model, args.mtp_depth)
    if "mtp" in sections and not engine.mtp_available:
        print(f"{engine.model_path} has no MTP head; there is nothing to compare", file=sys.stderr)
        return 1
    engine.auto_fallback = not args.no_fallback
    requests = batch(args.requests, args.max_tokens)
    result: dict = {}
    with Server(engine, ServeConfig(port=0, queue_size=args.queue_size)) as server:
        if "mtp" in sections:
            result.update(mtp_section(server, requests, args))
        if "single" in sections:
            result["single"] = single_rows(server, requests, args.apis.split(","))
        if "sweep" in sections:
            result["sweep"] = sweep_rows(server, [int(n) for n in args.sweep.split(",")], args.per_client)
        if "burst" in sections:
            result["burst"] = burst_rows(server)
    if args.json:
        print(json.dumps(result))
    else:
        lines = [report(result, args)] if "mtp" in sections else []
        print("\n".join(lines + load_report(result)))
    return 0


def mtp_section(server: Server, requests: list[dict], args) -> dict:
    passes = []
    for mtp in (False, True):  # warm-up: first passes of each shape compile their graphs
        run_pass(server, requests[:2], 1, mtp)
    for round_ in range(args.rounds):
        for mtp in (True, False) if round_ % 2 == 0 else (False, True):
            passes.append(run_pass(server, requests, args.clients, mtp))
    return summary(passes)


if __name__ == "__main__":
    sys.exit(main())
