"""Steady a correspondence map with a local affine fit, where the surface moves as one piece.

A flow field from degraded frames is noisy pixel by pixel (noise, compression blocks and blur leave
each patch's match off by a pixel or so), and paint carried through such a map shimmers and creeps.
A surface a fix is painted on moves smoothly: over a neighbourhood, its motion is close to affine (a
plane under perspective differs from affine only at second order within a window). So each pixel's
map is replaced by the value at that pixel of an affine fit to its neighbours' maps, weighted by a
Gaussian of ``sigma`` pixels and by how much each neighbour's match is trusted (moving least squares,
a local linear regression). Noise averages out over the window; an affine motion is kept exactly.

Where two surfaces meet (an object edge), one affine fit over both is wrong for each. That shows as a
misfit that is *coherent*: the map differs from the fit by the same amount over a patch, where noise
differs at random. So the fit's residual is averaged over one patch (``MISFIT_SIGMA``), and where that
average exceeds ``misfit`` times the typical residual (the median over trusted pixels), the raw map is
kept, with a linear blend between one and two times that level. Right at the edge, within a few pixels,
the averaged residual straddles both sides and the fit still wins: there the map can be pulled by up to
about half the two surfaces' difference in motion (``steady=0`` turns the fit off).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MISFIT_SIGMA", "local_affine", "steady_map"]

MISFIT_SIGMA = 8.0  # pixels over which the residual is averaged: about one patch of a flow estimator


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    # zero outside the frame: the weights' own blur then renormalises at the borders
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)


def local_affine(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Per pixel, the value at that pixel of the weighted affine fit to ``values`` around it.

    values: [H, W, C]; weight: [H, W] >= 0; sigma: Gaussian window in pixels. Returns [H, W, C]
    float64. Where the window holds (almost) no weight the fit degenerates to the weighted mean.

    The fit is as smooth as its window, so it is solved on a grid ``sigma / 4`` times coarser (the
    weighted products area-averaged onto it, their window shrunk to match) and interpolated back: at
    1080p and sigma 32 that is 64x fewer 3x3 systems, and Gaussian passes an eighth as wide.
    """
    import cv2

    h, w = weight.shape
    step = max(1, int(sigma // 4))
    ch, cw = -(-h // step), -(-w // step)

    def coarse(image: np.ndarray) -> np.ndarray:
        if step == 1:
            return image
        padded = np.pad(image, ((0, ch * step - h), (0, cw * step - w)))  # zero weight past the edge
        return padded.reshape(ch, step, cw, step).mean(axis=(1, 3))

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    # coordinates about the frame centre keep the moments' cancellation small in float64
    xs -= w / 2.0
    ys -= h / 2.0
    wt = weight.astype(np.float64)
    s = sigma / step
    cwt = coarse(wt)
    # each coarse cell's weighted centre: where its moments are taken about
    cx = coarse(wt * xs) / np.maximum(cwt, 1e-12)
    cy = coarse(wt * ys) / np.maximum(cwt, 1e-12)
    cell_y, cell_x = np.mgrid[0:ch, 0:cw].astype(np.float64)
    empty = cwt <= 1e-12
    cx[empty] = (cell_x[empty] + 0.5) * step - 0.5 - w / 2.0
    cy[empty] = (cell_y[empty] + 0.5) * step - 0.5 - h / 2.0

    def moment(image: np.ndarray) -> np.ndarray:
        return _blur(coarse(image), s)

    s0, sx, sy = moment(wt), moment(wt * xs), moment(wt * ys)
    sxx, sxy, syy = moment(wt * xs * xs), moment(wt * xs * ys), moment(wt * ys * ys)
    # moments about each cell centre: the normal equations of value ~ a + b (x' - x) + c (y' - y)
    normal = np.empty((ch, cw, 3, 3))  # [h', w', 3, 3]
    normal[..., 0, 0] = s0
    normal[..., 0, 1] = normal[..., 1, 0] = sx - cx * s0
    normal[..., 0, 2] = normal[..., 2, 0] = sy - cy * s0
    normal[..., 1, 1] = sxx - 2 * cx * sx + cx * cx * s0
    normal[..., 1, 2] = normal[..., 2, 1] = sxy - cx * sy - cy * sx + cx * cy * s0
    normal[..., 2, 2] = syy - 2 * cy * sy + cy * cy * s0
    # a small ridge: a window with weight on a line only (or none) still solves, towards its mean
    normal += np.eye(3) * (1e-6 * (1.0 + s0))[..., None, None]
    if step > 1:
        # the cell centres at full size: each pixel's offset from the centre its coefficients belong to
        ccx = cv2.resize(cx, (w, h), interpolation=cv2.INTER_LINEAR)
        ccy = cv2.resize(cy, (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.empty((h, w, values.shape[-1]))
    for c in range(values.shape[-1]):
        v = values[..., c].astype(np.float64)
        b0, bx, by = moment(wt * v), moment(wt * v * xs), moment(wt * v * ys)
        rhs = np.stack([b0, bx - cx * b0, by - cy * b0], axis=-1)[..., None]  # [h', w', 3, 1]
        coef = np.linalg.solve(normal, rhs)[..., 0]  # [h', w', 3]: value, d/dx, d/dy at the cell centre
        if step == 1:
            out[..., c] = coef[..., 0]
            continue
        # each coefficient interpolated to full size, the affine evaluated at the pixel itself
        full = [cv2.resize(coef[..., i], (w, h), interpolation=cv2.INTER_LINEAR) for i in range(3)]
        out[..., c] = full[0] + full[1] * (xs - ccx) + full[2] * (ys - ccy)
    return out


def steady_map(where: np.ndarray, valid: np.ndarray, sigma: float, *, misfit: float = 1.5) -> np.ndarray:
    """``where`` [H, W, 2] (pixel -> anchor pixel) steadied by a local affine fit, raw where it misfits.

    ``valid`` [H, W] in [0, 1] weighs each pixel's match (hidden or inconsistent pixels count little).
    ``sigma`` <= 0 returns ``where`` unchanged. Returns [H, W, 2] float32.
    """
    if sigma <= 0 or not (valid > 0.5).any():
        return where
    from daflow_vfx.vfx.paint_maps import identity_map

    grid = identity_map(*valid.shape).astype(np.float64)  # [H, W, 2]
    # fit the displacement, not the position: the same fit, with less to cancel
    fitted = local_affine(where - grid, valid, sigma) + grid  # [H, W, 2]
    residual = (where - fitted).astype(np.float32)  # [H, W, 2]
    wt = valid.astype(np.float32)
    density = _blur(wt, MISFIT_SIGMA) + 1e-6
    coherent = np.stack([_blur(wt * residual[..., c], MISFIT_SIGMA) for c in range(2)], axis=-1)
    coherent = np.linalg.norm(coherent / density[..., None], axis=-1)  # [H, W] averaged misfit, pixels
    typical = float(np.median(np.linalg.norm(residual, axis=-1)[valid > 0.5]))
    level = max(misfit * typical, 1e-3)
    trust = np.clip(2.0 - coherent / level, 0.0, 1.0)[..., None]  # 1 up to level, 0 from 2 * level
    return (trust * fitted + (1.0 - trust) * where).astype(np.float32)
