"""`optiq serve` as two tensor-parallel ranks: rank 0 answers HTTP exactly as one process does.

Greedy only: one process probes plain steps before MTP rounds (its speed guard), so a sampled run
draws its random numbers in another order there; seeded sampling across ranks is checked in
tests/optiq_runtime/test_tensor_parallel.py, with the guard off on both sides.
"""

import os
import signal
import subprocess
import time

import openai
import pytest

from agent.serve import ServeConfig, Server
from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from tests.agent.test_serve import QUESTION, WEATHER
from tests.ranks import free_ports, launch_argv

REQUESTS = [
    {"messages": QUESTION, "max_tokens": 24},
    {"messages": QUESTION, "tools": [WEATHER], "max_tokens": 32},
    {
        "messages": [{"role": "user", "content": "Count from one to ten."}],
        "max_tokens": 24,
        "stop": [" "],
    },  # closed mid-run
]


def answers(client) -> list:
    replies = []
    for request in REQUESTS:
        choice = client.chat.completions.create(model="m", temperature=0, **request).choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        replies.append((choice.message.content, calls, choice.finish_reason))
    return replies


def wait_ready(client, launcher, deadline_s=400):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.stderr.read()
        try:
            return client.models.list()
        except openai.APIConnectionError:
            time.sleep(1)
    raise TimeoutError("the ranked server did not start")


@pytest.mark.slow
def test_two_ranks_serve_the_answers_of_one_process():
    model = str(embedded_base_path())
    with Server(Engine.load(model), ServeConfig(port=0, model_id="m")) as alone:
        expected = answers(openai.OpenAI(base_url=alone.url, api_key="x", max_retries=0, timeout=120))
    port = free_ports(1)
    argv = launch_argv("-m", "agent.cli", "serve", "--model", model, "--port", str(port), "--model-name", "m")
    launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300)
        wait_ready(client, launcher)
        assert answers(client) == expected
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
