"""Classical OpenCV flow estimators: ``dis`` (the CPU baseline), ``farneback`` and ``deepflow``.

All three are pairwise (window 2, stride 1) and work on 8-bit grayscale, so each pair is solved
twice: once for the forward flow and once, with the frames swapped, for the backward flow.
OpenCV's flow is already in the ``.flo`` convention (pixels, +x right, +y down, from the first
image to the second).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from daflow_vfx.errors import ModelError
from daflow_vfx.estimators.base import FlowEstimator, WindowFlows

log = logging.getLogger(__name__)

# OpenCV's flow methods take 8-bit images. Display-referred [0, 1] maps onto the full uint8 range;
# the constant comes from the pixel type rather than a literal so the scale follows the type.
_U8_MAX = float(np.iinfo(np.uint8).max)


def to_gray_u8(rgb: np.ndarray) -> np.ndarray:
    """Display-referred float RGB ``[H, W, 3]`` in [0, 1] -> uint8 luma ``[H, W]`` (rounded, clipped)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    # Rec.601 luma weights, as cv2.COLOR_RGB2GRAY uses: what the OpenCV methods were tuned on
    gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114  # [H, W]
    return np.clip(gray * _U8_MAX + 0.5, 0.0, _U8_MAX).astype(np.uint8)


class OpenCVPairwiseEstimator(FlowEstimator):
    """Shared plumbing: validate the window, convert to gray, solve each neighbour pair both ways."""

    window = 2
    stride = 1
    weights_sha256 = None
    provides_confidence = False
    # Peak bytes per pixel OpenCV itself allocates for one solve (pyramids, gradients, flow fields),
    # rounded up from the process high-water mark measured on 512x512 and 1024x1024 frames:
    # DIS medium 70 and 59, Farneback 87 and 78, DeepFlow 284 (256x256).
    work_bytes_per_pixel = 128
    workers = 1  # OpenCV solves of one window in flight at once (DIS can use more threads)

    def __init__(self, *, device: str = "cpu", dtype: str = "float32") -> None:
        import cv2

        self.version = f"opencv-{cv2.__version__}"
        if device != "cpu":
            # OpenCV's CPU implementation ignores torch devices; say so rather than pretend
            log.info("%s runs on the CPU; device %s is not used by it", self.name, device)
        self.device = device
        self.dtype = dtype

    def _solve(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W]`` x2 -> flow ``[H, W, 2]`` float32 from ``first`` to ``second``."""
        raise NotImplementedError

    def _solve_all(self, jobs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Solve ``(first, second)`` pairs in order (subclasses may solve them concurrently)."""
        return [self._solve(first, second) for first, second in jobs]

    def memory_estimate(self, *, frames: int, height: int, width: int) -> int:
        """Host bytes of one window: uint8 gray frames, the forward and backward flows twice (the
        per-pair list and the stacked result, float32 [H, W, 2] each) and the OpenCV solves in flight
        at once (one, unless the estimator solves pairs on several threads)."""
        flow = 2 * 4  # bytes per pixel of one float32 [H, W, 2] flow
        flows = 2 * (frames - 1) * 2 * flow  # forward and backward per pair, list and stacked copies
        in_flight = max(1, min(self.workers, 2 * (frames - 1)))
        return height * width * (frames + flows + in_flight * self.work_bytes_per_pixel)

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        frames = np.asarray(frames)  # [F, H, W, 3]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
            raise ModelError(f"{self.name}: expected frames [F>=2, H, W, 3], got shape {frames.shape}")
        gray = [to_gray_u8(f) for f in frames]
        n = len(gray) - 1
        flows = self._solve_all([(gray[i], gray[i + 1]) for i in range(n)]
                                + [(gray[i + 1], gray[i]) for i in range(n)])
        forward, backward = flows[:n], flows[n:]
        return WindowFlows(
            forward=np.stack(forward).astype(np.float32, copy=False),  # [F-1, H, W, 2]
            backward=np.stack(backward).astype(np.float32, copy=False),  # [F-1, H, W, 2]
        )


class DISEstimator(OpenCVPairwiseEstimator):
    """OpenCV Dense Inverse Search, medium preset by default."""

    name = "dis"
    PRESETS = ("ultrafast", "fast", "medium")
    work_bytes_per_pixel = 96

    def __init__(
        self, *, device: str = "cpu", dtype: str = "float32", preset: str = "medium", workers: int = 1
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        import cv2

        presets = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }
        if preset not in presets:
            raise ModelError(f"dis: unknown preset {preset!r}; choose one of {', '.join(self.PRESETS)}")
        if workers < 1:
            raise ModelError(f"dis: workers must be at least 1, got {workers}")
        self.preset = preset
        self._preset_id = presets[preset]
        # workers > 1 solves a window's pairs on that many threads (OpenCV releases the GIL in calc);
        # worth it where cores are idle, e.g. beside a GPU. An OpenCV DIS object keeps per-solve
        # buffers, so each thread gets its own.
        self.workers = workers
        self._local = threading.local()

    def _dis(self) -> Any:
        dis = getattr(self._local, "dis", None)
        if dis is None:
            import cv2

            dis = self._local.dis = cv2.DISOpticalFlow_create(self._preset_id)
        return dis

    def _solve(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        # DIS refuses images smaller than its patch; replicate-pad tiny frames and crop back
        dis = self._dis()
        h, w = first.shape
        min_side = 2 * dis.getPatchSize()
        ph, pw = max(0, min_side - h), max(0, min_side - w)
        if ph or pw:
            first = np.pad(first, ((0, ph), (0, pw)), mode="edge")
            second = np.pad(second, ((0, ph), (0, pw)), mode="edge")
        flow = dis.calc(first, second, None)  # [H, W, 2]
        return flow[:h, :w]

    def _solve_all(self, jobs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        if self.workers == 1 or len(jobs) < 2:
            return super()._solve_all(jobs)
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            return list(pool.map(lambda job: self._solve(*job), jobs))


class FarnebackEstimator(OpenCVPairwiseEstimator):
    """OpenCV Farneback polynomial-expansion flow with OpenCV's documented example parameters."""

    name = "farneback"

    def _solve(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.calcOpticalFlowFarneback(
            first, second, None, pyr_scale=0.5, levels=5, winsize=15, iterations=3, poly_n=5,
            poly_sigma=1.2, flags=0,
        )  # [H, W, 2]


class DeepFlowEstimator(OpenCVPairwiseEstimator):
    """OpenCV contrib DeepFlow (needs opencv-contrib: cv2.optflow)."""

    name = "deepflow"
    work_bytes_per_pixel = 384

    def __init__(self, *, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(device=device, dtype=dtype)
        import cv2

        if not hasattr(cv2, "optflow"):
            raise ModelError("deepflow needs cv2.optflow; install opencv-contrib-python-headless")
        self._deepflow = cv2.optflow.createOptFlow_DeepFlow()

    def _solve(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self._deepflow.calc(first, second, None)  # [H, W, 2]


_CLASSES: dict[str, type[OpenCVPairwiseEstimator]] = {
    "dis": DISEstimator,
    "farneback": FarnebackEstimator,
    "deepflow": DeepFlowEstimator,
}


def make_classical(
    *, name: str, device: str = "cpu", dtype: str = "float32", weights: str | None = None, **_: Any
) -> OpenCVPairwiseEstimator:
    """The registry's factory for the OpenCV methods (``name``: dis, farneback or deepflow)."""
    if weights is not None:
        raise ModelError(f"{name} is a classical method and takes no weights; drop `weights` {weights}",
                         param="weights")
    return _CLASSES[name](device=device, dtype=dtype)
