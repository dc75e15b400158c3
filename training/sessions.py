"""Sessions of one to five requests, rendered exactly as the agent renders a session to the model.

The agent (``agent.chat.Transcript``) never re-renders the history: it keeps the tokens the model
has seen and appends each new message's rendering. So every earlier assistant turn keeps the empty
think block it was generated after, where the chat template (which drops earlier turns' think
blocks) would render it differently. ``render_session`` reproduces the agent's text: the first
request with the tools block, then each later request rendered on its own, as the last query.
Every assistant reply follows an empty think block, so the loss covers all of them.
"""

from __future__ import annotations

import random

from training import people as P
from training import words as W
from training.corpus import Chat
from training.template import render

# (turn maker, weight, what the session must already hold for it)
FIRST_TURNS = [
    (P.turn_arithmetic, 6, None),
    (P.turn_python, 1.5, None),
    (P.turn_read, 4, None),
    (P.turn_read_missing, 0.4, None),
    (P.turn_write, 4, None),
    (P.turn_edit, 3, None),
    (P.turn_search, 2.5, None),
    (P.turn_list, 2, None),
    (P.turn_chat, 2, None),
    (P.turn_echo, 1, None),
]
FOLLOW_UPS = [
    (P.turn_more_maths, 2, "number"),
    (P.turn_save_result, 2, "number"),
    (P.turn_open_hit, 1.5, "hit"),
    (P.turn_read_back, 1.5, "path"),
    (P.turn_copy_it, 1, "path"),
    (P.turn_edit_it, 1, "path"),
]
MAX_TURN_CHARS = 2400  # with the seven tools' block (925 tokens), a session fits a 2048-token row


def people_mix():
    """The fine-tuning mix: people's requests and sessions, with the first corpus beside them so its skills stay."""
    from training import corpus as C

    # Round 1 (agent 2, bfcl 3, long copies 0.7) lowered the shipped suite from 82.5% to 67.5%: the
    # first corpus was about a quarter of the trained tokens. From round 2 it is about half.
    return [
        (people_chat, 10),
        (C.agent_chat, 5),
        (C.bfcl_chat, 10),
        # Copy drills are a few dozen tokens each, without the tools block: in session 8 the 8-layer
        # model still garbled copied names and tool results, so they are drawn 4-6x as often as before.
        (C.long_copy_chat, 6),
        (C.copy_chat, 3),
        (C.domain_chat, 0.2),
        (word_list_chat, 20),  # ~40 tokens each, no tools block: a few % of the compute
    ]


def word_list_chat(rng: random.Random) -> Chat:
    return Chat("word_list", P.word_list_chat(rng))


def _ready(ws: P.Workspace, needs: str | None) -> bool:
    if needs is None:
        return True
    value = getattr(ws, needs)
    return value is not None and (needs not in ("path", "hit") or value in ws.files)


def session_messages(rng: random.Random, requests: int) -> list[dict]:
    """``requests`` turns over one workspace; later turns may refer back to earlier ones."""
    ws, messages = P.Workspace(), []
    for i in range(requests):
        makers = FIRST_TURNS + ([m for m in FOLLOW_UPS if _ready(ws, m[2])] if i else [])
        maker = rng.choices([m[0] for m in makers], weights=[m[1] * (2.5 if m in FOLLOW_UPS else 1) for m in makers])[0]
        turn = maker(rng, ws)
        if (
            i
            and sum(len(str(m.get("content", ""))) + len(str(m.get("tool_calls", ""))) for m in messages + turn)
            > MAX_TURN_CHARS
        ):
            break
        messages += turn
    return messages


def people_chat(rng: random.Random) -> Chat:
    """One request (a third of the time) or a session of two to five, with the agent's seven tools."""
    requests = rng.choices([1, 2, 3, 4, 5], weights=[3, 3, 2, 1.2, 0.8])[0]
    messages = session_messages(rng, requests)
    kind = "people" if sum(m["role"] == "user" for m in messages) == 1 else "people_session"
    return Chat(kind, messages, [dict(t) for t in W.SESSION_TOOLS], session=True)


def _turns(messages: list[dict]) -> list[list[dict]]:
    """The messages cut before each user request (a leading system message stays with the first)."""
    turns: list[list[dict]] = []
    for message in messages:
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    if len(turns) > 1 and all(m["role"] == "system" for m in turns[0]):
        turns[0] = turns.pop(0) + turns[0]
    return turns


def render_session(messages: list[dict], tools: list[dict] | None) -> str:
    """The text the agent's transcript holds after this session (see the module docstring)."""
    turns = _turns(messages)
    return render(turns[0], tools) + "".join(render(turn, None) for turn in turns[1:])
