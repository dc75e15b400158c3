"""Guided tool calls: names in a call can only be offered ones, and guiding keeps decoding exact."""

from __future__ import annotations

import random
import re

import pytest

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.engine import Engine
from optiq_runtime.guide import CallGuide, Signature, Slot, TokenPieces, open_slot, tool_parameters
from optiq_runtime.sampling import Sampling
from training import corpus as C
from training.quality import parse_calls, prompt_text

FUNCTIONS = {
    "get_size": Signature(("clear_market", "kisido")),
    "get_sugar": Signature(("amount",)),
    "list_river": Signature(()),
    "set_wolf": Signature(("name", "size", "age"), ("name", "age")),
    "set_mode": Signature(("mode", "quiet", "note"), (), {"mode": ("fast", "slow", "3"), "quiet": ("true", "false")}),
}


def tool(name: str, *params: str, required: tuple[str, ...] = ()) -> dict:
    properties = {p: {"type": "string"} for p in params}
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


@pytest.mark.parametrize(
    ("text", "slot"),
    [
        ("<tool_call>\n<function=get_s", Slot("get_s", tuple(FUNCTIONS))),
        ("<tool_call>\n<function=", Slot("", tuple(FUNCTIONS))),
        ("<tool_call>\n<function=get_size>\n<parameter=", Slot("", ("clear_market", "kisido"))),
        (
            "<tool_call>\n<function=get_size>\n<parameter=clear_market>\nx\n</parameter>\n<parameter=k",
            Slot("k", ("kisido",)),
        ),
        # a required parameter is missing: the next one to open is required, and the call cannot close
        ("<tool_call>\n<function=set_wolf>", Slot("", ("\n<parameter=name", "\n<parameter=age"))),
        ("<tool_call>\n<function=set_wolf>\n<", Slot("\n<", ("\n<parameter=name", "\n<parameter=age"))),
        ("<tool_call>\n<function=set_wolf>\n<parameter=name>\nRex\n</parameter>\n", Slot("\n", ("\n<parameter=age",))),
        # every parameter given: the call closes (an 8-layer tiny-agent opened a parameter the function lacks)
        ("<tool_call>\n<function=get_sugar>\n<parameter=amount>\n1\n</parameter>", Slot("", ("\n</function>",), "")),
        (
            "<tool_call>\n<function=get_sugar>\n<parameter=amount>\n1\n</parameter>\n<",
            Slot("\n<", ("\n</function>",), ""),
        ),
        # the function has closed: only the call's end follows (sampling wrote stray text here, unclosed)
        (
            "<tool_call>\n<function=get_sugar>\n<parameter=amount>\n1\n</parameter>\n</function>",
            Slot("", ("\n</tool_call>",), ""),
        ),
        ("<tool_call>\n<function=list_river>\n</function>\n", Slot("\n", ("\n</tool_call>",), "")),
        # a value from a closed set
        (
            "<tool_call>\n<function=set_mode>\n<parameter=mode>\nf",
            Slot("\nf", ("\nfast", "\nslow", "\n3"), "\n</parameter>"),
        ),
        ("<tool_call>\n<function=set_mode>\n<parameter=quiet>", Slot("", ("\ntrue", "\nfalse"), "\n</parameter>")),
        # a Hermes JSON call's name
        ('<tool_call>\n{"name": "get_', Slot("get_", tuple(FUNCTIONS), '"')),
        ('<tool_call>\n{ "name":"', Slot("", tuple(FUNCTIONS), '"')),
    ],
)
def test_a_name_being_written_opens_a_slot_of_the_names_left(text, slot):
    assert open_slot(text, FUNCTIONS) == slot


@pytest.mark.parametrize(
    "text",
    [
        "I will call <function=",  # not inside a tool call
        "<tool_call>\n<function=get_size>\n</function>\n</tool_call>\n<function=",  # the call is closed
        "<tool_call>\n<function=get_size>\n<parameter=kisido>\nx = <y",  # writing a value
        "<tool_call>\n<function=unknown>\n<parameter=",  # a function nobody offered: nothing to steer by
        "<tool_call>\n<function=list_river>\n<parameter=",  # no parameters left
        "<tool_call>\n<function=get_sugar>\n<parameter=amount>\n1\n</parameter>\n<parameter=",
        "<tool_call>\n<function=set_wolf>\n<parameter=name>\nRex",  # a value, though required ones are missing
        "<tool_call>\n<function=set_wolf>\n<parameter=age>\n3\n</parameter>\n<parameter=name>\nRex\n</parameter>\n",
        "<tool_call>\n<function=get_size>\n",  # nothing required
        "<tool_call>\n<function=set_mode>\n<parameter=note>\nanything",  # an open value
        "<tool_call>\n<function=set_mode>\n<parameter=note>\n</function>",  # a value may hold the tag
        '<tool_call>\n{"name": "get_size", "arguments": {"kis',  # Hermes arguments are not guided
        '<tool_call>\n{"arguments": {}, "name": "get',
    ],
)
def test_no_slot_outside_a_name_or_when_no_name_is_left(text):
    assert open_slot(text, FUNCTIONS) is None


