#!/usr/bin/env bash
# The render-speed check of the GPU (issue #21), about two minutes: run ON the lent GPU machine from the
# repository root, right after the prepared training call, on the same warm machine:
#   device run: bash tools/device/speed.sh   with carry [".whl"], timeout_s 240
# It times daflow-compact (DIS prior) and daflow-compact-noprior, model only (forward and backward flow
# of a 3-frame window, 4 iterations as render runs), in float32 and bf16 at 1080p and 4K, with peak GPU
# memory, then the prior-free model with its refinement iteration compiled (CUDA graphs), and writes
# bench_speed_cuda.md and bench_speed_cuda_compiled.md into $OUT. End-to-end renders are left out: they
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
exec timeout 220 python3 - <<'PY'
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

from daflow_vfx.engine import FlowEngine
from daflow_vfx.numerics import fixed_window

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
        for _ in range(2):
            engine.estimate_window(window)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            engine.estimate_window(window)
            times.append(time.perf_counter() - t)
        s = float(np.median(times))
        lines.append(f"| {'compiled' if compiled else 'eager'} | {engine.dtype} | {s:.3f} | {2 / s:.2f} |")
    except Exception as exc:  # noqa: BLE001 - a failure is a finding: it goes into the table
        lines.append(f"| {'compiled' if compiled else 'eager'} | - | - | failed: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:200] if str(exc) else ''} |")
    print(lines[-1], flush=True)
with open(f"{out}/bench_speed_cuda_compiled.md", "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"all took {time.monotonic() - started:.0f} s", flush=True)
PY
