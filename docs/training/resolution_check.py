"""Does a DA-Flow checkpoint hold up above its training resolution? (development diagnostic)

    python docs/training/resolution_check.py WEIGHTS.safetensors ../shared/data/flow-dev \
        [--iters N] [--tokens T] [--model daflow-compact-cnn] [--tile PX]

Prints mean EPE of DIS and of the checkpoint (``daflow-compact`` architecture) on every second pair of
the folder, clean, at centre crops of 128x160 (the training size) and 256x320, and on full frames;
then the checkpoint alone on all pairs' full frames. ``--iters`` sets the refinement iterations
(default 12), ``--tokens`` the backbone's token budget per frame (80 = the 8x10 grid of a 128x160
training crop), ``--model`` the architecture (default daflow-compact), ``--tile`` runs the model on
tiles of that many pixels (32-pixel overlap) instead of whole frames.
"""

from __future__ import annotations

import sys

import numpy as np

from daflow_vfx.bench.accuracy import flow_errors, load_pairs, read_display
from daflow_vfx.engine import FlowEngine
from daflow_vfx.estimators import load_estimator
from daflow_vfx.io import read_flo


def main(
    weights: str,
    data: str,
    iters: int = 12,
    tokens: int | None = None,
    model: str = "daflow-compact",
    tile: int | None = None,
) -> None:
    dis = FlowEngine(load_estimator("dis"))
    est = load_estimator(model, weights=weights, iters=iters)
    if tokens is not None:
        est.model.max_backbone_tokens = tokens
    flow = FlowEngine(est, tile=tile, tile_pad=32)
    for size in [(128, 160), (256, 320), None]:
        e_dis = e_model = n = 0.0
        for p in load_pairs(data)[::2]:
            gt, a, b = read_flo(p.flow), read_display(p.img1), read_display(p.img2)
            if size:
                y0, x0 = (a.shape[0] - size[0]) // 2, (a.shape[1] - size[1]) // 2
                crop = np.s_[y0 : y0 + size[0], x0 : x0 + size[1]]
                a, b, gt = a[crop], b[crop], gt[crop]
            e1, _, _, nv = flow_errors(dis.estimate_pair(a, b), gt)
            e2, _, _, _ = flow_errors(flow.estimate_pair(a, b), gt)
            e_dis, e_model, n = e_dis + e1, e_model + e2, n + nv
        label = f"{size[0]}x{size[1]}" if size else "full"
        sys.stdout.write(f"{label}: dis {e_dis / n:.2f}  {model} {e_model / n:.2f}\n")
    e_model = n = 0.0
    for p in load_pairs(data):
        gt = read_flo(p.flow)
        e, _, _, nv = flow_errors(flow.estimate_pair(read_display(p.img1), read_display(p.img2)), gt)
        e_model, n = e_model + e, n + nv
    sys.stdout.write(f"all pairs, full frames, {iters} iterations: {model} {e_model / n:.2f}\n")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("data")
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=None)
    ap.add_argument("--model", default="daflow-compact")
    ap.add_argument("--tile", type=int, default=None)
    a = ap.parse_args()
    main(a.weights, a.data, a.iters, a.tokens, a.model, a.tile)
