"""The people corpus (issue #20): sessions rendered as the agent renders them, real tool wording, held-out sets kept out."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import random
import re

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from optiq_runtime import embedded_base_path  # noqa: E402
from optiq_runtime.calibration import DATA_DIR  # noqa: E402
from training import words as W  # noqa: E402
from training.batches import Encoder  # noqa: E402
from training.numbers import number_words  # noqa: E402
from training.retries import UNTRAINED  # noqa: E402
from training.sessions import DEV_SUITES, people_chat, render_session  # noqa: E402

PEOPLE_SUITE = DATA_DIR / "people_suite.jsonl"


def _chats(count: int, seed: str = "test") -> list:
    rng = random.Random(seed)
    return [people_chat(rng) for _ in range(count)]


def _suite_requests(path) -> set[str]:
    tasks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {t["prompt"] for t in tasks} | {b for t in tasks for b in t.get("before", [])}


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_base_path()))


def _transcript_tokens(chat, tokenizer) -> list[int]:
    """The tokens the agent's Transcript holds after the session, each reply fed back as if generated."""
    from agent.chat import ChatRenderer, Transcript

    renderer = ChatRenderer(tokenizer, chat.tools)
    transcript, seen, new = Transcript(renderer), [], []
    for message in chat.messages:
        if message["role"] == "assistant":
            transcript.prompt(seen, new)
            text = renderer.text([{"role": "user", "content": "x"}, message], generation_prompt=False)
            reply = text.split("</think>\n\n", 1)[1]
            transcript.generated(renderer.encode(reply[: reply.rindex("<|im_end|>") + len("<|im_end|>")]))
            new = []
        else:
            new.append(message)
        seen.append(message)
    return transcript.tokens + renderer.close_ids()[1:]


def test_sessions_render_exactly_as_the_agent_transcript_holds_them(hf_tokenizer):
    chats = [c for c in _chats(30) if c.kind == "people_session"]
    assert len(chats) >= 10
    for chat in chats:
        ours = hf_tokenizer.encode(render_session(chat.messages, chat.tools), add_special_tokens=False)
        assert ours == _transcript_tokens(chat, hf_tokenizer)


def test_every_reply_of_a_session_is_trained():
    encoder = Encoder(tokenizers.Tokenizer.from_file(str(embedded_base_path() / "tokenizer.json")))
    chat = next(c for c in _chats(20) if c.kind == "people_session")
    ids, mask = encoder.encode(chat)
    replies = sum(m["role"] == "assistant" and not m.get(UNTRAINED) for m in chat.messages)
    starts = [i for i in range(1, len(mask)) if mask[i] and not mask[i - 1]]
    ends = [i for i in range(len(mask) - 1) if mask[i] and not mask[i + 1]]
    assert len(starts) == len(ends) == replies
    im_end = encoder.tokenizer.token_to_id("<|im_end|>")
    assert all(ids[i] == im_end for i in ends)


def test_sessions_offer_the_agents_own_seven_tools():
    from tools.builtin import builtin_tools
    from tools.registry import Registry

    assert W.SESSION_TOOLS == Registry(builtin_tools()).openai()
    assert all(c.tools == W.SESSION_TOOLS for c in _chats(5))


def test_python_results_are_what_the_code_prints():
    for chat in _chats(200, "python"):
        messages = chat.messages
        for call_message, result in zip(messages, messages[1:]):
            calls = call_message.get("tool_calls") or []
            if calls and calls[0]["function"]["name"] == "run_python":
                printed = io.StringIO()
                with contextlib.redirect_stdout(printed):
                    exec(calls[0]["function"]["arguments"]["code"], {})  # noqa: S102 - the generator's own arithmetic
                assert printed.getvalue().rstrip("\n") == result["content"]


def test_write_results_use_the_tools_wording():
    for chat in _chats(100, "write"):
        for call_message, result in zip(chat.messages, chat.messages[1:]):
            for call in call_message.get("tool_calls") or []:
                if call["function"]["name"] == "write_file":
                    args = call["function"]["arguments"]
                    assert result["content"] == f"wrote {len(args['content'])} characters to {args['path']}"


