"""The accuracy benchmark on the real development pairs (skips when shared/data is absent)."""

import numpy as np

from daflow_vfx.bench.accuracy import degrade_pair, flow_errors, load_pairs, run_accuracy
from daflow_vfx.io import read_flo


def test_flow_dev_pairs_load_and_dis_is_sane(flow_dev_dir):
    pairs = load_pairs(flow_dev_dir)
    assert len(pairs) == 17
    rows, skipped = run_accuracy(flow_dev_dir, models=("dis",), levels=("clean", "extreme"), limit=2)
    assert skipped == []
    by = {r.level: r for r in rows}
    assert by["clean"].pairs == 2
    # Middlebury's small motions: DIS is accurate on clean frames and clearly worse when degraded.
    assert by["clean"].epe < 1.0
    assert by["extreme"].epe > by["clean"].epe


def test_unknown_flow_is_excluded(flow_dev_dir):
    pair = next(p for p in load_pairs(flow_dev_dir) if "middlebury" in str(p.flow))
    gt = read_flo(pair.flow)
    unknown = np.any(np.abs(gt) >= 1e9, axis=-1)
    assert unknown.any()  # Middlebury marks occluded / unknown pixels with 1e9+
    _, _, _, valid = flow_errors(np.zeros_like(gt), gt)
    assert valid == int((~unknown).sum())


def test_degradation_is_deterministic_per_seed(flow_dev_dir):
    from daflow_vfx.bench.accuracy import read_display

    pair = load_pairs(flow_dev_dir)[-1]
    frames = np.stack([read_display(pair.img1), read_display(pair.img2)])
    gt = read_flo(pair.flow)
    a = degrade_pair(frames, gt, "severe", seed=5)
    b = degrade_pair(frames, gt, "severe", seed=5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - frames).mean() > 0.01
