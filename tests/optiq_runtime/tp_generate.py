"""Generations for the tensor-parallel tests: run alone, or as ranks under mlx.launch (rank 0 prints JSON).

``python tp_generate.py MODEL_DIR``: greedy runs with MTP off and on (a prompt, one extending it,
a stream closed after two steps, a run after that), a seeded sampled run and a guided tool call.
"""

import json
import sys
from itertools import islice

from optiq_runtime.engine import Engine
from optiq_runtime.guide import CallGuide
from optiq_runtime.rank_engine import open_tensor_parallel
from optiq_runtime.ranks import launched, world
from optiq_runtime.sampling import Sampling
from optiq_runtime.tensor_parallel import resident_bytes

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "circle_area",
            "description": "Area of a circle.",
            "parameters": {"type": "object", "properties": {"radius": {"type": "number"}}, "required": ["radius"]},
        },
    }
]


def runs(engine) -> dict:
    tok = engine.tokenizer
    asked = tok.apply_chat_template(
        [{"role": "user", "content": "Area of a circle of radius 3?"}], tools=TOOLS, add_generation_prompt=True
    )
    prompt = asked + tok.encode("<tool_call>")  # a long answer from tiny-agent too
    out = {}
    for mtp in (False, True):
        engine.mtp_enabled = mtp
        engine.reset()
        first = engine.generate(prompt, Sampling(max_tokens=24))
        longer = engine.generate(prompt + first[:5] + [7], Sampling(max_tokens=24))
        steps = engine.stream(prompt + [9], Sampling(max_tokens=24))
        closed = [t for step in islice(steps, 2) for t in step.tokens]
        steps.close()
        after = engine.generate(prompt + [9, 11], Sampling(max_tokens=24))
        out["mtp" if mtp else "plain"] = [first, longer, closed, after, engine.last_stats.mtp_used]
    sampled = engine.generate(prompt + [13], Sampling(max_tokens=16, temperature=0.8, seed=3))
    guided = engine.generate(asked, Sampling(max_tokens=40), guide=CallGuide.for_tools(tok, TOOLS))
    out.update(
        sampled=sampled,
        guided=guided,
        weights=resident_bytes(engine.model, engine.head),
        heads=cache_heads(engine._state),
    )
    return out


def cache_heads(state) -> list[int]:
    """Heads held by this rank's first KV cache and first DeltaNet state."""
    return [state.main[state.kv_ids[0]].keys.shape[1], state.main[state.linear_ids[0]].cache[1].shape[1]]


def main(path: str) -> None:
    if launched():
        engine = open_tensor_parallel(path, world())
        if engine is None:
            return
    else:
        engine = Engine.load(path, mtp="on", dequantize=False)  # the runs turn MTP off and on; no cost measurement
        engine.auto_fallback = False  # as under tensor parallelism: MTP rounds whenever it is on
    print(json.dumps(runs(engine)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