def test_answers_use_the_tools_result():
    for chat in _chats(100, "answers"):
        m = chat.messages
        for i, message in enumerate(m):
            calls = message.get("tool_calls") or []
            if calls and calls[0]["function"]["name"] == "run_python" and i + 2 < len(m):
                assert m[i + 1]["content"] in m[i + 2]["content"]


def test_the_held_out_sets_are_never_generated():
    held_out = set().union(*map(_suite_requests, (PEOPLE_SUITE, *DEV_SUITES)))
    said = {m["content"] for c in _chats(3000, "held-out") for m in c.messages if m["role"] == "user"}
    assert not said & held_out


def test_a_request_that_equals_a_held_out_one_is_drawn_again(monkeypatch):
    from training import sessions

    first = people_chat(random.Random("clash")).messages[0]["content"]
    assert first not in sessions.held_out_requests()
    assert {
        "Find the word FIXME in my files.",
        "Tell me what info.txt says.",
        "Take that and multiply it by 3 in Python.",
    } <= sessions.held_out_requests()
    monkeypatch.setattr(sessions, "held_out_requests", lambda: frozenset({first}))
    again = people_chat(random.Random("clash"))
    assert first not in {m["content"] for m in again.messages if m["role"] == "user"}
    assert again.messages[0]["role"] == "user"


def test_the_dev_suites_are_not_the_people_suite_nor_each_other():
    for one, other in itertools.combinations((PEOPLE_SUITE, *DEV_SUITES), 2):
        assert not _suite_requests(one) & _suite_requests(other), (one.name, other.name)