def test_tool_parameters_reads_openai_tools_and_bare_docs_and_skips_junk():
    tools = [
        tool("a", "x", "y", required=("y", "w")),
        {"name": "b", "parameters": {"properties": {"z": {}}}},
        {"name": "c", "parameters": {"properties": [], "required": "x"}},
        {"function": "junk"},
        "junk",
        {"name": 3},
        {
            "name": "d",
            "parameters": {"properties": {"e": {"enum": ["x", 2, None]}, "b": {"type": "boolean"}, "s": {"enum": []}}},
        },
    ]
    assert tool_parameters(tools) == {
        "a": Signature(("x", "y"), ("y",)),
        "b": Signature(("z",)),
        "c": Signature(()),
        "d": Signature(("e", "b", "s"), (), {"e": ("x", "2", "null"), "b": ("true", "false")}),
    }
    assert tool_parameters(None) == {}


@pytest.fixture(scope="module")
def engine():
    return Engine.load(embedded_base_path(), mtp="on")


def test_every_allowed_token_keeps_the_name_on_track(engine):
    tokenizer = engine.tokenizer
    guide = CallGuide.for_tools(tokenizer, [tool("get_size", "clear_market"), tool("get_sugar"), tool("open_music")])
    pieces = TokenPieces.of(tokenizer)
    for typed in ("", "get", "get_s", "get_size", "open_m"):
        ids = tokenizer.encode("<tool_call>\n<function=" + typed, add_special_tokens=False)
        allowed = guide.allowed(ids)
        targets = [n + ">" for n in ("get_size", "get_sugar", "open_music") if n.startswith(typed)]
        rest_pieces = {pieces.pieces[t] for t in allowed}
        assert rest_pieces, typed
        for piece in rest_pieces:
            text = typed + piece
            assert any(t.startswith(text) or text.startswith(t) for t in targets), (typed, piece)
        # and every way to finish each name's next character is there
        for target in targets:
            assert any(target[len(typed) :].startswith(p) for p in rest_pieces), (typed, target)


def test_the_guide_forgets_a_generation_that_does_not_extend_the_last(engine):
    tokenizer = engine.tokenizer
    guide = CallGuide.for_tools(tokenizer, [tool("get_size")])
    inside = tokenizer.encode("<tool_call>\n<function=ge", add_special_tokens=False)
    assert guide.allowed(inside) is not None
    assert guide.allowed(tokenizer.encode("Hello", add_special_tokens=False)) is None
    assert guide.allowed(inside) is not None
    assert CallGuide.for_tools(tokenizer, []) is None


def unseen_schema_chats(count: int) -> list[C.Chat]:
    rng = random.Random("test-guide")
    return [C.bfcl_chat(rng, "simple_python") for _ in range(count)]


def prompt_ids(tokenizer, chat: C.Chat) -> list[int]:
    return tokenizer.encode(prompt_text(tokenizer, chat), add_special_tokens=False)


def guided_reply(engine, request: str, tools: list[dict], opening: str = "", max_tokens: int = 96) -> str:
    """tiny-agent's greedy, guided reply to one user ``request``; ``opening`` is answer text the prompt already holds."""
    tokenizer = engine.tokenizer
    chat = C.Chat("test", [{"role": "user", "content": request}], tools)
    ids = tokenizer.encode(prompt_text(tokenizer, chat) + opening, add_special_tokens=False)
    guide = CallGuide.for_tools(tokenizer, tools, opening)
    return tokenizer.decode(engine.generate(ids, Sampling(max_tokens=max_tokens), guide=guide))


def offered_names_only(text: str, tools: list[dict]) -> bool:
    """Every call names an offered function, only its parameters, and all it requires."""
    functions = tool_parameters(tools)
    calls = parse_calls(text)
    return bool(calls) and all(
        name in functions and set(functions[name].required) <= set(args) <= set(functions[name].params)
        for name, args in calls
    )


def named_so_far_are_offered(text: str, tools: list[dict]) -> bool:
    """Every function and parameter the text names is offered, the parameters by the function before them;
    unlike ``offered_names_only`` this judges a call that ``max_tokens`` cut off too."""
    functions = tool_parameters(tools)
    for chunk in text.split("<function=")[1:]:
        name = chunk.split(">", 1)[0]
        if name not in functions or not set(re.findall(r"<parameter=([^>\n]*)>", chunk)) <= set(functions[name].params):
            return False
    return "<function=" in text


