"""Vector detail (Nuke Kronos' "Vector Detail"): flow computed at a fraction of the plate's resolution.

:class:`~daflow_vfx.engine.FlowEngine` with ``detail`` below 1 shrinks each window with an area filter
(every plate pixel contributes, so fine texture averages instead of aliasing) before padding, tiling
and the estimator, then brings the flows back to the plate's size with a bilinear filter and scales the
vectors by the true per-axis ratio of the sizes: the reduced size is rounded to whole pixels, so
``detail`` itself is not the ratio. ``detail`` 1 never resizes.

OpenCV is imported inside the functions, as elsewhere in the engine, so importing this is light.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from daflow_vfx.errors import UsageError
from daflow_vfx.estimators import WindowFlows

__all__ = ["check_detail", "downscale_frames", "reduced_size", "upscale_flows"]


def check_detail(detail: float) -> float:
    """``detail`` as a float in (0, 1], or a :class:`UsageError` naming it."""
    # bool is a Real too; True would read as "full detail" by accident
    if isinstance(detail, bool) or not isinstance(detail, Real) or not 0 < float(detail) <= 1:
        raise UsageError(f"`detail` must be a fraction of the plate's resolution in (0, 1], e.g. 0.5, got "
                         f"{detail!r}", param="detail")
    return float(detail)  # NaN fails the comparison above


def reduced_size(height: int, width: int, detail: float) -> tuple[int, int]:
    """(height, width) the estimator sees at ``detail``: each side scaled and rounded half up, at least
    one pixel; the plate's own size at detail 1."""
    if detail >= 1:
        return height, width
    return max(1, math.floor(height * detail + 0.5)), max(1, math.floor(width * detail + 0.5))


def downscale_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frames`` ``[F, H, W, 3]`` float32 area-filtered down to ``size`` (h, w): ``[F, h, w, 3]``."""
    import cv2

    h, w = size
    return np.stack([cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) for frame in frames])


def _upscale(array: np.ndarray | None, height: int, width: int) -> np.ndarray | None:
    """Bilinear ``[N, h, w, ...]`` -> ``[N, H, W, ...]`` (pixel centres aligned, as the area filter)."""
    import cv2

    if array is None:
        return None
    return np.ascontiguousarray(np.stack([cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
                                          for a in array]), dtype=np.float32)


def upscale_flows(flows: WindowFlows, height: int, width: int) -> WindowFlows:
    """``flows`` computed on reduced frames, at the plate's ``height`` x ``width``, vectors in plate pixels.

    A displacement of one reduced pixel is ``width / w`` plate pixels along x and ``height / h`` along y;
    the confidences are resampled unscaled (bilinear keeps them in [0, 1]).
    """
    h, w = flows.forward.shape[1:3]
    scale = np.array([width / w, height / h], dtype=np.float32)  # [2]: (u, v) plate pixels per reduced pixel

    def vectors(array: np.ndarray) -> np.ndarray:
        up = _upscale(array, height, width)  # [F-1, H, W, 2]
        up *= scale
        return up

    return WindowFlows(
        forward=vectors(flows.forward),
        backward=vectors(flows.backward),
        confidence_forward=_upscale(flows.confidence_forward, height, width),  # [F-1, H, W]
        confidence_backward=_upscale(flows.confidence_backward, height, width),
    )
