"""What guided call names cost and give, measured in one run on held-out BFCL-style requests.

Run: python bench/guide.py [--model DIR] [--count 40] [--mtp]
Each request is decoded greedily twice on one engine, guided and unguided (in alternating order,
so neither always runs warm). Prints decode tok/s of both and their ratio, the share of output
tokens the guide limited, and the share of first calls right by the BFCL-AST style check.
Decode speed counts the tokens after the first and the time after the prefill. Run it on an
otherwise idle machine; it re-executes itself with OpenBLAS preloaded on Linux.
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from optiq_runtime.fastcpu import reexec_with_openblas


def requests(count: int) -> list:
    """Held-out BFCL-style requests over fresh schemas (seeds training never used)."""
    from training import corpus as C

    rng = random.Random("bench-guide")
    return [C.bfcl_chat(rng, rng.choice(["simple_python", "multiple", "parallel"])) for _ in range(count)]


def run(engine, chat, guided: bool) -> dict:
    from optiq_runtime.guide import CallGuide
    from optiq_runtime.sampling import Sampling
    from training.quality import call_matches, first_call, parse_calls, prompt_text

    tokenizer = engine.tokenizer
    guide = CallGuide.for_tools(tokenizer, chat.tools) if guided else None
    ids = tokenizer.encode(prompt_text(tokenizer, chat), add_special_tokens=False)
    out = engine.generate(ids, Sampling(max_tokens=96), guide=guide)
    stats = engine.last_stats
    limited = sum(guide.allowed(out[:i]) is not None for i in range(len(out))) if guide else 0
    calls = parse_calls(tokenizer.decode(out))
    right = bool(calls) and call_matches(first_call(chat), calls[0])
    return {
        "tokens": len(out),
        "decode_tokens": stats.decode_tokens,
        "seconds": stats.decode_s,
        "limited": limited,
        "right": right,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the embedded tiny-agent)")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--mtp", action="store_true", help="decode with the MTP head (default: plain steps)")
    args = parser.parse_args()
    reexec_with_openblas(sys.argv)
    from optiq_runtime.engine import Engine

    engine = Engine.load(args.model, mtp=args.mtp)
    chats = requests(args.count)
    run(engine, chats[0], True)  # compile the graphs once
    totals = {True: [], False: []}
    for i, chat in enumerate(chats):
        order = (True, False) if i % 2 else (False, True)
        for guided in order:
            engine.reset()  # no prompt cache carried from one to the other
            totals[guided].append(run(engine, chat, guided))
    report = {}
    for guided, runs in totals.items():
        tokens = sum(r["tokens"] for r in runs)
        report["guided" if guided else "unguided"] = {
            "decode_tok_s": round(sum(r["decode_tokens"] for r in runs) / sum(r["seconds"] for r in runs), 1),
            "limited_token_share": round(sum(r["limited"] for r in runs) / max(tokens, 1), 3),
            "first_call_right": round(sum(r["right"] for r in runs) / len(runs), 3),
        }
    report["speed_ratio_guided_vs_unguided"] = round(
        report["guided"]["decode_tok_s"] / report["unguided"]["decode_tok_s"], 3
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
