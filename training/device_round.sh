#!/bin/sh
# One round of tiny-agent training on a lent GPU, in a single call of the device tool (issue #20).
#
# The device machine's python3 has torch, transformers and tokenizers; nothing else is needed there
# (training never imports MLX). What comes back under $OUT: model/ (the exported checkpoint: fp8
# weights, config, tokenizer, generation config, card), log.jsonl (the run's log), gpu.txt.
# Evaluate model/ here, on the CPU, as every round is (the card's pre-set rule).
#
#   device run:  MINUTES=7 sh training/device_round.sh [more training.build flags, e.g. --hidden 384 896]
#
# INIT: the checkpoint to start from (a folder in the working tree, or one named in the call's carry);
# ROWS x 2048 tokens per step, WORKERS processes writing rows (one core writes ~70,000 tokens/s,
# the GPU trains ~186,000). DEVICE=cpu runs the same round here, for a check of the script itself.
set -eu
: "${OUT:?run it under the device tool, which sets OUT (or set OUT to a folder)}"
INIT=${INIT:-optiq_runtime/models/tiny-agent}
MINUTES=${MINUTES:-7}
ROWS=${ROWS:-32}
WORKERS=${WORKERS:-12}
LR=${LR:-1e-3}
SEED=${SEED:-20}
DEVICE=${DEVICE:-cuda}
WORKDIR=${WORKDIR:-$(mktemp -d)}
# Wheels carried in .whl (the device README says how) replace the image's: carry this machine's
# transformers to train with the very model code the CPU rounds used (the image's is older).
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv >"$OUT/gpu.txt" 2>&1 || echo "no nvidia-smi" >"$OUT/gpu.txt"
PYTHONUNBUFFERED=1 python3 -m training.build --workdir "$WORKDIR" --out "$OUT/model" --init "$INIT" \
  --mix people --lr "$LR" --minutes "$MINUTES" --seed "$SEED" --device "$DEVICE" --rows "$ROWS" \
  --data-workers "$WORKERS" --threads 4 --which last --no-measure --copy-weight 3 --fp8 "$@"
cp "$WORKDIR/log.jsonl" "$OUT/log.jsonl"
