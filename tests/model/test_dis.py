"""model.dis: DIS in torch against OpenCV's DIS, which the prior-refining weights were trained on."""

import numpy as np
import pytest
import torch

from daflow_vfx.estimators.classical import DISEstimator, to_gray_u8
from daflow_vfx.model.dis import PRESETS, coarsest_scale, dis_flow, gray_u8

from ..helpers import noise_texture, translated_frames


def _warped_pair(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """[2, H, W, 3]: a texture and the same texture rotated by 4 degrees and zoomed by 6 %, so the
    motion varies over the frame (up to ~10 px at the corners) and propagation has work to do."""
    import cv2

    base = noise_texture(height, width, seed=seed)
    m = cv2.getRotationMatrix2D((width / 2, height / 2), 4.0, 1.06)
    moved = cv2.warpAffine(base, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.stack([base, moved]).astype(np.float32)


def _both(frames: np.ndarray, *, preset: str, groups: int | None) -> tuple[np.ndarray, np.ndarray]:
    gray = [to_gray_u8(f) for f in frames]
    want = DISEstimator(preset=preset)._solve(gray[0], gray[1])  # [H, W, 2]
    first, second = (torch.from_numpy(g).float()[None] for g in gray)
    got = dis_flow(first, second, preset=preset, groups=groups)[0].permute(1, 2, 0).numpy()
    return got, want


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sequential_order_reproduces_opencv(preset):
    # groups=None visits the patches in OpenCV's order: the flow is OpenCV's up to float rounding
    got, want = _both(_warped_pair(96, 136), preset=preset, groups=None)
    diff = np.linalg.norm(got - want, axis=-1)
    assert got.shape == want.shape == (96, 136, 2)
    assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.05, (diff.mean(), diff.max())


def test_grouped_propagation_stays_near_opencv():
    # the default: K steps per propagation pass instead of one per anti-diagonal
    got, want = _both(_warped_pair(112, 160, seed=1), preset="medium", groups=16)
    diff = np.linalg.norm(got - want, axis=-1)
    assert diff.mean() < 0.1, diff.mean()


def test_recovers_a_translation():
    frames = translated_frames(2, 96, 128, dx=6, dy=-4, seed=2)
    gray = torch.from_numpy(np.stack([to_gray_u8(f) for f in frames])).float()
    flow = dis_flow(gray[:1], gray[1:])[0]  # [2, H, W]
    inner = flow[:, 16:-16, 16:-16]
    assert abs(float(inner[0].median()) - 6.0) < 0.1 and abs(float(inner[1].median()) + 4.0) < 0.1


def test_batch_of_pairs_is_solved_pair_by_pair():
    a = _warped_pair(64, 96, seed=3)
    b = translated_frames(2, 64, 96, dx=-3, dy=2, seed=4)
    gray = torch.from_numpy(np.stack([[to_gray_u8(f) for f in p] for p in (a, b)])).float()  # [2, 2, H, W]
    both = dis_flow(gray[:, 0], gray[:, 1])
    for i in range(2):
        alone = dis_flow(gray[i:i + 1, 0], gray[i:i + 1, 1])
        torch.testing.assert_close(both[i:i + 1], alone, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(5, 7), (12, 40), (17, 17)])
def test_frames_smaller_than_a_patch_give_a_flow_of_their_size(size):
    rng = np.random.default_rng(0)
    gray = torch.from_numpy(rng.integers(0, 256, (2, *size))).float()
    flow = dis_flow(gray[:1], gray[1:])
    assert flow.shape == (1, 2, *size) and torch.isfinite(flow).all()


def test_gray_matches_the_opencv_input():
    rgb = noise_texture(24, 32, seed=5)
    got = gray_u8(torch.from_numpy(rgb).permute(2, 0, 1)).numpy()
    np.testing.assert_array_equal(got, to_gray_u8(rgb).astype(np.float32))


def test_coarsest_scale_follows_opencv():
    # OpenCV's formula: round(log2(max side / 32)), capped by log2(min side // 8)
    assert coarsest_scale(436, 1024, 8) == 5
    assert coarsest_scale(480, 640, 8) == 4
    assert coarsest_scale(1080, 1920, 8) == 6
    assert coarsest_scale(256, 256, 8) == 3


def test_runs_on_the_inputs_device(device):
    frames = translated_frames(2, 48, 64, dx=2, dy=1, seed=6)
    gray = torch.from_numpy(np.stack([to_gray_u8(f) for f in frames])).float().to(device)
    flow = dis_flow(gray[:1], gray[1:])
    assert flow.device.type == device
    if device != "cpu":
        torch.testing.assert_close(flow.cpu(), dis_flow(gray[:1].cpu(), gray[1:].cpu()), atol=1e-3, rtol=0)
