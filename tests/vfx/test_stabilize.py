"""Stabilization on synthetic shots with exact ground truth: motion fits, paths, framing, CLI, STMaps.

The shaky shot: frame n is a large texture seen through a camera ``G[n]`` (texture pixel -> frame pixel)
made of an intended slow pan plus random per-frame jitter (translation and rotation). Ground-truth flow
comes from ``G[n+1] @ inv(G[n])``; DIS flow from the rendered frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from daflow_vfx.cli import main
from daflow_vfx.jobs.outputs import sidecar_path
from daflow_vfx.vfx.camera_motion import estimate_camera_motion
from daflow_vfx.vfx.camera_path import (
    camera_path,
    l1_optimal_path,
    matrices_from_parameters,
    path_parameters,
    smooth_gaussian,
)
from daflow_vfx.vfx.stabilization import (
    StabilizeSettings,
    crop_matrix,
    plan_stabilization,
    stabilize,
    warp_frame,
)
from tests.helpers import noise_texture, read_exr

H, W = 64, 96
CX, CY = (W - 1) / 2, (H - 1) / 2
PAN = np.array([0.8, 0.3])  # intended camera pan, texture pixels per frame


def T(x: float, y: float) -> np.ndarray:
    return np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])


def R(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64) @ m[:2, :2].T + m[:2, 2]
    return p / (np.asarray(pts, np.float64) @ m[2, :2] + m[2, 2])[:, None]


def flow_of(m: np.ndarray, h: int = H, w: int = W) -> np.ndarray:
    """Exact flow [h, w, 2] of the global motion ``m`` (frame n pixel -> frame n+1 pixel)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs.ravel(), ys.ravel()], 1)
    return (apply(m, pts) - pts).reshape(h, w, 2).astype(np.float32)


@dataclass
class Shot:
    frames: np.ndarray  # [N, H, W, 3]
    cams: list[np.ndarray]  # texture pixel -> frame pixel, with shake
    intended: list[np.ndarray]  # the same without the shake
    gt_flows: list[np.ndarray]  # [H, W, 2] each
    dis_flows: list[np.ndarray]


def make_shot(count: int = 48, *, jitter: float = 2.0, rot_deg: float = 0.6, pan=PAN, seed: int = 1) -> Shot:
    from daflow_vfx.estimators import load_estimator

    rng = np.random.default_rng(seed)
    margin = 20 + int(count * max(abs(pan[0]), abs(pan[1])))
    texture = noise_texture(H + 2 * margin, W + 2 * margin, seed=3)
    jit = rng.normal(0.0, jitter, (count, 2))
    rot = rng.normal(0.0, math.radians(rot_deg), count)

    def cam(n: int, shake: bool) -> np.ndarray:
        j, r = (jit[n], rot[n]) if shake else (np.zeros(2), 0.0)
        return T(CX, CY) @ R(r) @ T(-CX, -CY) @ T(-margin - n * pan[0] - j[0], -margin - n * pan[1] - j[1])

    cams = [cam(n, True) for n in range(count)]
    frames = np.stack([cv2.warpPerspective(texture, g, (W, H), flags=cv2.INTER_LINEAR) for g in cams])
    gt = [flow_of(cams[n + 1] @ np.linalg.inv(cams[n])) for n in range(count - 1)]
    dis = load_estimator("dis")
    dis_flows = [dis.estimate(frames[n:n + 2]).forward[0] for n in range(count - 1)]
    return Shot(frames=frames.astype(np.float32), cams=cams, intended=[cam(n, False) for n in range(count)],
                gt_flows=gt, dis_flows=dis_flows)


@pytest.fixture(scope="module")
def shot() -> Shot:
    return make_shot()


PROBES = np.array([[8.0, 8.0], [W - 9.0, 8.0], [W - 9.0, H - 9.0], [8.0, H - 9.0], [CX, CY]])


