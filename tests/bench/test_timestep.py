"""Feature-timestep experiment: the matching measure is right on known motion; the command runs."""

import numpy as np
import pytest

from daflow_vfx.bench.timestep import TimestepJob, parse_timesteps, run_timestep, token_match_error
from daflow_vfx.errors import UsageError


def _one_hot_tokens(h: int, w: int, shift: tuple[int, int]) -> np.ndarray:
    # Frame 1's token (y, x) carries the identity of frame 0's token (y - dy, x - dx).
    n = h * w
    f0 = np.eye(n)
    f1 = np.zeros((n, n))
    for y in range(h):
        for x in range(w):
            sy, sx = y - shift[1], x - shift[0]
            if 0 <= sy < h and 0 <= sx < w:
                f1[y * w + x] = f0[sy * w + sx]
    return np.stack([f0, f1])


def test_token_matching_error_is_zero_for_a_whole_token_shift():
    h, w, patch = 4, 5, 16
    flow = np.zeros((2, h * patch, w * patch))
    flow[0] = 2 * patch  # content moves two tokens right
    tokens = _one_hot_tokens(h, w, (2, 0))
    err, n = token_match_error(tokens, flow, np.ones((h * patch, w * patch), bool), patch)
    assert n == h * (w - 2)  # tokens whose content leaves the frame are not scored
    assert err == pytest.approx(0.0)
    # Wrong features (no shift) are off by exactly the motion.
    err, n = token_match_error(_one_hot_tokens(h, w, (0, 0)), flow, np.ones_like(flow[0], bool), patch)
    assert err / n == pytest.approx(2 * patch)


def test_parse_timesteps():
    assert parse_timesteps("0.25, 0.5") == (0.25, 0.5)
    for bad in ("0", "1.0", "x", ""):
        with pytest.raises(UsageError):
            parse_timesteps(bad)


@pytest.mark.slow
def test_sweep_runs_and_restores_the_timestep():
    job = TimestepJob(timesteps=(0.25, 0.75), samples=1, match_size=(64, 96), allow_random=True, output=None)
    rows = run_timestep(job)
    assert [r.timestep for r in rows] == [0.25, 0.75]
    assert all(np.isfinite([r.match_clean, r.match_severe, r.val_epe]).all() for r in rows)
    assert rows[0].dev_epe is None
