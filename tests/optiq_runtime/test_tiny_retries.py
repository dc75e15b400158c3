"""Turns whose first call goes wrong and is retried: the real tools refuse the slip, the loss skips it."""

from __future__ import annotations

import copy
import random

import pytest

tokenizers = pytest.importorskip("tokenizers")

from agent.toolrun import ToolRunner  # noqa: E402
from optiq_runtime import embedded_base_path  # noqa: E402
from tools.builtin import builtin_tools  # noqa: E402
from tools.registry import Registry  # noqa: E402
from training import people as P  # noqa: E402
from training.batches import Encoder  # noqa: E402
from training.corpus import Chat  # noqa: E402
from training.retries import UNTRAINED, with_a_wrong_try  # noqa: E402
from training.sessions import people_chat  # noqa: E402

TURNS = [P.turn_read, P.turn_search, P.turn_edit, P.turn_list]


def _retried_turns(count: int):
    """(workspace after, turn with a wrong try) for ``count`` turns that got one."""
    rng, found = random.Random("retries"), []
    while len(found) < count:
        before = P.Workspace()
        for _ in range(rng.randint(0, 2)):
            rng.choice(TURNS)(rng, before)
        after = copy.deepcopy(before)
        turn = with_a_wrong_try(rng, rng.choice(TURNS)(rng, after), after.files)
        if len(turn) > 4:
            found.append((after, turn))
    return found


def _workspace(root, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def _arguments(message: dict) -> dict:
    return message["tool_calls"][0]["function"]["arguments"]


def test_the_real_tools_refuse_the_slip_as_the_corpus_says_and_accept_the_retry(tmp_path):
    tools, rereads = Registry(builtin_tools()), 0
    for n, (after, turn) in enumerate(_retried_turns(60)):
        request, wrong, refusal, *recovery = turn[:-2]
        right = recovery.pop()
        assert wrong[UNTRAINED] and UNTRAINED not in right
        name = right["tool_calls"][0]["function"]["name"]
        assert wrong["tool_calls"][0]["function"]["name"] == name
        root = tmp_path / str(n)
        root.mkdir()
        files = dict(after.files)
        if name == "edit_file":  # the edited file as it was before the edit
            args = _arguments(right)
            files[args["path"]] = after.files[args["path"]].replace(args["new"], args["old"], 1)
        _workspace(root, files)
        runner = ToolRunner(root)
        said, ok = runner.execute(tools[name], _arguments(wrong))
        assert (said, ok) == (refusal["content"], False), request["content"]
        if recovery:  # a refused edit read the file first: the corpus shows exactly what the tool returns
            read, text = recovery
            assert name == "edit_file" and _arguments(read) == {"path": _arguments(right)["path"]}
            assert runner.execute(tools["read_file"], _arguments(read)) == (text["content"], True)
            assert _arguments(right)["old"] in text["content"]
            rereads += 1
        _, ok = runner.execute(tools[name], _arguments(right))
        assert ok, request["content"]
    assert rereads >= 3


def test_a_turn_without_a_call_to_retry_is_left_as_it_is():
    rng = random.Random(1)
    turn = P.turn_arithmetic(rng, P.Workspace())
    assert with_a_wrong_try(rng, turn, {}) == turn


def _trained_spans(mask: list[float]) -> int:
    return sum(1 for i in range(1, len(mask)) if mask[i] and not mask[i - 1])


def test_the_mistaken_call_gets_no_loss_and_the_retry_does():
    encoder = Encoder(tokenizers.Tokenizer.from_file(str(embedded_base_path() / "tokenizer.json")))
    rng = random.Random("loss")
    # a session with exactly one mistaken call (a longer session may hold one per turn)
    chat = next(
        c for c in (people_chat(rng) for _ in range(500)) if sum(bool(m.get(UNTRAINED)) for m in c.messages) == 1
    )
    ids, mask = encoder.encode(chat)
    trained = encoder.tokenizer.decode([i for i, w in zip(ids, mask) if w], skip_special_tokens=False)
    unmarked = [{k: v for k, v in m.items() if k != UNTRAINED} for m in chat.messages]
    _, all_mask = encoder.encode(Chat(chat.kind, unmarked, chat.tools, chat.session))
    assert _trained_spans(all_mask) == _trained_spans(mask) + 1  # one reply, the mistaken call, lost its loss
    calls = [m for m in chat.messages if m.get("tool_calls")]
    assert trained.count("<tool_call>") == len(calls) - 1
    wrong = next(m for m in calls if m.get(UNTRAINED))
    retry = calls[calls.index(wrong) + 1]
    for value in retry["tool_calls"][0]["function"]["arguments"].values():
        assert f">\n{value}\n</parameter>" in trained  # the retry's arguments are trained
