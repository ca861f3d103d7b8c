"""Synthetic training windows with exact ground-truth flow, generated on the fly.

Scenes are layered, FlyingChairs / AutoFlow style: an opaque background plus 2 - 6 foreground
shapes (ellipses, polygons, blobs; anti-aliased edges), each with its own texture and its own
motion. A layer is a texture in its own coordinates and one homography per frame mapping those
coordinates into the image (affine: translation, rotation, scale, shear; some layers also get a
perspective term). The motion parameters evolve smoothly over the window: constant velocity plus
a small acceleration.

Frame t is rendered by inverse-warping every layer's texture through its homography H_t
(``cv2.warpPerspective``) and compositing back to front with the layer's alpha. The flow of
pixel x from frame i to frame j is ``H_j(H_i^-1(x)) - x`` of the topmost layer at x (alpha >=
0.5), so it is exact, not estimated. Masks:

- ``valid``: the flow's target ``x + flow`` lies inside the image (occluded pixels stay valid);
- ``occ``: the point is not visible in the target frame: moved outside it, or another layer is
  on top at the target (nearest pixel of the target's layer-id map).

Textures are procedural (fractal value noise through random colour ramps, stripes and checkers,
gradients, random anti-aliased shapes) or crops of the photographs bundled inside scikit-image's
package folder, read straight from disk (no network, no dataset download): :mod:`.textures`. The
evaluation data in ``../shared/data`` is never used here.

Motion magnitudes mix three regimes per layer: small (0 - 3 px/frame), medium (3 px - 0.4 *
max_motion) and large (0.4 - 1 x max_motion; ``max_motion`` defaults to a quarter of the width).

Degraded frames come from :func:`daflow_vfx.degrade.degrade_clip` with a per-sample seed and
preset, with the true flow driving the motion blur.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from daflow_vfx.degrade import PRESETS, degrade_clip
from daflow_vfx.errors import UsageError
from daflow_vfx.train.textures import random_texture, shape_alpha

# Level codes in a sample's "degrade_level": 0 = clean, then the degrade presets in order.
DEGRADE_LEVELS: tuple[str, ...] = ("clean",) + PRESETS

_ALPHA_ON_TOP = 0.5  # a layer owns a pixel (its flow, its id) where its coverage reaches this


# --------------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class Layer:
    """One layer of a scene.

    texture: [h, w, 3] float32 in [0, 1], in the layer's own coordinates.
    alpha: [h, w] float32 coverage in [0, 1], zero along the border; None for the opaque
        background, whose texture repeats by reflection beyond its edges.
    homographies: [F, 3, 3] float64 mapping texture coordinates (x, y, 1) to image coordinates at
        each frame.
    """

    texture: np.ndarray
    alpha: np.ndarray | None
    homographies: np.ndarray


@dataclass(frozen=True)
class RenderedScene:
    """Frames and exact ground truth of a scene (see the module docstring for the masks)."""

    frames: np.ndarray  # [F, H, W, 3] float32 [0, 1]
    layer_ids: np.ndarray  # [F, H, W] int16, index of the topmost layer
    flow_fwd: np.ndarray  # [F-1, H, W, 2] float32, frame i -> i+1
    flow_bwd: np.ndarray  # [F-1, H, W, 2] float32, frame i+1 -> i
    valid_fwd: np.ndarray  # [F-1, H, W] bool
    valid_bwd: np.ndarray  # [F-1, H, W] bool
    occ_fwd: np.ndarray  # [F-1, H, W] bool
    occ_bwd: np.ndarray  # [F-1, H, W] bool


def _warp_layer(layer: Layer, t: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None, tuple]:
    """Colour ([h, w, 3]) and coverage ([h, w] or None) of ``layer`` at frame ``t`` inside its box.

    Returns (colour, alpha, (y0, y1, x0, x1)); a foreground layer is only warped inside the
    bounding box of its texture's corners, which is what keeps many small layers cheap.
    """
    height, width = size
    hm = layer.homographies[t]
    if layer.alpha is None:
        colour = cv2.warpPerspective(layer.texture, hm, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101)
        return colour, None, (0, height, 0, width)
    th, tw = layer.alpha.shape
    corners = np.array([[0, 0, 1], [tw, 0, 1], [0, th, 1], [tw, th, 1]], np.float64).T  # [3, 4]
    p = hm @ corners
    xs, ys = p[0] / p[2], p[1] / p[2]
    x0, x1 = max(0, int(math.floor(xs.min())) - 1), min(width, int(math.ceil(xs.max())) + 2)
    y0, y1 = max(0, int(math.floor(ys.min())) - 1), min(height, int(math.ceil(ys.max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32), (0, 0, 0, 0)
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    rgba = np.dstack([layer.texture, layer.alpha])  # [h, w, 4]
    out = cv2.warpPerspective(rgba, shift @ hm, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    return out[..., :3], out[..., 3], (y0, y1, x0, x1)


def _layer_flow(layers: Sequence[Layer], ids: np.ndarray, t_src: int, t_dst: int, xy1: np.ndarray
                ) -> np.ndarray:
    """Exact flow [H, W, 2] from frame t_src to t_dst given the source's layer-id map ids [H, W]."""
    flat = ids.ravel()
    flow = np.empty((flat.size, 2), np.float64)
    for lid in np.unique(flat):
        sel = np.flatnonzero(flat == lid)
        hms = layers[lid].homographies
        m = hms[t_dst] @ np.linalg.inv(hms[t_src])
        p = m @ xy1[:, sel]  # [3, n]
        flow[sel, 0] = p[0] / p[2] - xy1[0, sel]
        flow[sel, 1] = p[1] / p[2] - xy1[1, sel]
    return flow.reshape(ids.shape + (2,)).astype(np.float32)


