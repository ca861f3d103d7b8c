"""Synthetic training windows made in whole batches on the training device.

:class:`DeviceWindowGenerator` draws the scenes of :mod:`daflow_vfx.train.data` (whose docstring is
the specification: layered FlyingChairs / AutoFlow-style scenes with exact flow), renders them and
degrades them with batched torch ops on whatever device it is given, so a GPU never waits for CPU
data workers. Per batch:

- **Layers**: an opaque background (texture larger than the frame, mirrored beyond its edges) and
  ``num_layers`` foreground shapes (ellipses, polygons, blobs with anti-aliased outlines), each with
  its own texture (:mod:`daflow_vfx.train.textures_torch`) and a homography per frame that evolves
  smoothly (velocity plus a small acceleration of translation, rotation, scale, shear, perspective).
- **Motion**: a budget per layer, heavy-tailed: ``static_fraction`` of layers stand still (flow
  exactly 0), then sub-pixel (< 1 px), small (1 - 3 px), medium (log-uniform 3 px - 0.4 max_motion)
  and large (0.4 - 1 max_motion) regimes.
- **Rendering**: every layer's texture inverse-warped through its homography (bilinear
  grid_sample) and composited back to front ("over", straight alpha); a layer owns the pixels where
  its coverage reaches 0.5.
- **Ground truth**: flow i -> j of a pixel is ``H_j(H_i^-1(x)) - x`` of its topmost layer, computed
  from ``(H_j - H_i) H_i^-1`` so that a layer whose homographies are equal has exactly zero flow.
  ``valid``: the target lies inside the frame; ``occ``: not visible in the target frame (outside,
  or another layer on top at the target's nearest pixel).
- **Appearance** (on the clean frames, the ground truth is unchanged): motion blur for a share of
  windows by averaging renders at sub-frame times over a shutter interval (exact occlusions, since
  whole scenes are rendered at each time); per-frame gain, offset and gamma drift; haze, stronger on
  farther layers.
- **Degradations**: :func:`daflow_vfx.train.degrade_torch.degrade_windows` per sample.

Per-sample scalars (layer counts, motion, texture kinds) come from ``np.random.default_rng([seed,
step])`` on the host, which never waits for the device; every pixel-sized random field comes from a
torch.Generator on the device seeded from (seed, step). A batch is thus a function of (seed, step)
on a given device type.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from daflow_vfx.errors import UsageError
from daflow_vfx.train.data import DEGRADE_LEVELS
from daflow_vfx.train.degrade_torch import degrade_windows
from daflow_vfx.train.textures_torch import PhotoBank, hsv_colours, random_textures, shape_alpha
from daflow_vfx.train.transfer import upload

_ALPHA_ON_TOP = 0.5  # a layer owns a pixel (its flow, its id) where its coverage reaches this
_CONCRETE = ("mild", "severe", "extreme")  # what "random" resolves to, per sample
_DEVICE_STREAM = 1  # SeedSequence([seed, step, 1]) seeds the device generator
_SHUTTER_TAPS = 7  # renders averaged over the shutter (odd: the middle one is the frame's own instant)
_SHUTTER = (0.1, 0.5)  # open fraction of the frame interval, for scene motion blur
_GAIN_DRIFT, _OFFSET_DRIFT, _GAMMA_DRIFT = 0.03, 0.01, 0.04  # per-frame log-gain, offset, log-gamma sigmas
_HAZE = (0.1, 0.5)  # haze strength at the background; foreground layers get less, the frontmost 30 %
_BG_PAD = 0.15  # background texture margin beyond the frame, fraction of the long side (as data.py)
_FG_RADIUS = (0.07, 0.45)  # foreground radius, fraction of the short side, log-uniform (as data.py)
# Cumulative shares of the motion regimes of moving layers (motion_budgets): sub-pixel, small, medium;
# the rest are large.
_SUBPIXEL, _SMALL, _MEDIUM = 0.15, 0.35, 0.7


# --------------------------------------------------------------------------------------------- motion
def motion_budgets(rng: np.random.Generator, n: int, max_motion: float, static_fraction: float) -> np.ndarray:
    """[n] displacement budgets (px/frame) of layers, heavy-tailed up to max_motion; exact 0 when static."""
    u = rng.random(n)
    medium_hi = max(3.0, 0.4 * max_motion)
    budget = np.where(
        u < _SUBPIXEL, rng.uniform(0.0, 1.0, n),
        np.where(u < _SMALL, rng.uniform(1.0, 3.0, n),
                 np.where(u < _MEDIUM, np.exp(rng.uniform(math.log(3.0), math.log(medium_hi), n)),
                          rng.uniform(0.4 * max_motion, max(max_motion, 0.4 * max_motion), n))))
    return np.where(rng.random(n) < static_fraction, 0.0, budget)


def trajectories(rng: np.random.Generator, *, times: np.ndarray, tex_size: np.ndarray, position: np.ndarray,
                 extent: np.ndarray, budget: np.ndarray, background: bool) -> np.ndarray:
    """[n, T] homographies [3, 3] (float64) texture -> image of n layers at times [n, T] (frames from the
    window's middle). As data._trajectory: the budget is split between translation, rotation, scale,
    shear and perspective, each turned into a rate by the displacement it causes at ``extent`` (px);
    accelerations are small. tex_size: [n, 2] (h, w); position: [n, 2] (x, y) of the texture centre."""
    n = budget.shape[0]
    w_t, w_r, w_s, w_sh, w_p = rng.dirichlet([6, 1, 1, 0.5, 0.5] if background else [4, 1, 1, 0.5, 0.5], n).T
    w_p = np.where(rng.random(n) < 0.6, 0.0, w_p)  # 60 % affine only
    direction = rng.uniform(0, 2 * math.pi, n)
    vel = (budget * w_t)[:, None] * np.stack([np.cos(direction), np.sin(direction)], 1)  # [n, 2]
    acc = np.linalg.norm(vel, axis=1, keepdims=True) * 0.15 * rng.standard_normal((n, 2))

    def rate(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = rng.choice([-1.0, 1.0], n) * budget * weight / extent
        return v, v * 0.15 * rng.standard_normal(n)

    omega, alpha_rot = rate(w_r)
    sigma, alpha_scale = rate(w_s)
    kappa, _ = rate(w_sh)
    p_dir = rng.uniform(0, 2 * math.pi, n)
    p_rate = budget * w_p / extent**2  # x / (1 + p.x) moves a corner by about |p| * extent^2
    if background:
        theta0, ls0, sh0 = rng.uniform(-0.3, 0.3, n), rng.uniform(-0.1, 0.1, n), rng.uniform(-0.05, 0.05, n)
    else:
        theta0 = rng.uniform(-math.pi, math.pi, n)
        ls0, sh0 = rng.uniform(-0.15, 0.2, n), rng.uniform(-0.2, 0.2, n)
    aspect = rng.uniform(-0.1, 0.1, n)
    p0 = rng.standard_normal((n, 2)) * 0.03 / extent[:, None]  # mild fixed tilt

    t = times  # [n, T]
    c = (slice(None), None)  # per-layer scalars against [n, T]
    pos = position[:, None] + vel[:, None] * t[..., None] + 0.5 * acc[:, None] * (t * t)[..., None]  # [n,T,2]
    theta = theta0[c] + omega[c] * t + 0.5 * alpha_rot[c] * t * t
    ls = ls0[c] + sigma[c] * t + 0.5 * alpha_scale[c] * t * t
    shear = sh0[c] + kappa[c] * t
    p = p0[:, None] + (p_rate[c] * t)[..., None] * np.stack([np.cos(p_dir), np.sin(p_dir)], 1)[:, None]
    cos, sin = np.cos(theta), np.sin(theta)
    sx, sy = np.exp(ls + aspect[c]), np.exp(ls - aspect[c])
    # lin = R(theta) @ diag(sx, sy) @ [[1, shear], [0, 1]]
    a00, a01 = cos * sx, cos * sx * shear - sin * sy
    a10, a11 = sin * sx, sin * sx * shear + cos * sy
    zero, one = np.zeros_like(t), np.ones_like(t)
    affine = np.stack([np.stack([a00, a01, pos[..., 0]], -1), np.stack([a10, a11, pos[..., 1]], -1),
                       np.stack([zero, zero, one], -1)], -2)  # [n, T, 3, 3]
    persp = np.broadcast_to(np.eye(3), affine.shape).copy()
    persp[..., 2, 0], persp[..., 2, 1] = p[..., 0], p[..., 1]
    centre = np.broadcast_to(np.eye(3), (n, 1, 3, 3)).copy()
    centre[..., 0, 2], centre[..., 1, 2] = -tex_size[:, None, 1] / 2.0, -tex_size[:, None, 0] / 2.0
    return affine @ persp @ centre


# --------------------------------------------------------------------------------------------- rendering
def _pixel_grid(size: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (ys [1, H, 1], xs [1, 1, W]), float32, broadcasting to [1, H, W]."""
    height, width = size
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width)
    return ys, xs


