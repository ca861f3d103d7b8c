"""Dense Inverse Search (Kroeger et al., ECCV 2016) in torch, so DA-Flow's prior runs on the device.

The weights of the ``flow_init="dis"`` variants were trained on OpenCV's DIS (medium preset). This
module follows OpenCV's CPU implementation step by step -- its INTER_AREA pyramid, unnormalised
Sobel gradients, mean-normalised inverse-compositional patch search, photometric densification and
variational refinement (brightness and gradient constancy, red-black SOR). The one step that does
not map onto a GPU as it stands is propagation: OpenCV visits the patches one by one, in raster order
and back, each starting from its neighbours' results. :func:`dis_flow` either reproduces that order
exactly, one anti-diagonal of the patch grid at a time (hundreds of dependent steps per level at
1080p), or takes a fixed number of steps per pass, each patch seeing the neighbours visited in an
earlier step (``groups``, the default 16). ``tests/model/test_dis.py`` holds both against OpenCV.

Every function works on a batch of pairs: gray frames ``[N, H, W]`` as float in 0..255 (OpenCV's
8-bit luma, see :func:`gray_u8`), flow ``[N, 2, H, W]`` in pixels from the first frame to the second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["DISParams", "PRESETS", "dis_flow", "gray_u8"]

# Steps per propagation pass (see dis_flow). 16 kept the flow within 0.24 px mean of OpenCV's on
# flow-dev and 0.77 px on flow-large (32: 0.13 and 0.42; 8: 0.36 and 1.2), at 16 times the patch-search
# kernels of one step.
DEFAULT_GROUPS = 16
_EPS = 1e-3  # OpenCV DIS's guard for the patch Hessian's determinant and the densification clamp
_BORDER = 16  # replicate border of the second frame that patches may reach into


@dataclass(frozen=True)
class DISParams:
    """One DIS preset (OpenCV's ``DISOpticalFlow::create``)."""

    finest_scale: int
    patch_size: int
    patch_stride: int
    grad_descent_iter: int
    variational_refinement_iter: int
    alpha: float = 20.0
    gamma: float = 10.0
    delta: float = 5.0
    sor_iterations: int = 5
    omega: float = 1.6
    epsilon: float = 0.01  # the robust penalty's epsilon, DIS's own default since OpenCV 4.10
    use_spatial_propagation: bool = True


PRESETS: dict[str, DISParams] = {
    "ultrafast": DISParams(finest_scale=2, patch_size=8, patch_stride=4, grad_descent_iter=12,
                           variational_refinement_iter=0),
    "fast": DISParams(finest_scale=2, patch_size=8, patch_stride=4, grad_descent_iter=16,
                      variational_refinement_iter=5),
    "medium": DISParams(finest_scale=1, patch_size=8, patch_stride=3, grad_descent_iter=25,
                        variational_refinement_iter=5),
}


def gray_u8(rgb: torch.Tensor) -> torch.Tensor:
    """Display-referred RGB ``[..., 3, H, W]`` in [0, 1] -> Rec.601 luma ``[..., H, W]`` rounded to the
    integers 0..255, as :func:`daflow_vfx.estimators.classical.to_gray_u8` makes OpenCV's input."""
    levels = float(torch.iinfo(torch.uint8).max)
    gray = rgb[..., 0, :, :] * 0.299 + rgb[..., 1, :, :] * 0.587 + rgb[..., 2, :, :] * 0.114
    return torch.floor(gray.float() * levels + 0.5).clamp_(0.0, levels)


# --------------------------------------------------------------------------------------------------
# pyramid


def _area_matrix(src: int, dst: int, *, device: torch.device) -> torch.Tensor:
    """[dst, src] weights of INTER_AREA along one axis: each output covers [d*s, (d+1)*s) of the input."""
    scale = src / dst
    edges = torch.arange(dst + 1, device=device, dtype=torch.float64) * scale  # [dst + 1]
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = torch.arange(src, device=device, dtype=torch.float64)[None]  # [1, src]
    overlap = (torch.minimum(hi, pix + 1) - torch.maximum(lo, pix)).clamp_(min=0.0)
    overlap = torch.where(overlap < 1e-3, torch.zeros_like(overlap), overlap)
    return (overlap / scale).float()


def _area_resize(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[N, H, W] 0..255 integers -> [N, h, w], OpenCV's uint8 INTER_AREA (rounded back to integers)."""
    n, src_h, src_w = img.shape
    if src_h == 2 * h and src_w == 2 * w:
        # OpenCV's exact 2x2 path rounds half up: (a + b + c + d + 2) >> 2
        total = F.avg_pool2d(img[:, None], 2)[:, 0] * 4.0
        return torch.floor((total + 2.0) / 4.0)
    ry = _area_matrix(src_h, h, device=img.device)  # [h, H]
    rx = _area_matrix(src_w, w, device=img.device)  # [w, W]
    return torch.round(ry @ img @ rx.T)  # [N, h, w]


def coarsest_scale(height: int, width: int, patch_size: int) -> int:
    """OpenCV's choice of the coarsest pyramid level for a frame size."""
    first = int(math.log(max(width, height) / (4.0 * patch_size)) / math.log(2.0) + 0.5)
    second = int(math.log(min(width, height) // patch_size) / math.log(2.0))
    return min(first, second)


# --------------------------------------------------------------------------------------------------
# patch inverse search


def _sobel(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised 3x3 Sobel (a unit ramp gives 8) with reflect-101 borders: [N, H, W] -> gx, gy."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=img.device)
    kernels = torch.stack([k, k.T])[:, None]  # [2, 1, 3, 3]
    g = F.conv2d(F.pad(img[:, None], (1, 1, 1, 1), mode="reflect"), kernels)  # [N, 2, H, W]
    return g[:, 0], g[:, 1]


def _patches(img: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """[N, H, W] -> [N, L, size*size]: the patch grid in raster order, pixels row-major."""
    return F.unfold(img[:, None], size, stride=stride).transpose(1, 2)


def _bilinear(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sample [N, H, W] at float (y, x) [N, ...] whose floor+1 stays inside the image."""
    n, h, w = img.shape
    y0, x0 = torch.floor(y), torch.floor(x)
    a, b = y - y0, x - x0
    flat = img.reshape(n, -1)
    base = (y0.long() * w + x0.long()).reshape(n, -1)

    def at(offset: int) -> torch.Tensor:
        return torch.gather(flat, 1, base + offset).reshape(y.shape)

    return ((1 - a) * ((1 - b) * at(0) + b * at(1))
            + a * ((1 - b) * at(w) + b * at(w + 1)))


def _mean_normalised_ssd(d: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """Residuals [N, L, n] and their sums [N, L] -> SSD after removing each patch's mean: [N, L]."""
    return (d * d).sum(-1) - sd * sd / d.shape[-1]


class _PatchSearch:
    """The patch grid of one pyramid level and the cost of a flow per patch."""

    def __init__(self, i0: torch.Tensor, i1: torch.Tensor, p: DISParams) -> None:
        n, h, w = i0.shape
        ps, st = p.patch_size, p.patch_stride
        self.h, self.w, self.ps = h, w, ps
        self.hs, self.ws = 1 + (h - ps) // st, 1 + (w - ps) // st
        gx, gy = _sobel(i0)
        self.t = _patches(i0, ps, st)  # template: [N, L, ps*ps]
        self.gx, self.gy = _patches(gx, ps, st), _patches(gy, ps, st)  # [N, L, ps*ps]
        self.sx, self.sy = self.gx.sum(-1), self.gy.sum(-1)  # [N, L]
        xx, yy, xy = (self.gx * self.gx).sum(-1), (self.gy * self.gy).sum(-1), (self.gx * self.gy).sum(-1)
        det = xx * yy - xy * xy
        det = torch.where(det.abs() < _EPS, torch.full_like(det, _EPS), det)
        self.inv = (yy / det, -xy / det, xx / det)  # [N, L] each: H^-1 as (11, 12, 22)
        # patch top-left corners and in-patch offsets, in pixels
        iy = torch.arange(self.hs, device=i0.device, dtype=torch.float32) * st
        ix = torch.arange(self.ws, device=i0.device, dtype=torch.float32) * st
        self.top = iy[:, None].expand(self.hs, self.ws).reshape(-1)  # [L]
        self.left = ix[None, :].expand(self.hs, self.ws).reshape(-1)  # [L]
        off = torch.arange(ps, device=i0.device, dtype=torch.float32)
        self.dy = off[:, None].expand(ps, ps).reshape(-1)  # [ps*ps]
        self.dx = off[None, :].expand(ps, ps).reshape(-1)
        self.ext = F.pad(i1[:, None], (_BORDER,) * 4, mode="replicate")[:, 0]  # [N, H+32, W+32]

    def take(self, idx: torch.Tensor) -> _PatchSearch:
        """The same search restricted to the patches ``idx`` [K] (flat raster indices)."""
        sub = object.__new__(_PatchSearch)
        sub.__dict__.update(self.__dict__)
        for name in ("t", "gx", "gy", "sx", "sy"):
            setattr(sub, name, getattr(self, name)[:, idx])
        sub.inv = tuple(v[:, idx] for v in self.inv)
        sub.top, sub.left = self.top[idx], self.left[idx]
        return sub

    def residual(self, flow: torch.Tensor) -> torch.Tensor:
        """flow [N, L, 2] -> warped second frame minus template, [N, L, ps*ps]."""
        ps = self.ps
        y = (self.top + flow[..., 1] + _BORDER).clamp(_BORDER - ps + 1, _BORDER + self.h - 1)  # [N, L]
        x = (self.left + flow[..., 0] + _BORDER).clamp(_BORDER - ps + 1, _BORDER + self.w - 1)
        return _bilinear(self.ext, y[..., None] + self.dy, x[..., None] + self.dx) - self.t

    def cost(self, flow: torch.Tensor) -> torch.Tensor:
        """Mean-normalised SSD per patch: [N, L]."""
        d = self.residual(flow)
        return _mean_normalised_ssd(d, d.sum(-1))

    def descend(self, flow: torch.Tensor, iters: int) -> torch.Tensor:
        """Inverse-compositional Gauss-Newton on every patch at once, stopping each patch as OpenCV does
        (once its SSD stops falling, one step late) and rejecting moves longer than the patch."""
        start, cur = flow, flow.clone()
        prev = torch.full(flow.shape[:-1], float("inf"), device=flow.device)  # [N, L]
        active = torch.ones_like(prev, dtype=torch.bool)
        i11, i12, i22 = self.inv
        for _ in range(iters):
            d = self.residual(cur)  # [N, L, ps*ps]
            n = d.shape[-1]
            sd = d.sum(-1)
            ssd = _mean_normalised_ssd(d, sd)
            gx = (d * self.gx).sum(-1) - sd * self.sx / n
            gy = (d * self.gy).sum(-1) - sd * self.sy / n
            step = torch.stack([i11 * gx + i12 * gy, i12 * gx + i22 * gy], dim=-1)  # [N, L, 2]
            cur = torch.where(active[..., None], cur - step, cur)
            active = active & (ssd < prev)
            prev = torch.where(active, ssd, prev)
        moved = (cur - start).norm(dim=-1) <= self.ps
        return torch.where(moved[..., None], cur, start)

    def search(self, dense: torch.Tensor, p: DISParams, groups: int | None) -> torch.Tensor:
        """Dense flow [N, 2, h, w] (the coarser level's, upsampled) -> patch flows [N, L, 2]."""
        c = self.ps // 2
        iy, ix = self.top.long() + c, self.left.long() + c
        flow = dense[:, :, iy, ix].transpose(1, 2)  # [N, L, 2]: the dense flow near each patch's centre
        if not p.use_spatial_propagation:
            return self.descend(flow, p.grad_descent_iter)
        inner = p.grad_descent_iter // 2
        for direction in (1, -1):
            flow = self._sweep(flow, direction, inner, groups)
        return flow

    def _sweep(self, flow: torch.Tensor, direction: int, inner: int, groups: int | None) -> torch.Tensor:
        """One propagation pass: forward (raster order) or backward (reversed).

        OpenCV splits the patch rows into 8 fixed stripes and, within each, visits patches in raster
        order: a patch first takes its left and upper neighbours' flows (right and lower going back)
        where they fit it strictly better, then descends. A patch depends only on those two neighbours,
        so the anti-diagonals of all stripes can be visited one after another with every patch of a
        diagonal at once, which reproduces OpenCV exactly (``groups`` None). ``groups`` K visits the
        diagonals modulo K instead: K steps, each patch seeing its neighbours' flows from this pass when
        they are in an earlier step and from the previous pass otherwise."""
        hs, ws = self.hs, self.ws
        # the visiting step of each patch, from the grid's shape alone (on the host: no device sync)
        stripe = -(-hs // 8)
        rows = torch.arange(hs)
        if direction == 1:
            local = rows % stripe
        else:
            local = torch.clamp((rows // stripe + 1) * stripe, max=hs) - 1 - rows
        cols = torch.arange(ws)
        rank = cols if direction == 1 else ws - 1 - cols
        step = (local[:, None] + rank[None, :]).reshape(-1)  # [L]
        if groups is not None:
            step = step % groups
        order = torch.argsort(step, stable=True)
        counts = torch.bincount(step).tolist()
        first_col = (rank == 0)[None, :].expand(hs, ws).reshape(-1)
        first_row = (local == 0)[:, None].expand(hs, ws).reshape(-1)
        dev = flow.device
        order, first_col, first_row = order.to(dev), first_col.to(dev), first_row.to(dev)
        flow = flow.clone()
        at = 0
        for count in counts:
            idx = order[at:at + count]  # [K]
            at += count
            sub = self.take(idx)
            cur = flow[:, idx]  # [N, K, 2]
            best = sub.cost(cur)
            for neighbour, none in ((idx - direction, first_col[idx]),
                                    (idx - direction * ws, first_row[idx])):
                cand = torch.where(none[None, :, None], cur, flow[:, neighbour.clamp(0, hs * ws - 1)])
                cost = sub.cost(cand)
                better = cost < best
                cur = torch.where(better[..., None], cand, cur)
                best = torch.where(better, cost, best)
            flow[:, idx] = sub.descend(cur, inner)
        return flow


def _densify(i0: torch.Tensor, i1: torch.Tensor, s: torch.Tensor, search: _PatchSearch,
             p: DISParams) -> torch.Tensor:
    """Patch flows [N, L, 2] -> dense [N, 2, h, w]: at each pixel, the flows of the patches covering it,
    weighted by 1 / max(1, |I1(x + u) - I0(x)|) at that pixel."""
    n, h, w = i0.shape
    ps, st = p.patch_size, p.patch_stride
    dev = i0.device
    grid = s.reshape(n, search.hs, search.ws, 2)

    def span(size: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(size)  # on the host: which offsets apply follows from the shapes alone
        hi = torch.clamp(i // st, max=count - 1)
        lo = torch.clamp(torch.clamp(-((ps - 1 - i) // st), min=0), max=count - 1)  # ceil((i-ps+1)/st)
        return lo, hi

    lo_y, hi_y = span(h, search.hs)
    lo_x, hi_x = span(w, search.ws)
    yy = torch.arange(h, device=dev, dtype=torch.float32)[:, None].expand(h, w)
    xx = torch.arange(w, device=dev, dtype=torch.float32)[None, :].expand(h, w)
    num = torch.zeros(n, h, w, 2, device=dev)
    den = torch.zeros(n, h, w, device=dev)
    k = -(-ps // st)  # most patches covering a pixel along one axis
    for ky in range(k):
        py = hi_y - ky  # [h]
        vy = py >= lo_y
        for kx in range(k):
            px = hi_x - kx  # [w]
            valid = vy[:, None] & (px >= lo_x)[None, :]  # [h, w], on the host
            if not bool(valid.any()):
                continue
            valid = valid.to(dev)
            f = grid[:, py.clamp(min=0).to(dev)][:, :, px.clamp(min=0).to(dev)]  # [N, h, w, 2]
            x = (xx + f[..., 0]).clamp(0.0, w - 1 - _EPS)
            y = (yy + f[..., 1]).clamp(0.0, h - 1 - _EPS)
            warped = _bilinear(i1, y, x)  # the clamp keeps floor + 1 inside the frame
            c = 1.0 / torch.clamp((warped - i0).abs(), min=1.0) * valid  # [N, h, w]
            num += c[..., None] * f
            den += c
    return (num / den[..., None]).permute(0, 3, 1, 2)  # [N, 2, h, w]


# --------------------------------------------------------------------------------------------------
# variational refinement


def _dx(f: torch.Tensor) -> torch.Tensor:
    """Central difference without the 1/2, replicate border: [N, H, W]."""
    p = F.pad(f[:, None], (1, 1, 0, 0), mode="replicate")[:, 0]
    return p[..., 2:] - p[..., :-2]


def _dy(f: torch.Tensor) -> torch.Tensor:
    p = F.pad(f[:, None], (0, 0, 1, 1), mode="replicate")[:, 0]
    return p[..., 2:, :] - p[..., :-2, :]


def _remap(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """cv2.remap(INTER_LINEAR, BORDER_REPLICATE) of [N, H, W] by flow [N, 2, H, W], positions on
    OpenCV's 1/32-pixel grid."""
    n, h, w = img.shape
    yy = torch.arange(h, device=img.device, dtype=torch.float32)[:, None]
    xx = torch.arange(w, device=img.device, dtype=torch.float32)[None, :]
    x = torch.round((xx + flow[:, 0]) * 32.0) / 32.0
    y = torch.round((yy + flow[:, 1]) * 32.0) / 32.0
    x0, y0 = torch.floor(x), torch.floor(y)
    a, b = y - y0, x - x0
    flat = img.reshape(n, -1)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        idx = yi.clamp(0, h - 1).long() * w + xi.clamp(0, w - 1).long()
        return torch.gather(flat, 1, idx.reshape(n, -1)).reshape(n, h, w)

    return ((1 - a) * ((1 - b) * at(y0, x0) + b * at(y0, x0 + 1))
            + a * ((1 - b) * at(y0 + 1, x0) + b * at(y0 + 1, x0 + 1)))


def _refine(i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor, p: DISParams) -> torch.Tensor:
    """OpenCV's VariationalRefinement: the increment dW minimising brightness and gradient constancy
    (robust, weights delta and gamma) plus alpha times robust smoothness of W + dW, linearised once
    around W; fixed-point iterations of red-black SOR. flow [N, 2, H, W] -> refined flow."""
    n, h, w = i0.shape
    zeta2, eps2 = 0.1**2, p.epsilon**2
    half_a, half_d, half_g = p.alpha / 2, p.delta / 2, p.gamma / 2
    iw = _remap(i1, flow)
    a = 0.5 * (i0 + iw)
    iz = iw - i0
    ix, iy = _dx(a), _dy(a)
    ixz, iyz = _dx(iz), _dy(iz)
    ixx, ixy, iyy = _dx(ix), _dy(ix), _dy(iy)
    n1 = ix * ix + iy * iy + zeta2
    nx = ixx * ixx + ixy * ixy + zeta2
    ny = iyy * iyy + ixy * ixy + zeta2
    wu, wv = flow[:, 0], flow[:, 1]
    du, dv = torch.zeros_like(wu), torch.zeros_like(wv)
    parity = (torch.arange(h, device=i0.device)[:, None] + torch.arange(w, device=i0.device)[None]) % 2
    colours = (parity == 0, parity == 1)  # red, black: [H, W]

    def fwd_x(f: torch.Tensor) -> torch.Tensor:  # f[j+1] - f[j], 0 in the last column
        return F.pad(f[..., 1:] - f[..., :-1], (0, 1))

    def fwd_y(f: torch.Tensor) -> torch.Tensor:
        return F.pad(f[..., 1:, :] - f[..., :-1, :], (0, 0, 0, 1))

    def shift(f: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        """g[i, j] = f[i + dy, j + dx], zero outside."""
        pad = (max(-dx, 0), max(dx, 0), max(-dy, 0), max(dy, 0))
        g = F.pad(f, pad)
        return g[..., max(dy, 0):max(dy, 0) + h, max(dx, 0):max(dx, 0) + w]

    for _ in range(p.variational_refinement_iter):
        r1 = iz + ix * du + iy * dv
        w1 = half_d / torch.sqrt(r1 * r1 / n1 + eps2) / n1
        rx = ixz + ixx * du + ixy * dv
        ry = iyz + ixy * du + iyy * dv
        w2 = half_g / torch.sqrt(rx * rx / nx + ry * ry / ny + eps2)
        a11 = w1 * ix * ix + zeta2 + w2 * (ixx * ixx / nx + ixy * ixy / ny)
        a12 = w1 * ix * iy + w2 * (ixx * ixy / nx + ixy * iyy / ny)
        a22 = w1 * iy * iy + zeta2 + w2 * (ixy * ixy / nx + iyy * iyy / ny)
        b1 = -w1 * iz * ix - w2 * (ixx * ixz / nx + ixy * iyz / ny)
        b2 = -w1 * iz * iy - w2 * (ixy * ixz / nx + iyy * iyz / ny)
        # smoothness: one weight per pixel from the current flow's forward differences; it weighs the
        # edges to the right and lower neighbours (zero where there is none)
        tu, tv = wu + du, wv + dv
        s = half_a / torch.sqrt(fwd_x(tu) ** 2 + fwd_x(tv) ** 2 + fwd_y(tu) ** 2 + fwd_y(tv) ** 2 + eps2)
        s_right = F.pad(s[..., :-1], (0, 1))  # weight of edge (p, right of p)
        s_down = F.pad(s[..., :-1, :], (0, 0, 0, 1))  # weight of edge (p, below p)
        s_left = shift(s_right, 0, -1)  # weight of edge (left of p, p)
        s_up = shift(s_down, -1, 0)
        a11 = a11 + s_right + s_down + s_left + s_up
        a22 = a22 + s_right + s_down + s_left + s_up
        # the original W's differences along each edge, added at one end and subtracted at the other
        for wf, b in ((wu, b1), (wv, b2)):
            e_right = s_right * fwd_x(wf)
            e_down = s_down * fwd_y(wf)
            b += e_right + e_down - shift(e_right, 0, -1) - shift(e_down, -1, 0)
        for _ in range(p.sor_iterations):
            for colour in colours:
                su = (s_right * shift(du, 0, 1) + s_left * shift(du, 0, -1)
                      + s_down * shift(du, 1, 0) + s_up * shift(du, -1, 0))
                new_u = du + p.omega * ((su + b1 - a12 * dv) / a11 - du)
                du = torch.where(colour, new_u, du)
                sv = (s_right * shift(dv, 0, 1) + s_left * shift(dv, 0, -1)
                      + s_down * shift(dv, 1, 0) + s_up * shift(dv, -1, 0))
                new_v = dv + p.omega * ((sv + b2 - a12 * du) / a22 - dv)
                dv = torch.where(colour, new_v, dv)
    return torch.stack([wu + du, wv + dv], dim=1)


# --------------------------------------------------------------------------------------------------
# the whole method


def dis_flow(first: torch.Tensor, second: torch.Tensor, *, preset: str = "medium",
             groups: int | None = DEFAULT_GROUPS) -> torch.Tensor:
    """DIS flow of each pair: gray ``[N, H, W]`` (0..255) x2 -> ``[N, 2, H, W]`` float32, in pixels from
    ``first`` to ``second``. Runs on the inputs' device.

    ``groups`` None propagates patch flows in OpenCV's sequential order (the same flow as OpenCV, up to
    float rounding, at one step per anti-diagonal of the patch grid: hundreds per level at 1080p);
    an integer K takes K steps per pass instead (see :meth:`_PatchSearch._sweep`)."""
    p = PRESETS[preset]
    first, second = first.float(), second.float()
    n, h, w = first.shape
    # DIS needs a patch at the finest level: replicate-pad frames too small for one, crop back after
    least = p.patch_size << p.finest_scale
    ph, pw = max(0, least - h), max(0, least - w)
    if ph or pw:
        first = F.pad(first[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
        second = F.pad(second[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
    full_h, full_w = first.shape[1:]
    top = max(coarsest_scale(full_h, full_w, p.patch_size), p.finest_scale)
    # pyramids: level finest straight from the frame, each coarser one halving the last
    sizes = [(full_h >> p.finest_scale, full_w >> p.finest_scale)]
    while len(sizes) <= top - p.finest_scale:
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
    pyr0, pyr1 = [], []
    for k, (lh, lw) in enumerate(sizes):
        src0, src1 = (first, second) if k == 0 else (pyr0[-1], pyr1[-1])
        pyr0.append(_area_resize(src0, lh, lw))
        pyr1.append(_area_resize(src1, lh, lw))
    flow = torch.zeros(n, 2, *sizes[-1], device=first.device)
    for k in reversed(range(len(sizes))):
        i0, i1 = pyr0[k], pyr1[k]
        if k < len(sizes) - 1:
            flow = 2.0 * F.interpolate(flow, size=sizes[k], mode="bilinear", align_corners=False)
        search = _PatchSearch(i0, i1, p)
        patches = search.search(flow, p, groups)
        flow = _densify(i0, i1, patches, search, p)
        if p.variational_refinement_iter > 0:
            flow = _refine(i0, i1, flow, p)
    flow = float(1 << p.finest_scale) * F.interpolate(flow, size=(full_h, full_w), mode="bilinear",
                                                      align_corners=False)
    return flow[:, :, :h, :w].contiguous()