def test_every_dev_suite_in_training_is_kept_out_of_the_corpus():
    assert sorted(DEV_SUITES) == sorted(DEV_SUITES[0].parent.glob("dev*_suite.jsonl"))


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (14, "fourteen"),
        (49, "forty-nine"),
        (712, "seven hundred and twelve"),
        (3005, "three thousand and five"),
        (21400, "twenty-one thousand four hundred"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


def test_requests_say_values_several_ways():
    said = [m["content"] for c in _chats(600, "styles") for m in c.messages if m["role"] == "user"]
    assert any(re.search(r"`[^`]+`", s) for s in said)
    assert any(re.search(r" '[^']+'", s) for s in said)
    assert any(re.search(r": [a-z]", s) for s in said)
    assert any(re.search(r"\b(twenty|thirty|forty|fifty|hundred)", s) for s in said)


def test_number_word_drills_answer_the_digits_of_the_words_said():
    from training.numbers import OPERATOR_WORDS
    from training.people import number_words_chat

    for seed in range(300):
        request, reply = (m["content"] for m in number_words_chat(random.Random(seed)))
        parts = reply.split(" ")
        assert all(p.isdigit() for p in parts[::2]) and len(parts) in (1, 3)
        words = re.sub(r"[.,?:]", " ", request.lower()) + " "
        assert all(f" {number_words(int(p))} " in f" {words}" for p in parts[::2])
        if len(parts) == 3:
            assert any(f" {word} " in request for word in OPERATOR_WORDS[parts[1]] if word != parts[1])
            assert parts[1] not in request.split()  # the operator is said in words, written as the symbol


def test_later_requests_of_a_session_sometimes_say_they_follow_on():
    from training.sessions import _FOLLOW_ON

    firsts, laters = [], []
    for chat in _chats(1500, "follow-on"):
        said = [m["content"] for m in chat.messages if m["role"] == "user"]
        firsts.append(said[0])
        laters += said[1:]
    leads = tuple(_FOLLOW_ON)
    assert not any(s.startswith(leads) for s in firsts)
    led = [s for s in laters if s.startswith(leads)]
    assert 0.1 * len(laters) < len(led) < 0.3 * len(laters)
    assert not any(re.match(r"(Now|Next,|Finally,|Also,|And|Then) [A-Z][a-z]", s) for s in led)


def test_written_files_come_from_a_space_too_large_to_memorise():
    """File names and texts are drawn from everyday words too, so a request is the only place to find them."""
    from training import people as P
    from training.english import COMMON

    paths, texts = set(), set()
    for chat in _chats(400, "spread"):
        for message in chat.messages:
            for call in message.get("tool_calls") or []:
                if call["function"]["name"] == "write_file":
                    args = call["function"]["arguments"]
                    paths.add(args["path"])
                    texts.add(args["content"])
    stems = {p.rsplit("/", 1)[-1].split(".")[0] for p in paths}
    assert len(stems & (set(COMMON) - set(P.STEMS) - set(W.NOUNS))) > 30  # none before training/english.py
    assert len(stems) > 0.7 * len(paths) and len(texts) > 0.7 * len(paths)


def test_word_lists_copy_words_said_after_a_space_token_for_token(hf_tokenizer):
    """Each reply line is a word the request said after a space; the shipped tokenizer (no merge joins a
    space to a letter) makes the spaced word the space token and then exactly the line's tokens."""
    from training.sessions import word_list_chat

    def tokens(text: str) -> list[int]:
        return hf_tokenizer.encode(text, add_special_tokens=False)

    items, same = 0, 0
    for seed in range(200):
        chat = word_list_chat(random.Random(seed))
        request, reply = chat.messages[0]["content"], chat.messages[1]["content"]
        for item in reply.split("\n"):
            assert f" {item}" in request
            items += 1
            same += tokens(f" {item}") == tokens(" ") + tokens(item)
    assert same == items  # round 5's tokenizer: fewer than 20% were (the drill trained that mapping)


def test_the_shipped_weights_load_back_for_fine_tuning():
    from training.export import checkpoint_tensors, load_exported, read_tensors
    from training.grow import shape_from_config

    shipped = read_tensors(embedded_base_path())  # fp8 matrices dequantized, when the shipped format is fp8
    again = checkpoint_tensors(load_exported(embedded_base_path(), shape_from_config(embedded_base_path())))
    assert set(again) == set(shipped)
    assert all(torch.equal(again[k], shipped[k].to(torch.bfloat16)) for k in shipped)


@pytest.mark.parametrize("path", DEV_SUITES, ids=lambda path: path.name.split("_")[0])
def test_the_dev_suites_are_agent_suites_optiq_eval_reads(path):
    from agent.suite import load_suite

    tasks = load_suite(path)
    assert len(tasks) == 40
    assert sorted({t.category for t in tasks}) == ["first", "second"]
    assert all(bool(t.before) == (t.category == "second") for t in tasks)


def test_numbers_said_in_words_are_often_teens():
    """The dev sets' number-word misses were teens ("nineteen" -> 9): the drills and sums say them often."""
    from training.people import _binary, number_words_chat

    teens = {number_words(n) for n in range(10, 20)}
    drills = [number_words_chat(random.Random(seed))[0]["content"] for seed in range(400)]
    with_teen = sum(any(re.search(rf"\b{t}\b", d) for t in teens) for d in drills)
    assert with_teen > 0.2 * len(drills)  # ~32% now; ~7% when numbers were drawn uniformly
    sums = [_binary(random.Random(seed)) for seed in range(3000)]
    spoken = [s for s in sums if any(re.search(rf"\b{t}\b", s.said) for t in teens)]
    assert len(spoken) > 60
    for s in spoken:  # each operand is said, in words or digits, and the code computes the value
        assert eval(s.code) == s.value  # noqa: S307 - two numbers and an operator
        for operand in s.code.split(" ")[::2]:
            assert f" {operand} " in f" {s.said} " or number_words(int(operand)) in s.said


def test_agent_sums_often_say_both_numbers_in_words():
    """Round 16's drill learned "nineteen" -> 19 without tools; agent turns did not: since session 20 about
    three in ten sums of two (+ - *) say both operands in words, where the drill's skill has to carry over."""
    from training.people import _binary

    sums = [
        s for s in (_binary(random.Random(seed)) for seed in range(2000)) if s.code.split(" ")[1] in ("+", "-", "*")
    ]
    in_words = [s for s in sums if not re.search(r"\d", s.said)]
    assert 0.25 * len(sums) < len(in_words) < 0.5 * len(sums)  # ~0.3 + the older 0.12 branch; 0.1 before
    for s in in_words:
        a, op, b = s.code.split(" ")
        assert s.said.startswith(number_words(int(a))) and s.said.endswith(number_words(int(b)))


def test_word_problems_that_say_a_number_in_words_still_compute_it():
    from training.people import _story

    counts = {number_words(n) for n in range(2, 61)}  # b, the number a story may say in words
    stories = [_story(random.Random(seed)) for seed in range(800)]
    worded = [s for s in stories if any(re.search(rf"\b{w}\b", s.said) for w in counts)]
    assert len(worded) > 0.1 * len(stories)
    for s in worded:
        assert eval(s.code) == s.value  # noqa: S307 - numbers and one operator
        for operand in re.findall(r"\d+", s.code):
            assert re.search(rf"\b{operand}\b", s.said) or number_words(int(operand)) in s.said


def _first_request_and_call(turn: list[dict]) -> tuple[str, dict]:
    return turn[0]["content"], turn[1]["tool_calls"][0]["function"]["arguments"]


def test_write_requests_say_plain_words_bare_between_words_and_the_call_copies_only_them():
    """Until session 21 a value said mid-sentence was always quoted; "Write hello world to greeting.txt"
    (no quotes, the value bounded only by the words around it) was missed by every candidate."""
    from training.people import Workspace, turn_write

    bare = []
    for seed in range(3000):
        ws = Workspace()
        request, args = _first_request_and_call(turn_write(random.Random(seed), ws))
        value = args["content"]
        if re.search(rf"(Write|Save|Put)( the word)? {re.escape(value)} (to|in|into) ", request):
            bare.append((request, args))
    assert len(bare) > 300  # 141 of 3,000 in session 21's corpus: round 19 did not learn them
    assert any(" the word " in r for r, _ in bare)
    assert all(not re.search(r"['`\"]", a["content"]) and a["path"] in r for r, a in bare)


def test_edit_requests_put_the_new_value_first_or_name_the_old_one():
    """Requests that say "set X instead of Y" name the new value first; "version 1.2", "the word blue" lead the old value
    with a word the call must not copy. Every such request's call still replaces old with new."""
    from training.people import Workspace, turn_edit

    forms = {"instead of": 0, "version ": 0, "the word ": 0}
    for seed in range(3000):
        ws = Workspace()
        turn = turn_edit(random.Random(seed), ws)
        request, args = _first_request_and_call(turn)
        for form in forms:
            forms[form] += form in request
        new, old = re.escape(args["new"]), re.escape(args["old"])
        if "instead of" in request:
            assert re.search(rf"{new}['`\"]? instead of ['`\"]?{old}", request)
        for lead in ("version ", "the word "):  # said before the old value, never copied into it
            if lead in request:
                assert re.search(rf"{lead}['`\"]?{old}", request) and lead.strip() not in args["old"]
    assert all(n > 20 for n in forms.values()), forms
    assert forms["version "] > 120 and forms["the word "] > 450, forms  # 54 and 243 in session 21's corpus


def test_scratch_files_of_one_or_two_characters_are_read_and_written_by_name():
    """People call scratch files ``c.txt`` or ``x2.py``; a request naming one gets a call on exactly that path."""
    calls = []
    for chat in _chats(600, "scratch"):
        for request, reply in zip(chat.messages, chat.messages[1:]):
            for call in reply.get("tool_calls") or []:
                path = call["function"]["arguments"].get("path", "")
                if request["role"] == "user" and re.fullmatch(r"[a-z][a-z0-9]?\.[a-z]+", path):
                    calls.append((call["function"]["name"], path, request["content"]))
    assert {"read_file", "write_file"} <= {name for name, _, _ in calls}
    assert len(calls) > 20  # none before: every stem had three letters or more
    named = [path in said for name, path, said in calls if name in ("read_file", "write_file")]
    assert sum(named) > 0.8 * len(named)  # the rest follow on: "Read it back to check."


def test_word_list_replies_write_nearly_every_letter_piece_of_the_vocabulary(hf_tokenizer):
    """Names garbled in session 21 (``wifi`` -> ``wlar``) were made of pieces replies almost never held."""
    from training.pieces import letter_pieces
    from training.sessions import word_list_chat

    pieces, written = set(letter_pieces()), set()
    for seed in range(3000):
        reply = word_list_chat(random.Random(seed)).messages[1]["content"]
        written |= set(hf_tokenizer.convert_ids_to_tokens(hf_tokenizer.encode(reply, add_special_tokens=False)))
    assert len(pieces) > 2000
    assert len(written & pieces) > 0.9 * len(pieces)  # 52% before pieces were drawn