def warp(texture: Tensor, inverse: Tensor, size: tuple[int, int], *, mirror: bool) -> Tensor:
    """Sample texture [n, C, h, w] at H^-1(x) of every pixel x: inverse [n, 3, 3] image -> texture.

    Beyond the texture: mirrored (the background's reflection, OpenCV's BORDER_REFLECT_101) or zero.
    """
    ys, xs = _pixel_grid(size, texture.device)
    m = inverse.view(-1, 9, 1, 1)
    den = m[:, 6] * xs + m[:, 7] * ys + m[:, 8]
    u = (m[:, 0] * xs + m[:, 1] * ys + m[:, 2]) / den
    v = (m[:, 3] * xs + m[:, 4] * ys + m[:, 5]) / den
    h, w = texture.shape[-2:]
    grid = torch.stack([u * (2.0 / (w - 1)) - 1.0, v * (2.0 / (h - 1)) - 1.0], -1)
    return F.grid_sample(texture, grid, mode="bilinear", padding_mode="reflection" if mirror else "zeros",
                         align_corners=True)


def relative_flow(delta: Tensor, size: tuple[int, int]) -> Tensor:
    """Flow [n, 2, H, W] of x -> M x for M = I + delta, delta [n, 3, 3] (exactly 0 where delta is 0)."""
    ys, xs = _pixel_grid(size, delta.device)
    d = delta.view(-1, 9, 1, 1)
    # (M x)_0 / (M x)_2 - x = (d0 . x - x (d2 . x)) / (1 + d2 . x), written to keep zeros exact
    den_delta = d[:, 6] * xs + d[:, 7] * ys + d[:, 8]
    fx = (d[:, 0] * xs + d[:, 1] * ys + d[:, 2] - xs * den_delta) / (1.0 + den_delta)
    fy = (d[:, 3] * xs + d[:, 4] * ys + d[:, 5] - ys * den_delta) / (1.0 + den_delta)
    return torch.stack([fx, fy], 1)