def _masks(flow: np.ndarray, ids_src: np.ndarray, ids_dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, occluded) [H, W] bool for a flow [H, W, 2] between two layer-id maps."""
    h, w = ids_src.shape
    tx = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    ty = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    valid = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    xi = np.clip(np.rint(tx), 0, w - 1).astype(np.intp)
    yi = np.clip(np.rint(ty), 0, h - 1).astype(np.intp)
    occluded = ~valid | (ids_dst[yi, xi] != ids_src)
    return valid, occluded


def render_layers(layers: Sequence[Layer], *, size: tuple[int, int]) -> RenderedScene:
    """Render ``layers`` (back to front; the first is the opaque background) at ``size`` = (H, W)."""
    if not layers or layers[0].alpha is not None:
        raise UsageError("render_layers needs an opaque background layer (alpha=None) first")
    height, width = size
    num_frames = layers[0].homographies.shape[0]
    frames = np.empty((num_frames, height, width, 3), np.float32)
    ids = np.zeros((num_frames, height, width), np.int16)
    for t in range(num_frames):
        img = frames[t]
        img[:] = _warp_layer(layers[0], t, size)[0]
        for lid, layer in enumerate(layers[1:], start=1):
            colour, alpha, (y0, y1, x0, x1) = _warp_layer(layer, t, size)
            if alpha.size == 0:
                continue
            region = img[y0:y1, x0:x1]
            region += (colour - region) * alpha[..., None]  # "over" compositing, straight alpha
            ids[t, y0:y1, x0:x1][alpha >= _ALPHA_ON_TOP] = lid
    np.clip(frames, 0.0, 1.0, out=frames)

    xx, yy = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    xy1 = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])  # [3, H*W]
    pairs = num_frames - 1
    flow_fwd = np.empty((pairs, height, width, 2), np.float32)
    flow_bwd = np.empty_like(flow_fwd)
    valid_fwd = np.empty((pairs, height, width), bool)
    valid_bwd, occ_fwd, occ_bwd = np.empty_like(valid_fwd), np.empty_like(valid_fwd), np.empty_like(valid_fwd)
    for i in range(pairs):
        flow_fwd[i] = _layer_flow(layers, ids[i], i, i + 1, xy1)
        flow_bwd[i] = _layer_flow(layers, ids[i + 1], i + 1, i, xy1)
        valid_fwd[i], occ_fwd[i] = _masks(flow_fwd[i], ids[i], ids[i + 1])
        valid_bwd[i], occ_bwd[i] = _masks(flow_bwd[i], ids[i + 1], ids[i])
    return RenderedScene(frames=frames, layer_ids=ids, flow_fwd=flow_fwd, flow_bwd=flow_bwd,
                         valid_fwd=valid_fwd, valid_bwd=valid_bwd, occ_fwd=occ_fwd, occ_bwd=occ_bwd)


# --------------------------------------------------------------------------------------------- motion
def _motion_magnitude(rng: np.random.Generator, max_motion: float, static_fraction: float = 0.0) -> float:
    """Displacement budget of one layer in px/frame: small, medium or large, so both are learned.

    ``static_fraction`` of the layers do not move at all (budget 0), as a locked-off plate's background
    does; the draw is skipped when it is 0, so older configs keep their exact samples.
    """
    if static_fraction > 0 and rng.random() < static_fraction:
        return 0.0
    u = rng.random()
    if u < 0.35:
        return float(rng.uniform(0.0, 3.0))
    if u < 0.7:
        return float(rng.uniform(3.0, max(3.0, 0.4 * max_motion)))
    return float(rng.uniform(0.4 * max_motion, max_motion))


def _trajectory(rng: np.random.Generator, *, num_frames: int, tex_size: tuple[int, int], position: np.ndarray,
                extent: float, budget: float, background: bool) -> np.ndarray:
    """[F, 3, 3] homographies texture -> image of one layer; ``extent`` is its radius in px.

    The budget (px/frame) is split between translation, rotation, scale, shear and perspective,
    each turned into a rate by the displacement it causes at ``extent``; accelerations are small.
    """
    th, tw = tex_size
    w_t, w_r, w_s, w_sh, w_p = rng.dirichlet([6, 1, 1, 0.5, 0.5] if background else [4, 1, 1, 0.5, 0.5])
    if rng.random() < 0.6:  # affine only
        w_p = 0.0
    direction = rng.uniform(0, 2 * math.pi)
    vel = budget * w_t * np.array([math.cos(direction), math.sin(direction)])
    acc = np.linalg.norm(vel) * 0.15 * rng.standard_normal(2)

    def rate(weight: float, dist: float) -> tuple[float, float]:
        v = rng.choice([-1.0, 1.0]) * budget * weight / dist
        return v, v * 0.15 * rng.standard_normal()

    omega, alpha_rot = rate(w_r, extent)
    sigma, alpha_scale = rate(w_s, extent)
    kappa, _ = rate(w_sh, extent)
    p_dir = rng.uniform(0, 2 * math.pi)
    p_rate = budget * w_p / extent**2  # x / (1 + p.x) moves a corner by about |p| * extent^2
    if background:
        theta0, ls0, sh0 = rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1), rng.uniform(-0.05, 0.05)
    else:
        theta0, ls0, sh0 = rng.uniform(-math.pi, math.pi), rng.uniform(-0.15, 0.2), rng.uniform(-0.2, 0.2)
    aspect = rng.uniform(-0.1, 0.1)
    p0 = rng.standard_normal(2) * 0.03 / extent  # mild fixed tilt

    centre = np.array([[1.0, 0.0, -tw / 2.0], [0.0, 1.0, -th / 2.0], [0.0, 0.0, 1.0]])
    hms = np.empty((num_frames, 3, 3))
    # t = 0 at the middle frame, so the sampled position describes the middle of the window.
    for k in range(num_frames):
        t = k - (num_frames - 1) / 2.0
        pos = position + vel * t + 0.5 * acc * t * t
        theta = theta0 + omega * t + 0.5 * alpha_rot * t * t
        ls = ls0 + sigma * t + 0.5 * alpha_scale * t * t
        shear = sh0 + kappa * t
        p = p0 + p_rate * t * np.array([math.cos(p_dir), math.sin(p_dir)])
        c, s = math.cos(theta), math.sin(theta)
        lin = (np.array([[c, -s], [s, c]]) @ np.diag([math.exp(ls + aspect), math.exp(ls - aspect)])
               @ np.array([[1.0, shear], [0.0, 1.0]]))
        persp = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [p[0], p[1], 1.0]])
        affine = np.array([[lin[0, 0], lin[0, 1], pos[0]], [lin[1, 0], lin[1, 1], pos[1]], [0.0, 0.0, 1.0]])
        hms[k] = affine @ persp @ centre
    return hms


def sample_scene(rng: np.random.Generator, *, size: tuple[int, int], num_frames: int = 3,
                 max_motion: float | None = None, num_layers: tuple[int, int] = (2, 6),
                 photo_fraction: float = 0.4, static_fraction: float = 0.0) -> list[Layer]:
    """A random layered scene: background plus ``num_layers`` (inclusive range) foreground shapes;
    each layer stays still with probability ``static_fraction``."""
    height, width = size
    max_motion = 0.25 * width if max_motion is None else float(max_motion)
    pad = int(0.15 * max(height, width))
    bg_size = (height + 2 * pad, width + 2 * pad)
    layers = [Layer(
        texture=random_texture(rng, *bg_size, photo_fraction=photo_fraction), alpha=None,
        homographies=_trajectory(rng, num_frames=num_frames, tex_size=bg_size,
                                 position=np.array([width / 2.0, height / 2.0]),
                                 extent=0.5 * math.hypot(height, width),
                                 budget=_motion_magnitude(rng, max_motion, static_fraction),
                                 background=True))]
    short = min(height, width)
    for _ in range(int(rng.integers(num_layers[0], num_layers[1] + 1))):
        radius = short * float(np.exp(rng.uniform(math.log(0.07), math.log(0.45))))
        side = int(2 * radius) + 5
        layers.append(Layer(
            texture=random_texture(rng, side, side, photo_fraction=photo_fraction),
            alpha=shape_alpha(rng, side),
            homographies=_trajectory(rng, num_frames=num_frames, tex_size=(side, side),
                                     position=rng.uniform([0.0, 0.0], [width, height]), extent=radius,
                                     budget=_motion_magnitude(rng, max_motion, static_fraction),
                                     background=False)))
    return layers


# --------------------------------------------------------------------------------------------- dataset
def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker, the cores are shared with training."""
    del worker_id
    cv2.setNumThreads(1)


