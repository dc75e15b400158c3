"""Measure an exported tiny-agent: ``python -m training.quality DIR``.

Greedy generation runs through stock mlx-lm (the runtime path). Scores, all on conversations
from seeds training never used:

- ``builtin_first_call``: first call right (name and every argument, BFCL-AST style) on tasks
  over the six built-in tools;
- ``unseen_schema_first_call``: the same on BFCL-style tasks over freshly drawn schemas;
- ``no_tool``: share of requests that need no tool answered without a call;
- ``mtp_accept``: the MTP head's one-draft-token greedy acceptance along the greedy output,
  computed with the PyTorch reference of the head on the exported weights.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from training import corpus as C

_CALL = re.compile(r"<tool_call>\s*<function=([^>\n]+)>\s*(.*?)</function>\s*</tool_call>", re.S)
_PARAM = re.compile(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", re.S)
MAX_TOKENS = 96  # a first reply's budget: a call with long values fits


def parse_calls(text: str) -> list[tuple[str, dict[str, str]]]:
    """The XML tool calls in ``text`` as (name, raw string arguments)."""
    return [(name.strip(), {k.strip(): v for k, v in _PARAM.findall(body)}) for name, body in _CALL.findall(text)]


def _same(expected: object, raw: str) -> bool:
    if isinstance(expected, str):
        return raw.strip() == expected.strip()
    try:
        return json.loads(raw) == expected
    except json.JSONDecodeError:
        return False


def call_matches(expected: tuple[str, dict], got: tuple[str, dict[str, str]]) -> bool:
    """BFCL-AST style: same function, same argument names, each value equal after typing."""
    name, args = expected
    return got[0] == name and set(got[1]) == set(args) and all(_same(v, got[1][k]) for k, v in args.items())


def first_call(chat: C.Chat) -> tuple[str, dict] | None:
    """The first call of the chat's first assistant reply as (name, arguments); None when it has none."""
    reply = next(m for m in chat.messages if m["role"] == "assistant")
    calls = reply.get("tool_calls")
    if not calls:
        return None
    return calls[0]["function"]["name"], calls[0]["function"]["arguments"]


def quality_sets(count: int, seed: str = "quality") -> dict[str, list[C.Chat]]:
    """Held-out prompts per score, drawn from ``Random(seed)``.

    ``"quality"`` gives the reported scores; ``tiny.select`` picks checkpoints on another seed,
    so the reported scores are not the ones a checkpoint was chosen for.
    """
    rng = random.Random(seed)
    sets = {"builtin_first_call": [], "unseen_schema_first_call": [], "no_tool": []}
    while min(len(v) for v in sets.values()) < count:
        chat = rng.choice([C.agent_chat, C.bfcl_chat])(rng)
        first = first_call(chat)
        key = (
            ("unseen_schema_first_call" if chat.kind.startswith("bfcl") else "builtin_first_call")
            if first
            else "no_tool"
        )
        if len(sets[key]) < count:
            sets[key].append(chat)
    return sets


def prompt_text(tokenizer, chat: C.Chat) -> str:
    """The chat up to its first assistant reply, with its tools and the generation prompt (no thinking)."""
    messages = []
    for m in chat.messages:
        if m["role"] == "assistant":
            break
        messages.append(m)
    return tokenizer.apply_chat_template(
        messages, tools=chat.tools, add_generation_prompt=True, enable_thinking=False, tokenize=False
    )