def residual_tracks(shot: Shot, transforms: np.ndarray | None, crop: float = 1.0) -> np.ndarray:
    """Where probe points of the intended view land in the (uncropped) output, [N, 5, 2].

    For a perfect result these stay put (up to a constant offset): the output camera is the intended
    one. ``transforms=None`` gives the same for the shaky input itself.
    """
    uncrop = np.linalg.inv(crop_matrix(crop, (H, W)))
    tracks = []
    for n, (cam, want) in enumerate(zip(shot.cams, shot.intended, strict=True)):
        view = cam if transforms is None else np.linalg.inv(transforms[n] @ uncrop) @ cam
        tracks.append(apply(view @ np.linalg.inv(want), PROBES))
    return np.stack(tracks)


def jitter_numbers(tracks: np.ndarray) -> tuple[float, float]:
    """(rms deviation from the intended path, rms high-frequency part), in pixels.

    The high-frequency part is what the track does faster than a 1/4 s (6 frame) Gaussian: the shake
    you see. The deviation from the intended path also holds the slow wander any smoother leaves: from N
    noisy frames no method can tell jitter from the intended path better than a line fit's statistical
    error (about jitter * sqrt(2 / N)), so it cannot fall by 90% on short shots.
    """
    n = len(tracks)
    dev = tracks - tracks.mean(axis=0)
    low = smooth_gaussian(tracks.reshape(n, -1), 6.0).reshape(tracks.shape)
    rms = lambda a: float(np.sqrt((a ** 2).sum(-1).mean()))  # noqa: E731
    return rms(dev), rms(tracks - low)


def pan_velocity(shot: Shot, transforms: np.ndarray | None, crop: float = 1.0) -> np.ndarray:
    """Mean velocity [2] (pixels/frame, uncropped output) of the texture point at the first frame's centre."""
    uncrop = np.linalg.inv(crop_matrix(crop, (H, W)))
    x0 = apply(np.linalg.inv(shot.cams[0]), [[CX, CY]])
    views = shot.cams if transforms is None else [np.linalg.inv(t @ uncrop) @ c
                                                  for t, c in zip(transforms, shot.cams, strict=True)]
    track = np.stack([apply(v, x0)[0] for v in views])
    return np.diff(track, axis=0).mean(axis=0)


# --------------------------------------------------------------------------------------------------
# camera motion


KNOWN = {
    "translation": T(2.5, -1.25),
    "similarity": T(CX + 1.5, CY - 2.0) @ R(math.radians(2.0)) @ np.diag([1.03, 1.03, 1.0]) @ T(-CX, -CY),
    "affine": np.array([[1.02, 0.03, 1.5], [-0.02, 0.97, -2.0], [0.0, 0.0, 1.0]]),
    "perspective": np.array([[1.01, 0.02, 1.5], [-0.01, 0.99, -1.0], [2e-4, -1e-4, 1.0]]),
}


