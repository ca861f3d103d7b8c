#!/usr/bin/env bash
# The render-speed check of the GPU (issue #21), about two minutes: run ON the lent GPU machine from the
# repository root, right after the prepared training call, on the same warm machine:
#   device run: bash tools/device/speed.sh   with carry [".whl"], timeout_s 240
# It times daflow-compact (DIS prior) and daflow-compact-noprior, model only (forward and backward flow
# of a 3-frame window, 4 iterations as render runs), in float32 and bf16 at 1080p and 4K, with peak GPU
# memory, then the prior-free model with its refinement iteration compiled (CUDA graphs), then
# daflow-compact with its DIS prior on the device against the host, and writes bench_speed_cuda.md,
# bench_speed_cuda_compiled.md and bench_speed_cuda_prior.md into $OUT. End-to-end renders are left out: they
# need OpenImageIO or PyAV, which the device lacks and the tree that travels has no room for
# (DEVELOPERS.md, tree size). DEVICE=cpu SIZES=64x48 runs the same steps here, as a check of the script.
set -euo pipefail
out=${OUT:?run this through the device tool, which sets OUT}
device=${DEVICE:-cuda}
sizes=${SIZES:-1920x1080,3840x2160}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 DAFLOW_SPEED_OUT="$out" DAFLOW_SPEED_DEVICE="$device" DAFLOW_SPEED_SIZES="$sizes"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout 230 python3 - <<'PY'
import os
import time

from daflow_vfx.bench.speed import SpeedJob, bench_speed, parse_sizes

out, device = os.environ["DAFLOW_SPEED_OUT"], os.environ["DAFLOW_SPEED_DEVICE"]
sizes = parse_sizes(os.environ["DAFLOW_SPEED_SIZES"])
common = dict(sizes=sizes, device=device, iters=4, repeats=3, warmup=1, isolate=False, reuse_frames=0,
              render_frames=0)
size_text = ",".join(f"{w}x{h}" for w, h in sizes)
started = time.monotonic()
job = SpeedJob(models=("daflow-compact", "daflow-compact-noprior"), output=f"{out}/bench_speed_cuda.md",
               command=f"daflow-vfx bench speed --device {device} --models daflow-compact,daflow-compact-noprior "
               f"--sizes {size_text} --iters 4 --in-process --reuse-frames 0 --render-frames 0", **common)
print(bench_speed(job), flush=True)
print(f"model-only rows took {time.monotonic() - started:.0f} s", flush=True)

# The refinement iteration compiled (CUDA graphs on CUDA) against eager, the prior-free model in bf16 at
# the first size: the engine's own path, timed per window after warm-up calls (the first compiles).
import numpy as np
import torch

from daflow_vfx.engine import FlowEngine
from daflow_vfx.numerics import fixed_window


def timed(fn, *, warm=1, reps=3):
    """Median seconds of ``reps`` calls of ``fn`` after ``warm`` warm-up calls (the first compiles)."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


w, h = sizes[0]
window = fixed_window(frames=3, height=h, width=w)
lines = [f"Refinement compiled vs eager: daflow-compact-noprior, {w}x{h}, 4 iterations, {device}, "
         "bfloat16 autocast where the device has it (--dtype auto); seconds per 3-frame window (2 pairs), "
         "median of 3 after 2 warm-up calls.", "", "| refinement | dtype | s/window | pairs/s |", "|---|---|---|---|"]
for compiled in (False, True):
    if time.monotonic() - started > 150:
        lines.append(f"| {'compiled' if compiled else 'eager'} | - | - | - (out of time) |")
        continue
    try:
        engine = FlowEngine("daflow-compact-noprior", device=device, dtype="auto", iters=4,
                            compile_refinement=compiled)
        s = timed(lambda: engine.estimate_window(window), warm=2)
        lines.append(f"| {'compiled' if compiled else 'eager'} | {engine.dtype} | {s:.3f} | {2 / s:.2f} |")
    except Exception as exc:  # noqa: BLE001 - a failure is a finding: it goes into the table
        lines.append(f"| {'compiled' if compiled else 'eager'} | - | - | failed: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:200] if str(exc) else ''} |")
    print(lines[-1], flush=True)
with open(f"{out}/bench_speed_cuda_compiled.md", "w") as f:
    f.write("\n".join(lines) + "\n")

# The DIS prior on the device (model.dis) against OpenCV's on the host (issue #21, item 1), at the first
# size: daflow-compact windows with each, then dis_flow alone on a window's 4 pairs, K=16 (the default)
# and K=1 steps per propagation pass. The device prior becomes the CUDA default only if its window is
# faster than the host prior's (its accuracy is within 2 % of OpenCV's prior: docs/benchmarks.md).
from daflow_vfx.devices import dtype_that_runs
from daflow_vfx.estimators.daflow import make_daflow
from daflow_vfx.model.dis import dis_flow



lines = [f"DIS prior on the device vs OpenCV on the host: {w}x{h}, {device}; daflow-compact windows (3 frames, "
         "4 iterations, --dtype auto) and dis_flow alone on 4 pairs; seconds, median of 3 after a warm-up.", "",
         "| what | s | pairs/s |", "|---|---|---|"]
for on_device in (False, True):
    if time.monotonic() - started > 170:
        lines.append(f"| window, prior on {'device' if on_device else 'host'} | - | - (out of time) |")
        continue
    try:
        est = make_daflow(name="daflow-compact", device=device, iters=4, prior_on_device=on_device,
                          dtype=dtype_that_runs("daflow-compact", "auto", device))
        engine = FlowEngine(est, device=device, dtype="auto")
        s = timed(lambda: engine.estimate_window(window))
        lines.append(f"| window, prior on {'device' if on_device else 'host'} | {s:.3f} | {2 / s:.2f} |")
    except Exception as exc:  # noqa: BLE001 - a failure is a finding: it goes into the table
        lines.append(f"| window, prior on {'device' if on_device else 'host'} | - | failed: "
                     f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''} |")
    print(lines[-1], flush=True)
gray = torch.rand(4, h, w, device=device).mul_(255).round_()
for groups in (16, 1):
    if time.monotonic() - started > 190:
        lines.append(f"| dis_flow K={groups} | - | - (out of time) |")
        continue
    s = timed(lambda: dis_flow(gray, gray.roll(3, 2), groups=groups))
    lines.append(f"| dis_flow K={groups}, 4 pairs | {s:.3f} | {4 / s:.2f} |")
    print(lines[-1], flush=True)
with open(f"{out}/bench_speed_cuda_prior.md", "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"all took {time.monotonic() - started:.0f} s", flush=True)
PY