def measure(folder: Path, count: int = 40, max_tokens: int = MAX_TOKENS, log=print, guided: bool = True) -> dict:
    """Scores of the checkpoint in ``folder`` (see the module docstring).

    With ``guided``, the call scores again through optiq's engine with guided call names
    (``optiq_runtime.guide``), under ``scores["guided"]``: what the agent gets from the model.
    """
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(folder))
    mtp = _MtpScorer(folder)
    sets = quality_sets(count)

    def stock(prompt: str, tools) -> str:
        text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=max_tokens)
        mtp.add(tokenizer.encode(prompt, add_special_tokens=False), tokenizer.encode(text, add_special_tokens=False))
        return text

    scores = {name: score_set(name, chats, tokenizer, stock, log) for name, chats in sets.items()}
    scores["mtp_accept"] = mtp.rate()
    scores["mtp_drafts"] = mtp.drafted
    log(f"mtp_accept: {scores['mtp_accept']} over {mtp.drafted} drafts")
    if guided:
        scores["guided"] = _guided_scores(folder, sets, max_tokens, log)
    return scores


def guided_first_calls(folder: Path, count: int = 40, max_tokens: int = MAX_TOKENS) -> dict[str, float]:
    """The three scores of any model folder (a quantized build too), guided, on ``count`` requests each."""
    return _guided_scores(folder, quality_sets(count), max_tokens, lambda line: None)


def _guided_scores(folder: Path, sets: dict[str, list[C.Chat]], max_tokens: int, log) -> dict:
    from optiq_runtime.engine import Engine
    from optiq_runtime.guide import CallGuide
    from optiq_runtime.sampling import Sampling

    engine = Engine.load(folder, mtp=False)
    tokenizer = engine.tokenizer

    def guided(prompt: str, tools) -> str:
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        return tokenizer.decode(
            engine.generate(ids, Sampling(max_tokens=max_tokens), guide=CallGuide.for_tools(tokenizer, tools))
        )

    return {
        name: score_set(name, chats, tokenizer, guided, lambda line: log("guided " + line))
        for name, chats in sets.items()
    }


def score_set(name: str, chats: list[C.Chat], tokenizer, generate, log) -> float:
    """The share of ``chats`` whose greedy reply is right for score ``name``."""
    good = 0
    for chat in chats:
        text = generate(prompt_text(tokenizer, chat), chat.tools)
        calls = parse_calls(text)
        if name == "no_tool":
            good += not calls and "<tool_call>" not in text
        else:
            good += bool(calls) and call_matches(first_call(chat), calls[0])
    score = round(good / len(chats), 3)
    log(f"{name}: {score}")
    return score


class _MtpScorer:
    """One-draft acceptance of the MTP head along greedy outputs (PyTorch reference, exported weights)."""

    def __init__(self, folder: Path):
        import torch
        from safetensors.torch import load_file

        from training.arch import Shape, TinyAgent

        config = json.loads((folder / "config.json").read_text())["text_config"]
        fields = {k: config[k] for k in Shape.__dataclass_fields__ if k in config}
        self.model = TinyAgent(Shape(**fields)).eval()
        tensors = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        lm = {
            "model." + k.removeprefix("model.language_model."): v
            for k, v in tensors.items()
            if k.startswith("model.language_model.")
        }
        lm["lm_head.weight"] = lm["model.embed_tokens.weight"]
        self.model.lm.load_state_dict(lm)
        self.model.mtp.load_state_dict({k.removeprefix("mtp."): v for k, v in tensors.items() if k.startswith("mtp.")})
        self.torch = torch
        self.accepted = self.drafted = 0

    def add(self, prompt: list[int], output: list[int]) -> None:
        if len(output) < 2:
            return
        ids = self.torch.tensor([prompt + output])
        with self.torch.no_grad():
            pre, _, rope = self.model(ids)
            draft = self.model.logits(self.model.mtp_hidden(ids, pre, rope))[0].argmax(-1)
        start = len(prompt) - 1  # h at the last prompt token + the first output token -> drafts output[1]
        for t in range(start, ids.shape[1] - 2):
            self.drafted += 1
            self.accepted += int(draft[t].item() == ids[0, t + 2].item())

    def rate(self) -> float:
        return round(self.accepted / max(self.drafted, 1), 3)


if __name__ == "__main__":
    target = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "models" / "tiny-agent"
    )
    print(json.dumps(measure(target, count=int(sys.argv[2]) if len(sys.argv) > 2 else 40)))