@pytest.mark.parametrize("fit", ["irls", "ransac"])
@pytest.mark.parametrize("mode", list(KNOWN))
def test_estimate_recovers_a_known_motion(mode: str, fit: str) -> None:
    truth = KNOWN[mode]
    got = estimate_camera_motion(flow_of(truth), mode=mode, method=fit)
    corners = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], np.float64)
    np.testing.assert_allclose(apply(got, corners), apply(truth, corners), atol=2e-3)
    if mode in ("translation", "similarity", "affine"):
        np.testing.assert_allclose(got[2], [0.0, 0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("fit", ["irls", "ransac"])
def test_big_moving_foreground_is_ignored(fit: str) -> None:
    """A shaky background plus a foreground object over 35% of the frame moving its own way."""
    shakes = {"translation": T(-1.7, 2.2),
              "similarity": T(CX - 1.7, CY + 2.2) @ R(math.radians(1.5)) @ T(-CX, -CY),
              "perspective": np.array([[1.01, 0.02, -1.7], [-0.01, 0.99, 2.2], [2e-4, -1e-4, 1.0]])}
    for mode, background in shakes.items():
        flow = flow_of(background)
        flow[8:52, 20:70] = flow_of(T(-6.0, 3.5))[8:52, 20:70]  # 44 x 50 = 36% of the frame
        got = estimate_camera_motion(flow, mode=mode, method=fit)
        pts = [[CX, CY], [0, 0], [W - 1, H - 1]]
        np.testing.assert_allclose(apply(got, pts), apply(background, pts), atol=1e-3)


def test_foreground_is_ignored_with_dis_flow() -> None:
    """The same with real (DIS) flow on rendered frames: a textured block slides across a shaken plate."""
    from daflow_vfx.estimators import load_estimator

    big = noise_texture(H + 40, W + 40, seed=5)
    block = noise_texture(30, 44, seed=9)
    background = T(CX + 1.2, CY - 0.8) @ R(math.radians(1.0)) @ T(-CX, -CY)
    frames = []
    for k, cam in enumerate([T(-20, -20), background @ T(-20, -20)]):
        frame = cv2.warpPerspective(big, cam, (W, H), flags=cv2.INTER_LINEAR)
        frame[14:44, 24 + 6 * k:68 + 6 * k] = block  # moves 6 px right, against the camera
        frames.append(frame)
    flow = load_estimator("dis").estimate(np.stack(frames).astype(np.float32)).forward[0]
    pts = [[CX, CY], [5, 5], [W - 6, H - 6]]
    for fit in ("irls", "ransac"):
        got = estimate_camera_motion(flow, mode="similarity", method=fit)
        # measured 0.15 px (DIS alone, without the block, is 0.09 px off)
        np.testing.assert_allclose(apply(got, pts), apply(background, pts), atol=0.25)
    naive = flow[8:-8, 8:-8].reshape(-1, 2).mean(axis=0)  # what a plain average of the flow says
    assert np.abs(naive - (apply(background, [[CX, CY]])[0] - [CX, CY])).max() > 1.5


def test_confidence_weights_out_unreliable_flow() -> None:
    truth = T(1.0, -2.0)
    flow = flow_of(truth)
    conf = np.ones((H, W), np.float32)
    rng = np.random.default_rng(0)
    flow[:, : int(W * 0.6)] = rng.normal(0, 8, (H, int(W * 0.6), 2))  # 60% garbage: beyond any robust fit
    conf[:, : int(W * 0.6)] = 0.0
    got = estimate_camera_motion(flow, confidence=conf, mode="translation")
    np.testing.assert_allclose(got, truth, atol=1e-6)


def test_flat_or_empty_flow_gives_identity() -> None:
    flow = np.full((H, W, 2), np.nan, np.float32)
    assert np.array_equal(estimate_camera_motion(flow), np.eye(3))


# --------------------------------------------------------------------------------------------------
# the whole thing on the shaky shot


@pytest.mark.parametrize("flows", ["gt", "dis"])
def test_shaky_pan_is_stabilized(shot: Shot, flows: str) -> None:
    settings = StabilizeSettings(mode="similarity", smooth=1.0, fps=24.0)
    result = stabilize(shot.frames, shot.gt_flows if flows == "gt" else shot.dis_flows, settings=settings)
    plan = result.plan
    dev0, hf0 = jitter_numbers(residual_tracks(shot, None))
    dev1, hf1 = jitter_numbers(residual_tracks(shot, plan.transforms, plan.crop))
    # measured (gt / dis): high-frequency 99.7% / 97.9%, deviation from the intended path 90.9% / 90.2%
    assert 1 - hf1 / hf0 >= 0.90, (hf0, hf1)
    assert 1 - dev1 / dev0 >= 0.80, (dev0, dev1)
    # the intended pan is kept: the scene keeps sliding against the camera at the pan's speed
    # (uncropped output pixels per frame; measured error ~0.02)
    np.testing.assert_allclose(pan_velocity(shot, plan.transforms, plan.crop), -PAN, atol=0.06)
    # auto crop: every output pixel samples inside the plate, so no black anywhere...
    assert 0.75 < plan.crop < 1.0
    ones = np.ones((H, W, 1), np.float32)
    coverage = np.stack([warp_frame(ones, t) for t in plan.transforms])
    assert coverage.min() >= 1.0 - 1e-6
    assert result.frames.min() >= 0.04  # the texture is in [0.05, 0.95]
    # ...and it is the largest such crop: keeping 0.5% more of the frame, some corner pixel of some
    # frame samples outside the plate's edge pixels
    wider = plan_stabilization(plan.motions, size=(H, W), settings=StabilizeSettings(
        mode="similarity", smooth=1.0, fps=24.0, crop=plan.crop + 0.005))
    corners = np.array([[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]])
    src = np.stack([apply(t, corners) for t in wider.transforms])  # [N, 4, 2]
    assert (src < -1e-3).any() or (src[..., 0] > W - 1 + 1e-3).any() or (src[..., 1] > H - 1 + 1e-3).any()


def test_l1_path_stabilizes_the_shot(shot: Shot) -> None:
    settings = StabilizeSettings(mode="similarity", method="l1", margin=0.12)
    plan = plan_stabilization([estimate_camera_motion(f, mode="similarity") for f in shot.gt_flows],
                              size=(H, W), settings=settings)
    _, hf0 = jitter_numbers(residual_tracks(shot, None))
    _, hf1 = jitter_numbers(residual_tracks(shot, plan.transforms, plan.crop))
    assert 1 - hf1 / hf0 >= 0.90, (hf0, hf1)  # measured 99.9%
    # pinned ends: the L1 camera does not lag the pan at the ends of a short shot (measured error 0.02)
    np.testing.assert_allclose(pan_velocity(shot, plan.transforms, plan.crop), -PAN, atol=0.06)
    ones = np.ones((H, W, 1), np.float32)
    assert min(warp_frame(ones, t).min() for t in plan.transforms) >= 1.0 - 1e-6
    # the virtual camera never leaves the real one by more than the margin
    params = path_parameters(plan.path, mode="similarity", size=(H, W))
    smooth = path_parameters(plan.smoothed, mode="similarity", size=(H, W))
    assert np.abs(smooth[:, 0] - params[:, 0]).max() <= 0.12 * W + 1e-6


def test_l1_optimal_path_is_piecewise_linear() -> None:
    """Grundmann's L1 path on a noisy hold-pan-hold: a handful of constant, linear and parabolic
    segments (third differences zero except at the knots), no visible acceleration anywhere else."""
    rng = np.random.default_rng(2)
    n = 120
    ramp = np.concatenate([np.zeros(40), np.arange(40) * 0.75, np.full(40, 30.0)])  # hold, pan, hold
    noisy = ramp + rng.normal(0.0, 1.5, n)
    path = l1_optimal_path(noisy, bound=4.0)
    assert np.abs(path - noisy).max() <= 4.0 + 1e-6
    knots_in = np.count_nonzero(np.abs(np.diff(noisy, 3)) > 1e-4)
    knots_out = np.count_nonzero(np.abs(np.diff(path, 3)) > 1e-4)
    assert knots_in >= 110 and knots_out <= 10, (knots_in, knots_out)  # measured 117 -> 7
    # second differences: every frame of the input accelerates visibly, the path never does (the
    # parabolic ease-in/out segments accelerate by ~0.02 px/frame^2; measured 118 -> 0 above 0.05)
    accel_in = np.count_nonzero(np.abs(np.diff(noisy, 2)) > 0.05)
    accel_out = np.count_nonzero(np.abs(np.diff(path, 2)) > 0.05)
    assert accel_in >= 110 and accel_out <= 3, (accel_in, accel_out)
    # and it follows the intended motion (measured 0.62 px mean error against 1.2 for the input)
    assert np.abs(path - ramp).mean() < 1.0


def test_gaussian_smoothing_follows_a_pan_to_the_ends() -> None:
    ramp = np.stack([np.arange(30) * 1.5 + 2, -np.arange(30) * 0.5], axis=1)
    np.testing.assert_allclose(smooth_gaussian(ramp, 8.0), ramp, atol=1e-9)
    noisy = ramp + np.random.default_rng(0).normal(0, 1, ramp.shape)
    out = smooth_gaussian(noisy, 8.0)
    assert np.abs(out - ramp)[[0, -1]].max() < 1.2  # the end frames are smoothed too, not pinned


def test_lock_and_strength() -> None:
    rng = np.random.default_rng(3)
    motions = [T(*rng.normal(0, 2, 2)) for _ in range(20)]
    path = camera_path(motions)
    size = (H, W)
    locked = plan_stabilization(motions, size=size, settings=StabilizeSettings(mode="translation", lock=True))
    # a locked-off camera: every output frame shows the same framing (virtual camera constant)
    assert np.ptp(locked.smoothed[:, :2, 2], axis=0).max() < 1e-9
    np.testing.assert_allclose(locked.smoothed[0, :2, 2], path[:, :2, 2].mean(axis=0), atol=1e-9)
    none = plan_stabilization(motions, size=size, settings=StabilizeSettings(
        mode="translation", strength=0.0, crop="none"))
    np.testing.assert_allclose(none.transforms, np.broadcast_to(np.eye(3), none.transforms.shape), atol=1e-9)
    half = plan_stabilization(motions, size=size, settings=StabilizeSettings(
        mode="translation", lock=True, strength=0.5, crop="none"))
    np.testing.assert_allclose(half.smoothed[:, :2, 2], (path[:, :2, 2] + locked.smoothed[:, :2, 2]) / 2,
                               atol=1e-9)
    assert half.crop == 1.0 and none.crop == 1.0


def test_lock_on_a_long_pan_limits_the_crop_and_says_so(caplog) -> None:
    motions = [T(-2.0, 0.0)] * 40  # an 80 px pan: no crop of a 96 px frame can lock it off
    plan = plan_stabilization(motions, size=(H, W), settings=StabilizeSettings(mode="translation", lock=True))
    assert plan.crop_limited and plan.crop == 0.5
    assert "borders are filled" in caplog.text


@pytest.mark.parametrize("mode", ["translation", "similarity", "affine", "perspective"])
def test_path_parameters_round_trip(mode: str) -> None:
    path = camera_path([KNOWN[mode]] * 5)
    params = path_parameters(path, mode=mode, size=(H, W))
    np.testing.assert_allclose(matrices_from_parameters(params, mode=mode, size=(H, W)), path, atol=1e-6)


def test_fill_and_borders() -> None:
    image = np.full((H, W, 3), 0.5, np.float32)
    assert warp_frame(image, T(10.0, -7.0), fill="edge").min() == pytest.approx(0.5)
    # pixels sampling past the plate's footprint are black, the rest untouched: no black bleeding in
    black = warp_frame(image, T(10.25, 0.0), fill="black")
    assert (black[:, :86] == 0.5).all() and (black[:, 86:] == 0.0).all()  # x + 10.25 > 95.5 from x = 86
    black = warp_frame(image, T(0.0, -7.0), fill="black")
    assert (black[7:] == 0.5).all() and (black[:7] == 0.0).all()  # y - 7 < -0.5 up to y = 6
    cubic = warp_frame(image, T(10.25, 0.0), interpolation="cubic")
    assert np.allclose(cubic[:, :85], 0.5, atol=1e-6)  # cubic taps past the edge read the edge


def test_no_motion_keeps_the_frame_untouched() -> None:
    frames = np.random.default_rng(0).random((4, H, W, 3), dtype=np.float32)
    result = stabilize(frames, [np.zeros((H, W, 2), np.float32)] * 3)
    assert result.plan.crop == 1.0
    np.testing.assert_allclose(result.frames, frames, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# the command


def write_plate(folder: Path, frames: np.ndarray, *, name: str = "plate", first: int = 1001) -> str:
    from daflow_vfx.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        write_image(folder / f"{name}.{first + k:04d}.exr", frame, half=False)
    return str(folder / f"{name}.####.exr")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Shot, str]:
    """A short version of the shot on disk as a float EXR plate (linear values, frames 1001-1012)."""
    short = make_shot(12, jitter=1.5)
    return short, write_plate(tmp_path_factory.mktemp("plate"), short.frames)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_outputs_and_stmap_reproduces_the_frame(small, tmp_path) -> None:
    short, plate = small
    out = str(tmp_path / "stab" / "sh.####.exr")
    result = invoke("stabilize", plate, "-o", out, "--model", "dis", "--smooth", "0.3", "--float",
                    "--stmap", str(tmp_path / "st" / "map.####.exr"), "--nk", str(tmp_path / "sh.nk"))
    assert result.exit_code == 0, result.output
    assert "Stabilized 12 frame(s) (frames 1001-1012)" in result.output.splitlines()[-1]
    doc = json.loads((tmp_path / "stab" / "sh.stabilize.json").read_text())
    assert doc["mode"] == "similarity" and doc["width"] == W and len(doc["frames"]) == 12
    assert len(doc["motion"]) == 11 and 0.5 < doc["crop"]["scale"] <= 1.0
    assert "OUTPUT pixel" in doc["conventions"]["frames"]
    nk = (tmp_path / "sh.nk").read_text()
    assert "Transform {" in nk and nk.count("x1001 ") == 4  # translate x, y, rotate, scale
    for frame in (1001, 1006, 1012):
        ch, attrs = read_exr(tmp_path / "st" / f"map.{frame}.exr")
        s, t = ch["R"], ch["G"]
        # Nuke STMap convention: s = (x + 0.5) / W, t = 1 - (y + 0.5) / H
        map_x, map_y = s * W - 0.5, (1.0 - t) * H - 0.5
        src = short.frames[frame - 1001]
        remapped = cv2.remap(src, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        stabilized, _ = read_exr(tmp_path / "stab" / f"sh.{frame}.exr")
        got = np.stack([stabilized[c] for c in "RGB"], axis=-1)
        np.testing.assert_allclose(remapped, got, atol=2e-3)
        # the JSON matrix says the same thing
        m = np.array(doc["frames"][str(frame)])
        np.testing.assert_allclose(apply(m, [[0, 0], [W - 1, H - 1]]),
                                   [[map_x[0, 0], map_y[0, 0]], [map_x[-1, -1], map_y[-1, -1]]], atol=1e-3)
        assert ch["A"].min() == 1.0  # auto crop: every pixel inside the plate


def test_cli_reuses_rendered_vectors(small, tmp_path) -> None:
    from daflow_vfx.io import write_motion_exr

    short, plate = small
    vec = tmp_path / "vec"
    vec.mkdir()
    for k in range(12):
        last = k == 11  # the plate's last frame has no forward flow, as `render` writes it
        write_motion_exr(vec / f"v.{1001 + k:04d}.exr", forward=None if last else short.gt_flows[k],
                         backward=np.zeros((H, W, 2), np.float32) if last else None, half=False)
    out = tmp_path / "o" / "sh.####.png"
    result = invoke("stabilize", plate, "-o", str(out), "--vectors", str(vec / "v.####.exr"), "--mode",
                    "translation", "--lock", "--crop", "none", "--frames", "1003-1010")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        [f"sh.{f}.png" for f in range(1003, 1011)] + ["sh.stabilize.json"])
    doc = json.loads((out.parent / "sh.stabilize.json").read_text())
    motions = [estimate_camera_motion(f, mode="translation") for f in short.gt_flows[2:9]]
    want = plan_stabilization(motions, size=(H, W), settings=StabilizeSettings(
        mode="translation", lock=True, crop="none"))
    got = np.array([doc["frames"][str(f)] for f in range(1003, 1011)])
    np.testing.assert_allclose(got, want.transforms, atol=1e-6)
    assert doc["method"] == "lock" and doc["flow"] == "vectors"


def test_cli_video_output(small, tmp_path) -> None:
    from daflow_vfx.io import open_plate

    _, plate = small
    out = tmp_path / "stab.mp4"
    result = invoke("stabilize", plate, "-o", str(out), "--model", "dis", "--fps", "25", "--method", "l1",
                    "--mode", "translation")
    assert result.exit_code == 0, result.output
    with open_plate(str(out)) as video:
        assert len(video.info.frames) == 12 and video.info.fps == pytest.approx(25.0)
    assert (tmp_path / "stab.stabilize.json").is_file()


def test_sidecar_names() -> None:
    assert sidecar_path("out/sh010.####.exr", "stabilize") == "out/sh010.stabilize.json"
    assert sidecar_path("out/sh010_%04d.png", "stabilize") == "out/sh010.stabilize.json"
    assert sidecar_path("out/####.exr", "stabilize") == "out/stabilize.stabilize.json"
    assert sidecar_path("out/sh010.mov", "stabilize") == "out/sh010.stabilize.json"


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--crop", "1.5"], 2, "--crop 1.5 is out of range"),
        (["--crop", "wide"], 2, "--crop 'wide' is neither auto"),
        (["--strength", "1.2"], 2, "--strength 1.2 is out of range"),
        (["--strength", "-0.1"], 2, "--strength -0.1 is out of range"),
        (["--frames", "1001,1003,1005"], 2, "contiguous range"),
        (["--frames", "1010-1020"], 1, "outside the plate's range 1001-1012"),
        (["--stmap", "map.exr"], 2, "--stmap 'map.exr' must be an EXR pattern"),
        (["--fps", "0"], 2, "--fps 0.0 must be a positive frame rate"),
    ],
)
def test_cli_bad_options(small, tmp_path, extra, code, message) -> None:
    _, plate = small
    result = invoke("stabilize", plate, "-o", str(tmp_path / "o" / "s.####.exr"), *extra)
    assert result.exit_code == code, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last, last
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_output_needs_a_frame_token(small, tmp_path) -> None:
    _, plate = small
    result = invoke("stabilize", plate, "-o", str(tmp_path / "single.exr"))
    assert result.exit_code == 2 and "has no frame token and is not a video file" in result.output


