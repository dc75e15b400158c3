"""A block-scaled fp8 base against its bf16 original at Qwen3.5-0.8B's shape: bytes, load time, peak memory, logits.

Writes a random checkpoint of the real shape (bf16, Hugging Face layout), converts its matrices to
Qwen's fp8 format (``training.export.fp8_tensors``: e4m3, one scale per 128x128 block), then loads
each in its own process through optiq's loader (the fp8 one dequantized to bf16 on the way) and runs
one forward over the same tokens. Prints the fp8/bf16 ratios measured in this one run. The same
for the embedded tiny-agent: random weights amplify any change of weights through 24 layers, so only
a trained model's logits say what fp8 costs.

    python bench/fp8_base.py [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from quantize_scale import _env, run_measured  # noqa: E402

from optiq_runtime import embedded_base_path  # noqa: E402

WRITE = """
import sys
from checkpoints import write_real_shape_checkpoint
write_real_shape_checkpoint(__import__("pathlib").Path(sys.argv[1]))
"""
CONVERT = """
import json, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
from training.export import FP8_CONFIG, fp8_tensors
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst)
save_file(fp8_tensors(load_file(str(src / "model.safetensors"))), str(dst / "model.safetensors"), metadata={"format": "pt"})
config = json.loads((src / "config.json").read_text())
config["quantization_config"] = FP8_CONFIG
(dst / "config.json").write_text(json.dumps(config))
"""
FORWARD = """
import sys, time
import mlx.core as mx
import numpy as np
from optiq_runtime.load import load_network
start = time.perf_counter()
model, _ = load_network(sys.argv[1], upcast=False)
loaded = time.perf_counter() - start
vocab = model.args.text_config["vocab_size"]
tokens = mx.array(np.random.default_rng(0).integers(3, vocab, (1, int(sys.argv[2]))))
logits = model(tokens).astype(mx.float32)
np.save(sys.argv[3], np.array(logits))
print(loaded)
"""


def compare(root: Path, tokens: int, env: dict[str, str]) -> dict:
    """Convert ``root/bf16`` to ``root/fp8``; load both and run one forward each; sizes, times, memory, logits."""
    import numpy as np

    bf16, fp8 = root / "bf16", root / "fp8"
    run_measured([sys.executable, "-c", CONVERT, str(bf16), str(fp8)], env)
    result: dict = {}
    for name, folder in (("bf16", bf16), ("fp8", fp8)):
        out, _, rss = run_measured(
            [sys.executable, "-c", FORWARD, str(folder), str(tokens), str(root / f"{name}.npy")], env
        )
        size = (folder / "model.safetensors").stat().st_size
        result[name] = {"file_bytes": size, "load_s": round(float(out), 2), "peak_rss_bytes": rss}
    a, b = np.load(root / "bf16.npy"), np.load(root / "fp8.npy")
    result["ratios_fp8_over_bf16"] = {
        key: round(result["fp8"][key] / result["bf16"][key], 3) for key in ("file_bytes", "load_s", "peak_rss_bytes")
    }
    result["logits"] = {
        "relative_error": round(float(np.linalg.norm(b - a) / np.linalg.norm(a)), 4),
        "same_argmax": round(float((a.argmax(-1) == b.argmax(-1)).mean()), 3),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    env = _env([REPO, REPO / "tests"])
    work = Path(tempfile.mkdtemp(prefix="optiq-fp8-"))
    try:
        real = work / "qwen35-0.8B-random"
        run_measured([sys.executable, "-c", WRITE, str(real / "bf16")], env)
        tiny = work / "tiny-agent"
        shutil.copytree(embedded_base_path(), tiny / "bf16")
        result = {"qwen35-0.8B-random": compare(real, args.tokens, env), "tiny-agent": compare(tiny, args.tokens, env)}
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
