"""How far a reduced compute dtype moves a model's flow from float32 on real pairs.

The rule a reduced precision had to meet to become `--dtype auto`'s choice: the flow moves by less
than 0.05 px (mean endpoint distance to the float32 flow) on `../shared/data/flow-large`, beside
`daflow_vfx.numerics.autocast_epe` on its fixed window. Both pairs of each level run through the
engine as `render` runs them (channels_last where the estimator picks it).

    .venv/bin/python tools/dtype_flow_change.py ../shared/data/flow-large --dtype bfloat16
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a folder of pairs with ground truth (flow-dev, flow-large)")
    parser.add_argument("--model", default="daflow-compact")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--levels", default="clean,severe")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from daflow_vfx.hostalloc import tune_host_allocator

    tune_host_allocator()
    from daflow_vfx.bench.accuracy import degrade_pair, level_seed, load_pairs, read_pair
    from daflow_vfx.engine import FlowEngine
    from daflow_vfx.numerics import autocast_epe

    ref = FlowEngine(args.model, device=args.device, dtype="float32")
    low = FlowEngine(args.model, device=args.device, dtype=args.dtype)
    fixed = autocast_epe(ref.estimator, dtype=args.dtype)
    print(f"{args.model} {args.dtype} on {args.device}; fixed window (autocast_epe): "
          f"mean {fixed.epe_mean:.4f} px, max {fixed.epe_max:.4f} px")
    print("| pair | level | mean \\|flow - float32\\| px | 99th percentile px | mean \\|flow\\| px |")
    print("|---|---|---|---|---|")
    means = []
    for i, pair in enumerate(load_pairs(args.data)):
        clean, gt = read_pair(pair)
        for level in args.levels.split(","):
            frames = degrade_pair(clean, gt, level, seed=level_seed(0, i, level))
            a = ref.estimate_pair(frames[0], frames[1])  # [H, W, 2]
            b = low.estimate_pair(frames[0], frames[1])
            dist = np.linalg.norm(a - b, axis=-1)
            means.append(float(dist.mean()))
            print(f"| {pair.name} | {level} | {means[-1]:.4f} | {np.percentile(dist, 99):.4f} | "
                  f"{np.linalg.norm(a, axis=-1).mean():.2f} |", flush=True)
    print(f"\nmean over pairs and levels: {np.mean(means):.4f} px (max {max(means):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