def flow_masks(flow: Tensor, ids_src: Tensor, ids_dst: Tensor) -> tuple[Tensor, Tensor]:
    """(valid, occluded) [n, H, W] bool for flow [n, 2, H, W] between layer-id maps [n, H, W]."""
    n, _, h, w = flow.shape
    dev = flow.device
    tx = torch.arange(w, device=dev, dtype=flow.dtype).view(1, 1, w) + flow[:, 0]
    ty = torch.arange(h, device=dev, dtype=flow.dtype).view(1, h, 1) + flow[:, 1]
    valid = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    xi = torch.round(tx).clamp(0, w - 1).long()
    yi = torch.round(ty).clamp(0, h - 1).long()
    at_target = torch.gather(ids_dst.reshape(n, -1), 1, (yi * w + xi).reshape(n, -1)).view(n, h, w)
    return valid, ~valid | (at_target != ids_src)


# --------------------------------------------------------------------------------------------- generator
def _fraction(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise UsageError(f"{name} {value!r}: use a share from 0 to 1")
    return float(value)


def _degrade_weights(degrade: Mapping[str, float] | str | None) -> dict[str, float]:
    if degrade is None:
        return {"clean": 1.0}
    weights: dict = {}
    if isinstance(degrade, str):
        weights = {degrade: 1.0}
    elif isinstance(degrade, Mapping):
        weights = dict(degrade)
    values = list(weights.values())
    if (not weights or set(weights) - set(DEGRADE_LEVELS)
            or not all(isinstance(v, numbers.Real) and v >= 0 for v in values) or sum(values) <= 0):
        raise UsageError(f"degrade {degrade!r}: use one of {', '.join(DEGRADE_LEVELS)}, a mapping of them to "
                         "non-negative weights, or None")
    return {k: float(v) for k, v in weights.items()}


def inv3(m: np.ndarray) -> np.ndarray:
    """Inverse of each 3x3 matrix in m [..., 3, 3], by its adjugate.

    np.linalg.inv goes through LAPACK one matrix at a time, and in a process whose torch threads keep
    the cores busy its BLAS threads made it 100x slower (21 ms a call, measured): the largest host
    cost of a batch of windows.
    """
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co = np.stack([np.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
                   np.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
                   np.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1)], -2)
    det = a * co[..., 0, 0] + b * co[..., 1, 0] + c * co[..., 2, 0]
    return co / det[..., None, None]


