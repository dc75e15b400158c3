"""What a fused MTP round costs in plain decode steps, by backbone depth: ``python bench/mtp_rounds.py``.

MTP pays when a round yields more tokens than it costs plain steps. The head is one layer, so
that cost falls as the backbone deepens. In one run this decodes the embedded tiny-agent
(4 layers) and random checkpoints of its shapes with 12 and 24 layers, plain and with MTP at
depths 1 and 2 (greedy, end of turn ignored, speed guard off), and prints each round's cost in
plain steps and the tokens per round MTP needs to break even and to be 1.4x faster. Random
weights have no useful drafts: this measures cost, not acceptance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from optiq_runtime.fastcpu import reexec_with_openblas

TEXT_FIELDS = (
    "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
    "linear_num_key_heads", "linear_num_value_heads", "linear_key_head_dim", "linear_value_head_dim",
    "linear_conv_kernel_dim", "full_attention_interval",
)


def deep_copy_of_shapes(base: Path, layers: int, folder: Path) -> Path:
    """A random Qwen3.5 checkpoint with ``base``'s shapes and ``layers`` layers (tests/checkpoints.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from checkpoints import write_random_checkpoint

    text = json.loads((base / "config.json").read_text())["text_config"]
    shapes = {k: text[k] for k in TEXT_FIELDS if k in text}
    return write_random_checkpoint(folder, seed=layers, num_hidden_layers=layers, **shapes)


def round_costs(model: Path, tokens: int) -> dict[int, float | None]:
    from agent.cli.bench import measure_decode, read_prompts
    from optiq_runtime.engine import Engine

    costs = {}
    for depth in (1, 2):
        engine = Engine.load(model, mtp_depth=depth)
        engine.auto_fallback = False
        result = measure_decode(engine, read_prompts(None)[:6], tokens, repeat=1, ignore_eos=True)
        costs[depth] = result.round_cost
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens per run (default 64)")
    args = parser.parse_args()
    from optiq_runtime.embedded import embedded_base_path

    base = embedded_base_path()
    print("layers  depth  round cost (plain steps)  tokens/round to break even  for 1.4x")
    with tempfile.TemporaryDirectory() as work:
        for layers in (4, 12, 24):
            model = base if layers == 4 else deep_copy_of_shapes(base, layers, Path(work) / f"deep{layers}")
            for depth, cost in round_costs(model, args.tokens).items():
                if cost is None:
                    print(f"{layers:>6}  {depth:>5}  not measured")
                    continue
                print(f"{layers:>6}  {depth:>5}  {cost:>24.2f}  {cost:>26.2f}  {1.4 * cost:>8.2f}")
    print("tokens per round = 1 + accepted drafts (at most 1 + depth)")
    return 0


if __name__ == "__main__":
    reexec_with_openblas(sys.argv)
    sys.exit(main())