def test_cli_missing_plate_frames(tmp_path) -> None:
    frames = make_shot(4, jitter=1.0).frames
    plate = write_plate(tmp_path / "p", frames)
    (tmp_path / "p" / "plate.1003.exr").unlink()
    result = invoke("stabilize", plate, "-o", str(tmp_path / "o" / "s.####.exr"))
    assert result.exit_code == 1
    assert "1003" in result.output and result.output.strip().splitlines()[-1].startswith("Error: ")


def test_cli_mismatched_and_missing_vectors(small, tmp_path) -> None:
    from daflow_vfx.io import write_motion_exr

    _, plate = small
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for k in range(12):
        write_motion_exr(wrong / f"v.{1001 + k:04d}.exr", forward=np.zeros((32, 48, 2), np.float32),
                         backward=None)
    result = invoke("stabilize", plate, "-o", str(tmp_path / "o" / "s.####.exr"), "--vectors",
                    str(wrong / "v.####.exr"))
    assert result.exit_code == 1
    assert "vectors are 48x32 but the plate is 96x64" in result.output
    for k in (4, 6):
        (wrong / f"v.{1001 + k:04d}.exr").unlink()
    result = invoke("stabilize", plate, "-o", str(tmp_path / "o" / "s.####.exr"), "--vectors",
                    str(wrong / "v.####.exr"))
    assert result.exit_code == 1
    assert "vectors for frames 1005,1007 are missing" in result.output