class DeviceWindowGenerator:
    """Batches of synthetic windows, clean and degraded, with exact flow, made on ``device``.

    ``generator(step)`` returns a dict of tensors on the device (float32 unless noted):

    - ``clean``, ``degraded``: [B, F, 3, H, W] in [0, 1];
    - ``flow_fwd`` (frame i -> i+1), ``flow_bwd`` (i+1 -> i): [B, F-1, 2, H, W] px, +x right, +y down;
    - ``valid_fwd``/``valid_bwd``, ``occ_fwd``/``occ_bwd``: [B, F-1, H, W] 0/1 (module docstring);
    - ``degrade_level``: [B] int64 index into :data:`daflow_vfx.train.data.DEGRADE_LEVELS`; a
      "random" draw reports the preset it resolved to.

    The batch is a function of (seed, step) on a given device type. ``degrade`` is a preset name, a
    mapping of DEGRADE_LEVELS names to weights drawn per sample, or None (all clean);
    ``clean_fraction`` of the samples stay clean whatever it says. ``max_motion`` (px/frame) defaults
    to 0.4 x width. ``motion_blur_fraction``, ``brightness_fraction`` and ``haze_fraction`` are the
    shares of windows whose clean frames get scene motion blur, brightness drift and haze.
    ``photo_bank`` reuses photos already loaded on this device (by default the generator loads them).
    """

    def __init__(self, *, size: tuple[int, int], num_frames: int = 3, batch_size: int,
                 device: torch.device | str, seed: int, degrade: Mapping[str, float] | str | None = "random",
                 clean_fraction: float = 0.1, max_motion: float | None = None, static_fraction: float = 0.25,
                 photo_fraction: float = 0.4, num_layers: tuple[int, int] = (2, 6),
                 motion_blur_fraction: float = 0.25, brightness_fraction: float = 0.5,
                 haze_fraction: float = 0.15, photo_bank: PhotoBank | None = None) -> None:
        if len(size) != 2 or min(int(size[0]), int(size[1])) < 8:
            raise UsageError(f"size {size!r}: use (height, width), each at least 8 px")
        if int(num_frames) < 2:
            raise UsageError(f"num_frames {num_frames!r}: a window needs at least 2 frames")
        if int(batch_size) < 1:
            raise UsageError(f"batch_size {batch_size!r}: use at least 1")
        if int(seed) < 0:
            raise UsageError(f"seed {seed!r}: use a non-negative integer")
        if len(num_layers) != 2 or not 0 <= int(num_layers[0]) <= int(num_layers[1]):
            raise UsageError(f"num_layers {num_layers!r}: use (fewest, most) foreground layers, "
                             "0 <= fewest <= most")
        if max_motion is not None and not float(max_motion) >= 0.0:
            raise UsageError(f"max_motion {max_motion!r}: use a non-negative number of pixels per frame")
        self.size = (int(size[0]), int(size[1]))
        self.num_frames = int(num_frames)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.seed = int(seed)
        self._weights = _degrade_weights(degrade)
        self.clean_fraction = _fraction("clean_fraction", clean_fraction) if degrade is not None else 1.0
        self.max_motion = 0.4 * self.size[1] if max_motion is None else float(max_motion)
        self.static_fraction = _fraction("static_fraction", static_fraction)
        self.photo_fraction = _fraction("photo_fraction", photo_fraction)
        self.num_layers = (int(num_layers[0]), int(num_layers[1]))
        self.motion_blur_fraction = _fraction("motion_blur_fraction", motion_blur_fraction)
        self.brightness_fraction = _fraction("brightness_fraction", brightness_fraction)
        self.haze_fraction = _fraction("haze_fraction", haze_fraction)
        self.photos = None
        if self.photo_fraction > 0:
            self.photos = photo_bank if photo_bank is not None else PhotoBank.load(self.device)
            # torch.device("cuda") and the cuda:0 a tensor reports are the same device: compare loosely.
            bank = self.photos.sharp.device if self.photos is not None else self.device
            if bank.type != self.device.type or None not in (bank.index, self.device.index) \
                    and bank.index != self.device.index:
                raise UsageError(f"photo_bank lives on {self.photos.sharp.device}; load it on {self.device}")

    # ----------------------------------------------------------------------------------------- public
    def __call__(self, step: int) -> dict[str, Tensor]:
        if int(step) < 0:
            raise UsageError(f"step {step!r}: use a non-negative integer")
        rng = np.random.default_rng([self.seed, int(step)])
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(np.random.SeedSequence([self.seed, int(step), _DEVICE_STREAM]).generate_state(
            1, np.uint64)[0]))
        clean, ids, deltas, layers = self._render(rng, gen)
        flows = self._ground_truth(ids, deltas, layers)
        clean = self._brightness(rng, clean)
        presets = self._presets(rng)
        degraded = degrade_windows(clean, presets=presets, generator=gen, flows_forward=flows["flow_fwd"])
        level = upload([DEGRADE_LEVELS.index(p) for p in presets], self.device, torch.int64)
        return _finite_windows({"clean": clean, "degraded": degraded, **flows,
                                "degrade_level": level})

    # ----------------------------------------------------------------------------------------- scene
    def _render(self, rng: np.random.Generator, gen: torch.Generator
                ) -> tuple[Tensor, Tensor, np.ndarray, int]:
        """Clean frames [B, F, 3, H, W], layer ids [B, F, H, W] uint8, the host array [B, L, 2, F-1, 3, 3]
        of (H_j - H_i) H_i^-1 per layer for j = i+1 (forward) and j = i-1 (backward), and how many
        layers (background included) any sample has."""
        b, f, (h, w) = self.batch_size, self.num_frames, self.size
        dev = self.device
        layers = 1 + self.num_layers[1]
        n_fg = rng.integers(self.num_layers[0], self.num_layers[1] + 1, b)
        blur = rng.random(b) < self.motion_blur_fraction
        shutter = np.where(blur, rng.uniform(*_SHUTTER, b), 0.0)
        taps = np.arange(_SHUTTER_TAPS) / (_SHUTTER_TAPS - 1) - 0.5  # the middle tap is 0
        mid = _SHUTTER_TAPS // 2
        # [B, F, S] times from the window's middle frame, the taps spread over each frame's shutter
        times = (np.arange(f) - (f - 1) / 2.0)[None, :, None] + (shutter[:, None] * taps[None])[:, None]
        haze = np.where(rng.random(b) < self.haze_fraction, rng.uniform(*_HAZE, b), 0.0)
        haze_colour = 0.6 + 0.35 * rng.random((b, 1)) + 0.1 * (hsv_colours(rng, (b,)) - 0.5)

        frames = torch.zeros(b, f, 3, h, w, device=dev)
        ids = torch.zeros(b, f, h, w, device=dev, dtype=torch.uint8)
        blurred = np.flatnonzero(blur)
        extra = torch.zeros(blurred.size, f, _SHUTTER_TAPS - 1, 3, h, w, device=dev)  # off-centre renders
        deltas = np.zeros((b, layers, 2, f - 1, 3, 3))
        pad = int(_BG_PAD * max(h, w))
        short = min(h, w)
        for layer in range(layers):
            idx = np.arange(b) if layer == 0 else np.flatnonzero(n_fg >= layer)
            n = idx.size
            if n == 0:
                continue
            if layer == 0:
                extent = np.tile([[h + 2 * pad, w + 2 * pad]], (n, 1))
                radius = np.full(n, 0.5 * math.hypot(h, w))
                position = np.tile([[w / 2.0, h / 2.0]], (n, 1))
            else:
                radius = short * np.exp(rng.uniform(math.log(_FG_RADIUS[0]), math.log(_FG_RADIUS[1]), n))
                side = (2 * radius).astype(np.int64) + 5
                extent = np.stack([side, side], 1)
                position = rng.uniform([0.0, 0.0], [w, h], (n, 2))
            budget = motion_budgets(rng, n, self.max_motion, self.static_fraction)
            hom = trajectories(rng, times=times[idx].reshape(n, -1), tex_size=extent, position=position,
                               extent=radius, budget=budget, background=layer == 0)
            hom = hom.reshape(n, f, _SHUTTER_TAPS, 3, 3)
            at = hom[:, :, mid]  # [n, F, 3, 3] at the frames' own instants
            deltas[idx, layer, 0] = (at[:, 1:] - at[:, :-1]) @ inv3(at[:, :-1])
            deltas[idx, layer, 1] = (at[:, :-1] - at[:, 1:]) @ inv3(at[:, 1:])
            inverse = upload(inv3(hom), dev)

            th, tw = int(extent[:, 0].max()), int(extent[:, 1].max())
            tex = random_textures(rng, gen, extent, th, tw, photo_fraction=self.photo_fraction,
                                  bank=self.photos)
            # Haze: farther layers fade more toward the haze colour (the background fully, the front 30 %).
            depth = np.ones(n) if layer == 0 else 1.0 - 0.7 * layer / n_fg[idx]
            strength = upload(haze[idx] * depth, dev).view(n, 1, 1, 1)
            tint = upload(haze_colour[idx], dev).view(n, 3, 1, 1)
            tex = tex + (tint - tex) * strength
            if layer > 0:
                tex = torch.cat([tex, shape_alpha(rng, extent[:, 0], th, dev)[:, None]], 1)  # RGBA

            everyone = n == b  # the background and the first layers: no gather and scatter needed
            sel = upload(idx, dev, torch.int64)
            fr, idl = (frames, ids) if everyone else (frames.index_select(0, sel), ids.index_select(0, sel))
            for k in range(f):
                fr[:, k], idl[:, k] = _composite(fr[:, k], idl[:, k], warp(tex, inverse[:, k, mid], (h, w),
                                                                            mirror=layer == 0), layer)
            if not everyone:
                frames.index_copy_(0, sel, fr)
                ids.index_copy_(0, sel, idl)
            pos = np.flatnonzero(blur[idx])  # blurred samples among this layer's
            if pos.size:
                slot = upload(np.searchsorted(blurred, idx[pos]), dev, torch.int64)
                pick = upload(pos, dev, torch.int64)
                ex = extra.index_select(0, slot)
                tb, ib = tex.index_select(0, pick), inverse.index_select(0, pick)
                for k in range(f):
                    for j, tap in enumerate(t for t in range(_SHUTTER_TAPS) if t != mid):
                        ex[:, k, j] = _composite(ex[:, k, j], None, warp(tb, ib[:, k, tap], (h, w),
                                                                          mirror=layer == 0), layer)[0]
                extra.index_copy_(0, slot, ex)
        if blurred.size:
            sel = upload(blurred, dev, torch.int64)
            frames.index_copy_(0, sel, (frames.index_select(0, sel) + extra.sum(2)) / _SHUTTER_TAPS)
        return frames.clamp(0.0, 1.0), ids, deltas, 1 + int(n_fg.max())

    def _ground_truth(self, ids: Tensor, deltas: np.ndarray, layers: int) -> dict[str, Tensor]:
        """Flows and masks from the layer ids and relative homographies of the ``layers`` layers in use."""
        b, f, (h, w) = self.batch_size, self.num_frames, self.size
        d = upload(deltas, self.device)  # [B, L, 2, F-1, 3, 3]
        out: dict[str, list[Tensor]] = {k: [] for k in ("flow_fwd", "flow_bwd", "valid_fwd", "valid_bwd",
                                                         "occ_fwd", "occ_bwd")}
        for i in range(f - 1):
            for direction, src, dst in ((0, ids[:, i], ids[:, i + 1]), (1, ids[:, i + 1], ids[:, i])):
                flow = torch.zeros(b, 2, h, w, device=self.device)
                for layer in range(layers):
                    mine = (src == layer)[:, None]
                    flow = torch.where(mine, relative_flow(d[:, layer, direction, i], (h, w)), flow)
                valid, occ = flow_masks(flow, src, dst)
                key = "fwd" if direction == 0 else "bwd"
                out[f"flow_{key}"].append(flow)
                out[f"valid_{key}"].append(valid.float())
                out[f"occ_{key}"].append(occ.float())
        return {k: torch.stack(v, 1) for k, v in out.items()}

    def _brightness(self, rng: np.random.Generator, clean: Tensor) -> Tensor:
        """Per-frame gain, offset and gamma drifting linearly across the window, for a share of windows."""
        b, f = self.batch_size, self.num_frames
        on = (rng.random(b) < self.brightness_fraction)[:, None]
        rel = (np.arange(f) - (f - 1) / 2.0)[None, :, None]  # [1, F, 1]
        gain = np.exp(rel * (on * rng.normal(0.0, _GAIN_DRIFT, (b, 3)))[:, None])  # [B, F, 3]
        offset = rel * (on * rng.normal(0.0, _OFFSET_DRIFT, (b, 3)))[:, None]
        gamma = np.exp(rel * (on * rng.normal(0.0, _GAMMA_DRIFT, (b, 1)))[:, None])  # [B, F, 1]
        if not on.any():
            return clean

        def t(a: np.ndarray) -> Tensor:
            return upload(a, self.device).unsqueeze(-1).unsqueeze(-1)

        return (t(gain) * torch.pow(clean, t(gamma)) + t(offset)).clamp(0.0, 1.0)

    def _presets(self, rng: np.random.Generator) -> list[str]:
        names = list(self._weights)
        p = np.array([self._weights[k] for k in names])
        drawn = [names[i] for i in rng.choice(len(names), size=self.batch_size, p=p / p.sum())]
        clean = rng.random(self.batch_size) < self.clean_fraction
        concrete = rng.integers(0, len(_CONCRETE), self.batch_size)
        return ["clean" if c else (_CONCRETE[k] if d == "random" else d)
                for d, c, k in zip(drawn, clean, concrete, strict=True)]


