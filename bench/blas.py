"""MLX CPU matmul speed with and without OpenBLAS preloaded, measured in one run.

Run: python bench/blas.py [--size 1024] [--repeats 20]
Each variant runs in its own process (LD_PRELOAD only acts at process start).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from optiq_runtime.fastcpu import DISABLE_VAR, find_openblas, preload_env

_MEASURE = """
import json, sys, time
import mlx.core as mx
n, repeats, dtype = int(sys.argv[1]), int(sys.argv[2]), getattr(mx, sys.argv[3])
mx.set_default_device(mx.cpu)
a = mx.random.normal((n, n)).astype(dtype); b = mx.random.normal((n, n)).astype(dtype)
mx.eval(a @ b)
start = time.perf_counter()
for _ in range(repeats):
    mx.eval(a @ b)
seconds = (time.perf_counter() - start) / repeats
print(json.dumps({"gflops": 2 * n**3 / seconds / 1e9}))
"""


def measure(env: dict[str, str], size: int, repeats: int, dtype: str) -> float:
    """GFLOP/s of an n x n matmul in a fresh process with ``env``."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(size), str(repeats), dtype],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["gflops"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plain_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "OPTIQ_OPENBLAS_PRELOADED")}
    plain_env[DISABLE_VAR] = "1"
    fast_env = preload_env({k: v for k, v in plain_env.items() if k != DISABLE_VAR})
    if fast_env is None:
        print(f"OpenBLAS not found ({find_openblas()}); install libopenblas0-pthread", file=sys.stderr)
        return 1
    rows = {}
    for dtype in ("float32", "bfloat16"):
        plain = measure(plain_env, args.size, max(2, args.repeats // 5), dtype)
        fast = measure(fast_env, args.size, args.repeats, dtype)
        rows[dtype] = {"reference_gflops": plain, "openblas_gflops": fast, "speedup": fast / plain}
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{args.size}x{args.size} matmul on the MLX CPU backend")
    for dtype, row in rows.items():
        print(
            f"  {dtype:9s} reference BLAS {row['reference_gflops']:7.1f} GFLOP/s | "
            f"OpenBLAS {row['openblas_gflops']:7.1f} GFLOP/s | speedup {row['speedup']:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