class SyntheticFlowDataset(Dataset):
    """Map-style dataset of layered scenes; sample ``idx`` depends only on ``(seed, idx)``.

    Each sample is a dict of tensors:

    - ``clean``, ``degraded``: [F, 3, H, W] float32 in [0, 1];
    - ``flow_fwd`` (frame i -> i+1), ``flow_bwd`` (i+1 -> i): [F-1, 2, H, W] float32 px, .flo
      convention (+x right, +y down);
    - ``valid_fwd``/``valid_bwd``, ``occ_fwd``/``occ_bwd``: [F-1, H, W] float32 0/1 (module doc);
    - ``degrade_level``: int64 scalar, index into :data:`DEGRADE_LEVELS` (0 = clean).

    ``degrade_preset`` is a preset of :mod:`daflow_vfx.degrade`, a mapping of preset names (and
    "clean") to weights drawn per sample, or None for degraded = clean. ``clean_fraction`` of the
    samples stay clean whatever the preset, so the model also sees pristine input.

    ``static_fraction`` of the layers (background included) stand still, so the model also learns to
    leave motion that is exactly zero at zero (locked-off plates; noise that differs between frames
    is not motion).

    ``init_flow="dis"`` adds ``init_fwd``/``init_bwd`` ([F-1, 2, H, W]): OpenCV DIS (medium) on the
    degraded frames, the initial flow a model with a classical prior refines (see
    :data:`daflow_vfx.registry.FLOW_INITS`).
    """

    def __init__(self, *, size: tuple[int, int] = (128, 160), num_frames: int = 3, seed: int = 0,
                 length: int = 100_000, degrade_preset: str | Mapping[str, float] | None = "random",
                 clean_fraction: float = 0.1, max_motion: float | None = None,
                 num_layers: tuple[int, int] = (2, 6), photo_fraction: float = 0.4,
                 init_flow: str | None = None, static_fraction: float = 0.0) -> None:
        if init_flow not in (None, "dis"):
            raise UsageError(f"init_flow {init_flow!r}: use 'dis' or None")
        self.init_flow = init_flow
        if num_frames < 2:
            raise UsageError(f"SyntheticFlowDataset needs num_frames >= 2; got {num_frames}")
        if isinstance(degrade_preset, str):
            weights = {degrade_preset: 1.0}
        elif degrade_preset is None:
            weights = {"clean": 1.0}
        else:
            weights = dict(degrade_preset)
        unknown = sorted(set(weights) - set(DEGRADE_LEVELS))
        if unknown or not weights or min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise UsageError(f"degrade_preset {degrade_preset!r}: use one of {', '.join(DEGRADE_LEVELS)} "
                             "or a mapping of them to non-negative weights")
        self.size = (int(size[0]), int(size[1]))
        self.num_frames = int(num_frames)
        self.seed = int(seed)
        self.length = int(length)
        self.clean_fraction = float(clean_fraction) if degrade_preset is not None else 1.0
        self.max_motion = 0.25 * self.size[1] if max_motion is None else float(max_motion)
        self.num_layers = (int(num_layers[0]), int(num_layers[1]))
        self.photo_fraction = float(photo_fraction)
        if not 0.0 <= static_fraction <= 1.0:
            raise UsageError(f"static_fraction {static_fraction!r}: use a share from 0 to 1")
        self.static_fraction = float(static_fraction)
        self._levels = list(weights)
        total = sum(weights.values())
        self._probs = np.array([weights[k] / total for k in self._levels])

    def __len__(self) -> int:
        return self.length

    def sample_numpy(self, idx: int) -> dict[str, np.ndarray]:
        """The sample as numpy arrays, frames [F, H, W, 3] and flows [F-1, H, W, 2] (channels last)."""
        if not -self.length <= idx < self.length:
            raise IndexError(f"sample {idx} is outside this dataset of {self.length}")
        idx %= self.length
        rng = np.random.default_rng([self.seed, idx])
        layers = sample_scene(rng, size=self.size, num_frames=self.num_frames, max_motion=self.max_motion,
                              num_layers=self.num_layers, photo_fraction=self.photo_fraction,
                              static_fraction=self.static_fraction)
        scene = render_layers(layers, size=self.size)
        level = self._levels[int(rng.choice(len(self._levels), p=self._probs))]
        degrade_seed = int(rng.integers(2**62))
        if rng.random() < self.clean_fraction:
            level = "clean"
        if level == "clean":
            degraded = scene.frames.copy()
        else:
            degraded = degrade_clip(scene.frames, preset=level, seed=degrade_seed,
                                    flows_forward=scene.flow_fwd)
        extra = {}
        if self.init_flow == "dis":
            from daflow_vfx.estimators.classical import DISEstimator

            init = DISEstimator().estimate(degraded)
            extra = {"init_fwd": init.forward, "init_bwd": init.backward}
        return {
            **extra,
            "clean": scene.frames, "degraded": degraded,
            "flow_fwd": scene.flow_fwd, "flow_bwd": scene.flow_bwd,
            "valid_fwd": scene.valid_fwd, "valid_bwd": scene.valid_bwd, "occ_fwd": scene.occ_fwd,
            "occ_bwd": scene.occ_bwd, "degrade_level": np.int64(DEGRADE_LEVELS.index(level)),
        }

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        s = self.sample_numpy(idx)

        def chw(a: np.ndarray) -> torch.Tensor:  # [N, H, W, C] -> [N, C, H, W]
            return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32))

        def mask(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a.astype(np.float32))

        extra = {k: chw(s[k]) for k in ("init_fwd", "init_bwd") if k in s}
        return {
            **extra,
            "clean": chw(s["clean"]), "degraded": chw(s["degraded"]),
            "flow_fwd": chw(s["flow_fwd"]), "flow_bwd": chw(s["flow_bwd"]),
            "valid_fwd": mask(s["valid_fwd"]), "valid_bwd": mask(s["valid_bwd"]),
            "occ_fwd": mask(s["occ_fwd"]), "occ_bwd": mask(s["occ_bwd"]),
            "degrade_level": torch.tensor(int(s["degrade_level"]), dtype=torch.int64),
        }