def _composite(under: Tensor, ids: Tensor | None, layer_rgba: Tensor, layer: int
               ) -> tuple[Tensor, Tensor | None]:
    """Layer [n, 3 or 4, H, W] over ``under`` [n, 3, H, W] (straight alpha); ids [n, H, W] updated where
    the layer owns the pixel. The background (3 channels) replaces what is under it."""
    if layer_rgba.shape[1] == 3:
        return layer_rgba, ids
    alpha = layer_rgba[:, 3:]
    out = under + (layer_rgba[:, :3] - under) * alpha
    if ids is not None:
        ids = torch.where(alpha[:, 0] >= _ALPHA_ON_TOP, torch.full_like(ids, layer), ids)
    return out, ids


def _finite_windows(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Zero any non-finite value and mark its window invalid, without waiting for the device.

    A rare draw (seen on CUDA only, in the first device run) can leave a NaN in a window; one such
    window would otherwise make the loss, and every weight after it, NaN. ``finite`` [B] says which
    windows were whole.
    """
    keys = ("clean", "degraded", "flow_fwd", "flow_bwd")
    finite = torch.stack([torch.isfinite(batch[k]).flatten(1).all(1) for k in keys]).all(0)  # [B]
    out = dict(batch)
    for k in keys:
        out[k] = torch.nan_to_num(batch[k], nan=0.0, posinf=0.0, neginf=0.0)
    keep = finite.view(-1, 1, 1, 1)
    for k in ("valid_fwd", "valid_bwd"):
        out[k] = batch[k] * keep.to(batch[k].dtype)
    out["finite"] = finite
    return out

