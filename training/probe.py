"""Cheap scores logged while training: teacher-forced, on held-out conversations (PyTorch)."""

from __future__ import annotations

import random

import torch

from training.arch import TinyAgent
from training.batches import Encoder
from training.corpus import Chat, agent_chat, bfcl_chat, copy_chat


def probe_chats(count: int = 32) -> dict[str, list[Chat]]:
    """Fixed held-out conversations per skill (seeds the training stream never uses)."""
    sets = {"copy": [], "builtin": [], "unseen_schema": [], "no_tool": []}
    rng = random.Random("probe")
    while min(len(v) for v in sets.values()) < count:
        chat = rng.choice([copy_chat, agent_chat, bfcl_chat])(rng)
        first = next((m for m in chat.messages if m["role"] == "assistant"), None)
        if chat.kind == "copy_call" or chat.kind == "copy":
            key = "copy"
        elif chat.kind.startswith("bfcl") and first.get("tool_calls"):
            key = "unseen_schema"
        elif chat.kind in ("no_tool", "bfcl_irrelevance"):
            key = "no_tool"
        elif first.get("tool_calls"):
            key = "builtin"
        else:
            continue
        if len(sets[key]) < count:
            sets[key].append(chat)
    return sets


def _first_reply_span(ids: list[int], mask: list[int]) -> range:
    start = mask.index(1)
    end = start
    while end < len(mask) and mask[end]:
        end += 1
    return range(start, end)


@torch.no_grad()
def teacher_forced_scores(model: TinyAgent, encoder: Encoder, sets: dict[str, list[Chat]]) -> dict[str, float]:
    """Per skill: share of first replies whose every token is the argmax under teacher forcing.

    Also the MTP head's one-token acceptance: on assistant tokens where the main head's argmax is
    right, how often the MTP head's argmax for the token after it is right as well.
    """
    scores, accepted, drafted = {}, 0, 0
    tool_call = encoder.tokenizer.token_to_id("<tool_call>")
    device = next(model.parameters()).device
    for name, chats in sets.items():
        exact = 0
        for chat in chats:
            ids, mask = encoder.encode(chat)
            x = torch.tensor([ids], device=device)
            pre, post, rope = model(x)
            pred = model.logits(post)[0].argmax(-1)
            span = _first_reply_span(ids, mask)
            if name == "no_tool":
                exact += int(pred[span.start - 1].item() != tool_call)
            else:
                exact += int(all(pred[i - 1].item() == ids[i] for i in span))
            mtp_pred = model.logits(model.mtp_hidden(x, pre, rope))[0].argmax(-1)
            for i in range(len(ids) - 2):
                if mask[i + 1] and mask[i + 2] and pred[i].item() == ids[i + 1]:
                    drafted += 1
                    accepted += int(mtp_pred[i].item() == ids[i + 2])
        scores[name] = round(exact / len(chats), 3)
    scores["mtp_accept"] = round(accepted / max(drafted, 1), 3)
    scores["score"] = round(
        scores["builtin"] + scores["unseen_schema"] + 0.5 * scores["no_tool"] + 0.25 * scores["mtp_accept"], 3
    )
    return scores


def make_probe(encoder: Encoder, count: int = 16):
    """An ``evaluate(model, state)`` callback for ``train``."""
    sets = probe_chats(count)
    return lambda model, state: teacher_forced_scores(model, encoder, sets)
