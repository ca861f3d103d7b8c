#!/usr/bin/env bash
# The prepared device run: run ON the lent GPU machine, from the repository root, as one call:
#   bash tools/device/prepare.sh          # here, first
#   device run: bash tools/device/train.sh   with carry [".whl"], timeout_s 600
# It benches training throughput, then trains configs/compact/gpu-noprior384x512.yaml and its CNN-only
# ablation side by side (stage budgets of 6 minutes, capped at MINUTES, default 6.5), writing weight
# shards, logs, bench_train.md and summary.json into $OUT. Then, here: `daflow-vfx train import` (see DEVELOPERS.md).
set -euo pipefail
minutes=${MINUTES:-6.5}
out=${OUT:?run this through the device tool, which sets OUT}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch, diffusers; print("torch", torch.__version__, "diffusers", diffusers.__version__)'
exec python3 -m daflow_vfx.train.device_run run configs/compact/gpu-noprior384x512.yaml configs/compact/gpu-noprior384x512-cnn.yaml \
    --out "$out" --minutes "$minutes" --bench-seconds 15