def test_guided_calls_name_only_offered_functions_and_parameters(engine):
    tokenizer = engine.tokenizer
    chats = unseen_schema_chats(12)
    unguided = [tokenizer.decode(engine.generate(prompt_ids(tokenizer, c), Sampling(max_tokens=96))) for c in chats]
    guided = [
        tokenizer.decode(
            engine.generate(
                prompt_ids(tokenizer, c), Sampling(max_tokens=96), guide=CallGuide.for_tools(tokenizer, c.tools)
            )
        )
        for c in chats
    ]
    # The premise: left alone, tiny-agent misnames something in some of these calls.
    assert not all(offered_names_only(text, c.tools) for text, c in zip(unguided, chats))
    assert all(named_so_far_are_offered(text, c.tools) for text, c in zip(guided, chats)), guided
    # Finished calls also hold every required parameter (round 14's weights spin one value past max_tokens).
    assert sum(offered_names_only(text, c.tools) for text, c in zip(guided, chats)) >= 10, guided


def test_a_tool_the_model_never_saw_is_the_one_it_calls(engine):
    tools = [tool("zq_frobnicate", "target_folder")]
    out = guided_reply(engine, "List the files in `docs`.", tools, max_tokens=64)
    calls = parse_calls(out)
    assert calls and calls[0][0] == "zq_frobnicate" and set(calls[0][1]) <= {"target_folder"}, out


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_guided_mtp_decoding_equals_guided_plain_decoding(engine, depth, fused):
    tokenizer = engine.tokenizer
    engine.auto_fallback, engine.fuse_rounds, engine.mtp_depth = False, fused, depth
    try:
        for chat in unseen_schema_chats(4):
            ids, guide = prompt_ids(tokenizer, chat), CallGuide.for_tools(tokenizer, chat.tools)
            engine.mtp_enabled = False
            plain = engine.generate(ids, Sampling(max_tokens=80), guide=guide)
            engine.mtp_enabled = True
            assert engine.generate(ids, Sampling(max_tokens=80), guide=guide) == plain
            assert engine.last_stats.mtp_used
    finally:
        engine.auto_fallback, engine.fuse_rounds, engine.mtp_depth, engine.mtp_enabled = True, True, 2, True


def test_sampled_guided_calls_stay_within_the_offered_names(engine):
    tokenizer = engine.tokenizer
    engine.auto_fallback = False
    try:
        called = 0
        for seed, chat in enumerate(unseen_schema_chats(6)):
            out = engine.generate(
                prompt_ids(tokenizer, chat),
                Sampling(max_tokens=96, temperature=1.0, seed=seed),
                guide=CallGuide.for_tools(tokenizer, chat.tools),
            )
            text = tokenizer.decode(out)
            if "</function>" in text:
                called += 1
                assert offered_names_only(text, chat.tools), text
        assert called >= 3  # sampling at temperature 1 still calls (all 6 did when this was written)
    finally:
        engine.auto_fallback = True


def test_a_call_opened_by_the_prompt_is_guided_from_the_first_token(engine):
    tools = [tool("zq_frobnicate", "target_folder")]
    opening = "<tool_call>\n<function="
    out = guided_reply(engine, "List the files in `docs`.", tools, opening, max_tokens=64)
    assert out.startswith("zq_frobnicate>"), out


def test_no_guide_without_tools_or_without_a_vocabulary(engine):
    class Opaque:  # encodes and decodes, lists no vocabulary
        def decode(self, ids):
            return "".join(map(chr, ids))

    assert CallGuide.for_tools(Opaque(), [tool("f")]) is None
    assert CallGuide.for_tools(engine.tokenizer, None) is None


def test_a_call_cannot_close_before_its_required_parameters(engine):
    tools = [tool("set_wolf", "music_name", "warm_source", required=("warm_source", "music_name"))]
    out = guided_reply(engine, "Can you set the wolf for warm source 836.8?", tools)
    calls = parse_calls(out)
    assert calls and set(calls[0][1]) == {"warm_source", "music_name"}, out


def test_a_closed_set_value_is_one_of_its_choices(engine):
    unit = {"type": "string", "enum": ["kelvin", "rankine"]}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "read_heat",
                "parameters": {
                    "type": "object",
                    "properties": {"unit": unit, "loud": {"type": "boolean"}},
                    "required": ["unit", "loud"],
                },
            },
        }
    ]
    out = guided_reply(engine, "Can you read the heat with unit `celsius` and loud off?", tools)
    calls = parse_calls(out)
    assert calls and calls[0][1]["unit"] in ("kelvin", "rankine") and calls[0][1]["loud"] in ("true", "false"), out


def test_a_hermes_json_call_names_an_offered_function(engine):
    tools = [tool("zq_frobnicate", "target_folder")]
    opening = '<tool_call>\n{"name": "'
    out = guided_reply(engine, "List the files in `docs`.", tools, opening, max_tokens=24)
    assert out.startswith('zq_frobnicate"'), out
