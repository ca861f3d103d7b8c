"""Run a flow estimator over a plate: windows, padding, tiling, memory and threads.

Windows are anchored to absolute frame numbers. With a window of F frames (step S = F - 1 pairs),
the pair (n, n+1) belongs to the window that starts at ``a = n - (n mod S)`` and holds frames
``a .. a+S``, cut only where the plate itself starts or ends. A render-farm chunk therefore computes
exactly the windows an unchunked render would, reading the neighbour frames just outside its range,
and chunked output equals unchunked output.

Memory: with a ``max_memory`` budget the engine asks the estimator for its conservative working
memory (:meth:`~daflow_vfx.estimators.base.FlowEstimator.memory_estimate`) and, when a whole frame
does not fit, picks the largest tile that does and uses the overlapping, feather-blended tiling. A
CUDA out-of-memory error during a window retries that window in tiles, halving the tile until it
fits (or a clean :class:`DeviceError` at the smallest tile).

Vector detail: with ``detail`` below 1 each window is area-filtered down to that fraction of the plate's
size first (:mod:`daflow_vfx.detail`), and everything above happens on the reduced frames: padding to
the estimator's stride, tiles and ``tile_pad`` (in the pixels the estimator sees), the memory estimate.
The flows come back bilinearly upsampled to the plate's size, the vectors scaled to plate pixels.

Devices, dtypes, memory sizes and thread limits are in :mod:`daflow_vfx.devices`; what a command does
with the engine (files in, files out) is in :mod:`daflow_vfx.jobs`. Nothing heavy is imported at module
level: torch only when a device has to be resolved.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from daflow_vfx.detail import downscale_frames, reduced_size, upscale_flows
from daflow_vfx.devices import (
    check_engine_settings,
    device_for_model,
    format_memory_size,
    is_out_of_memory,
    release_device_memory,
    resolve_device,
    thread_limit,
)
from daflow_vfx.errors import (
    DeviceError,
    FrameSizeError,
    MissingFramesError,
    SequenceTooShortError,
    UsageError,
)
from daflow_vfx.estimators import DEFAULT_MODEL, FlowEstimator, WindowFlows, load_estimator

log = logging.getLogger(__name__)

__all__ = [
    "MIN_TILE",
    "FlowEngine",
    "FrameFlows",
    "estimate_flow",
    "plan_windows",
    "window_anchor",
]


# --------------------------------------------------------------------------------------------------
# windows


def window_anchor(n: int, window: int) -> int:
    """First frame of the window that owns the pair (n, n+1); independent of any chunk."""
    step = max(window - 1, 1)
    return n - (n % step)  # Python's % floors, so negative frame numbers anchor the same way


def plan_windows(frames: Iterable[int], *, first: int, last: int, window: int) -> list[list[int]]:
    """The windows (lists of consecutive frame numbers) needed for the forward and backward flow of
    ``frames`` on a plate spanning ``first .. last``, in ascending order."""
    step = max(window - 1, 1)
    pairs: set[int] = set()  # pair n means (n, n+1)
    for f in frames:
        if f < last:
            pairs.add(f)
        if f > first:
            pairs.add(f - 1)
    anchors = sorted({window_anchor(p, window) for p in pairs})
    return [list(range(max(a, first), min(a + step, last) + 1)) for a in anchors]


@dataclass
class FrameFlows:
    """The flows of one plate frame, ``.flo`` convention (pixels, +x right, +y down)."""

    frame: int
    forward: np.ndarray | None  # [H, W, 2] frame -> frame+1; None on the plate's last frame
    backward: np.ndarray | None  # [H, W, 2] frame -> frame-1; None on the plate's first frame
    confidence_forward: np.ndarray | None = None  # [H, W] in [0, 1]
    confidence_backward: np.ndarray | None = None  # [H, W] in [0, 1]

    @property
    def source_frames(self) -> tuple[int | None, int, int | None]:
        """(previous, this, next) plate frames the flows came from; None where there is no neighbour."""
        return (
            self.frame - 1 if self.backward is not None else None,
            self.frame,
            self.frame + 1 if self.forward is not None else None,
        )


# --------------------------------------------------------------------------------------------------
# padding and tiling


def _pad_to_stride(frames: np.ndarray, stride: int) -> np.ndarray:
    """Replicate-pad ``[F, H, W, C]`` on the bottom and right so H and W are multiples of ``stride``."""
    h, w = frames.shape[1:3]
    ph, pw = (-h) % stride, (-w) % stride
    if ph == 0 and pw == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def _tile_spans(size: int, tile: int) -> list[tuple[int, int]]:
    """Split ``0 .. size`` into near-equal core spans of at most ``tile`` pixels."""
    count = max(1, math.ceil(size / tile))
    edges = [round(i * size / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _tile_region(size: int, tile: int, pad: int) -> int:
    """The largest extent an estimator sees along one axis when ``size`` is cut into ``tile`` tiles
    with ``pad`` pixels of overlap: the longest core span plus the overlap, at most the whole axis."""
    core = max(end - start for start, end in _tile_spans(size, tile))
    return min(size, core + 2 * pad)


def _round_up(value: int, stride: int) -> int:
    return -(-value // stride) * stride


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """1-D feather weights ``[length]``: 1 over the core, falling linearly across the overlap margins.

    The margin pixels nearest the tile edge get the least weight because the estimator sees the
    least context there; every pixel lies in some tile's core, so the weights never sum to zero.
    """
    weights = np.ones(length, dtype=np.float32)
    if before:
        weights[:before] = (np.arange(before, dtype=np.float32) + 0.5) / (before + 0.5)
    if after:
        weights[length - after:] = ((np.arange(after, dtype=np.float32) + 0.5) / (after + 0.5))[::-1]
    return weights


# --------------------------------------------------------------------------------------------------
# the engine


MIN_TILE = 64  # pixels: the smallest tile automatic tiling and the out-of-memory retry go down to


class FlowEngine:
    """Runs an estimator over windows of frames with padding, tiling and threaded plate reading.

    ``estimator`` is a :class:`FlowEstimator` or a registered model name (loaded for ``device`` and
    ``dtype``). ``tile`` (pixels) splits large frames into tiles of at most that size, each seen with
    ``tile_pad`` pixels of overlap on every side and blended back with feathered weights.

    ``max_memory`` (bytes, or a size such as ``"8G"``) bounds one estimator call's working memory
    (:meth:`FlowEstimator.memory_estimate`: GPU memory on CUDA; on the CPU the engine's own whole-frame
    buffers are subtracted first): a frame that does not fit is tiled with the largest tile that
    does, never larger than ``tile``. ``threads`` sets torch's and OpenCV's CPU threads while the
    engine computes and restores them afterwards. ``compile`` asks the estimator to
    ``torch.compile`` its network (a warning where it has none). ``detail`` in (0, 1] computes the flow
    at that fraction of the frames' size and upsamples it (see the module's notes); ``tile``,
    ``tile_pad`` and the memory estimate then count the reduced pixels the estimator sees.
    """

    def __init__(
        self,
        estimator: FlowEstimator | str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        tile: int | None = None,
        tile_pad: int = 32,
        prefetch: int = 4,
        weights: str | None = None,
        iters: int | None = None,
        max_memory: int | str | None = None,
        threads: int | None = None,
        compile: bool = False,
        detail: float = 1.0,
    ) -> None:
        self.device = resolve_device(device)
        self.max_memory = check_engine_settings(dtype=dtype, tile=tile, tile_pad=tile_pad, threads=threads,
                                                max_memory=max_memory, detail=detail)
        self.detail = float(detail)
        self.dtype = dtype
        self.threads = None if threads is None else int(threads)
        if isinstance(estimator, str):
            estimator = load_estimator(estimator, device=self.device, dtype=self.dtype, weights=weights,
                                       iters=iters)
        self.estimator = estimator
        self.tile = None if tile is None else int(tile)
        self.tile_pad = int(tile_pad)
        self.prefetch = max(1, int(prefetch))
        # (frames, H, W) of the plate's windows -> tile in use, in the reduced pixels the estimator sees
        self._tiles: dict[tuple[int, int, int], int | None] = {}
        if compile and not self.estimator.enable_compile():
            log.warning("%s has no network to compile; --compile is ignored", self.estimator.name)

    # -- memory -----------------------------------------------------------------------------------

    @property
    def _min_tile(self) -> int:
        floor = MIN_TILE if self.tile is None else min(MIN_TILE, self.tile)
        return max(floor, self.estimator.stride)

    def _on_gpu(self) -> bool:
        return str(getattr(self.estimator, "device", self.device)).startswith("cuda")

    def host_bytes(self, frames: int, height: int, width: int) -> int:
        """Host memory the engine itself holds for a window of ``height`` x ``width`` frames, whatever
        the tile: the window and its float32 copy, the prefetched frames, and the whole-frame tiling
        accumulators (forward, backward, two confidences, the weight sum). Below full detail, also the
        reduced window and the reduced flows the full-size ones are upsampled from."""
        own = height * width * (4 * 3 * (2 * frames + self.prefetch) + 4 * (frames - 1) * 6 + 4)
        h, w = reduced_size(height, width, self.detail)
        if (h, w) != (height, width):
            own += h * w * (4 * 3 * frames + 4 * (frames - 1) * 6 + 4)
        return own

    def _needs(self, frames: int, height: int, width: int, tile: int | None) -> int | None:
        """The estimator's memory for the largest piece ``tile`` cuts a frame into (None: no idea)."""
        if tile is not None:
            height = _tile_region(height, tile, self.tile_pad)
            width = _tile_region(width, tile, self.tile_pad)
        stride = self.estimator.stride
        return self.estimator.memory_estimate(frames=frames, height=_round_up(height, stride),
                                              width=_round_up(width, stride))

    def _plan_tile(self, frames: int, height: int, width: int) -> int | None:
        """The tile for windows of this (plate) size: ``tile``, or under ``max_memory`` the largest that
        fits, in reduced pixels."""
        key = (frames, height, width)
        if key not in self._tiles:
            self._tiles[key] = self._choose_tile(frames, height, width)
        return self._tiles[key]

    def _choose_tile(self, frames: int, plate_h: int, plate_w: int) -> int | None:
        if self.max_memory is None:
            return self.tile
        budget = self.max_memory
        if not self._on_gpu():
            budget -= self.host_bytes(frames, plate_h, plate_w)
        name = self.estimator.name
        # the estimator only ever sees the reduced frames: tiles are cut from those
        height, width = reduced_size(plate_h, plate_w, self.detail)
        size = f"{plate_w}x{plate_h}"
        if (height, width) != (plate_h, plate_w):
            size += f" (computed at {width}x{height}, `detail` {self.detail:g})"
        first = self._needs(frames, height, width, self.tile)
        if first is None:
            log.warning("%s cannot estimate its memory use; --max-memory is not applied", name)
            return self.tile
        if first <= budget:
            return self.tile
        step = max(8, self.estimator.stride)
        largest = min(self.tile or max(height, width), max(height, width))
        candidates = range(largest - largest % step, self._min_tile - 1, -step)
        for tile in candidates:
            need = self._needs(frames, height, width, tile)
            if need is not None and need <= budget:
                log.info("%s: %s frames need about %s, over --max-memory %s: %d-px tiles", name, size,
                         format_memory_size(first), format_memory_size(self.max_memory), tile)
                return tile
        smallest = self._needs(frames, height, width, self._min_tile) or 0
        raise UsageError(f"`max_memory` {format_memory_size(self.max_memory)} is too little for {name} on "
                         f"{size} frames: even {self._min_tile}-px tiles need about "
                         f"{format_memory_size(smallest + self.max_memory - budget)}; raise `max_memory` or "
                         "lower `detail`", param=("max_memory", "detail"))

    # -- one window -------------------------------------------------------------------------------

    def estimate_window(self, frames: np.ndarray, *, label: str | None = None) -> WindowFlows:
        """Flows between neighbours of ``frames`` ``[F, H, W, 3]`` (display [0, 1]) at any size.

        ``label`` names the window in errors (``frames 1001-1003``). A CUDA out-of-memory error
        retries the window in tiles half the size (the last try at :data:`MIN_TILE` pixels). Below full
        ``detail`` the estimator sees reduced frames and the flows are upsampled to ``[H, W]``.
        """
        frames = np.ascontiguousarray(frames, dtype=np.float32)  # [F, H, W, 3]
        if frames.ndim != 4 or frames.shape[-1] != 3 or not 2 <= frames.shape[0] <= self.estimator.window:
            raise UsageError(f"{self.estimator.name}: a window takes 2 to {self.estimator.window} RGB frames "
                             f"[F, H, W, 3], got shape {tuple(frames.shape)}")
        count, h, w = frames.shape[:3]
        size = reduced_size(h, w, self.detail)
        with thread_limit(self.threads):
            # resized before padding, so the pad to the stride is of the reduced frames, as the model needs
            seen = frames if size == (h, w) else downscale_frames(frames, size)  # [F, h', w', 3]
            tile = self._plan_tile(count, h, w)
            while True:
                try:
                    result = self._estimate_tile(seen, tile)
                    break
                except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                    if not is_out_of_memory(exc):
                        raise
                    failed = tile
                # outside the except block, so the failed call's tensors are unreferenced
                release_device_memory()
                tile = self._after_out_of_memory(failed, count, h, w, label)
            return result if seen is frames else upscale_flows(result, h, w)  # [F-1, H, W, ...]

    def _after_out_of_memory(self, failed: int | None, count: int, h: int, w: int, label: str | None) -> int:
        """The next, halved tile after an out-of-memory error (kept for later windows of this size)."""
        largest = max(reduced_size(h, w, self.detail))  # tiles are in the pixels the estimator sees
        current = largest if failed is None else min(failed, largest)
        where = label or f"a window of {count} {w}x{h} frames"
        device = getattr(self.estimator, "device", self.device)
        smaller = max(current // 2, self._min_tile)
        if current <= self._min_tile:
            raise DeviceError(f"{where}: out of memory on {device} even in {current}-px tiles; give "
                              "`max_memory` (the memory free on the device) or a smaller `tile`, free the "
                              "device of other work, or use `dtype` bfloat16",
                              param=("max_memory", "tile", "dtype"))
        log.warning("%s: out of memory on %s; retrying in %d-px tiles", where, device, smaller)
        self._tiles[(count, h, w)] = smaller
        return smaller

    def _estimate_tile(self, frames: np.ndarray, tile: int | None) -> WindowFlows:
        h, w = frames.shape[1:3]
        if tile is not None and (h > tile or w > tile):
            return self._estimate_tiled(frames, tile)
        return self._estimate_padded(frames)

    def _estimate_padded(self, frames: np.ndarray) -> WindowFlows:
        h, w = frames.shape[1:3]
        result = self.estimator.estimate(_pad_to_stride(frames, self.estimator.stride))

        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[:, :h, :w], dtype=np.float32)

        return WindowFlows(
            forward=crop(result.forward),  # [F-1, H, W, 2]
            backward=crop(result.backward),  # [F-1, H, W, 2]
            confidence_forward=crop(result.confidence_forward),  # [F-1, H, W]
            confidence_backward=crop(result.confidence_backward),
        )

    def _estimate_tiled(self, frames: np.ndarray, tile: int) -> WindowFlows:
        pairs, h, w = frames.shape[0] - 1, frames.shape[1], frames.shape[2]
        pad = self.tile_pad
        acc: dict[str, np.ndarray] = {}
        weight_sum = np.zeros((h, w), dtype=np.float32)  # [H, W]
        for y0, y1 in _tile_spans(h, tile):
            for x0, x1 in _tile_spans(w, tile):
                ey0, ey1, ex0, ex1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
                part = self._estimate_padded(frames[:, ey0:ey1, ex0:ex1])
                weight = np.outer(_ramp(ey1 - ey0, y0 - ey0, ey1 - y1), _ramp(ex1 - ex0, x0 - ex0, ex1 - x1))
                weight_sum[ey0:ey1, ex0:ex1] += weight
                for key in ("forward", "backward", "confidence_forward", "confidence_backward"):
                    value = getattr(part, key)
                    if value is None:
                        continue
                    if key not in acc:
                        acc[key] = np.zeros((pairs, h, w, *value.shape[3:]), dtype=np.float32)
                    wgt = weight if value.ndim == 3 else weight[..., None]
                    acc[key][:, ey0:ey1, ex0:ex1] += value * wgt
        for value in acc.values():
            value /= weight_sum if value.ndim == 3 else weight_sum[..., None]
        return WindowFlows(
            forward=acc["forward"],
            backward=acc["backward"],
            confidence_forward=acc.get("confidence_forward"),
            confidence_backward=acc.get("confidence_backward"),
        )

    def estimate_pair(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """Forward flow ``[H, W, 2]`` from ``frame1`` to ``frame2`` (each ``[H, W, 3]`` display [0, 1])."""
        return self.estimate_window(np.stack([frame1, frame2]).astype(np.float32, copy=False)).forward[0]

    # -- a sequence -------------------------------------------------------------------------------

    def flows(
        self,
        read: Callable[[int], np.ndarray],
        frames: Iterable[int],
        *,
        first: int,
        last: int,
    ) -> Iterator[FrameFlows]:
        """Yield :class:`FrameFlows` for ``frames`` (ascending) of a plate spanning ``first .. last``.

        ``read(frame)`` returns the display-referred ``[H, W, 3]`` frame; it runs on a bounded
        prefetch thread whose errors are re-raised here. Frames just outside ``frames`` are read
        when a window needs them.
        """
        from daflow_vfx.io.threads import PrefetchReader

        wanted = sorted(set(frames))
        if last <= first:
            raise SequenceTooShortError(f"the plate has one frame ({first}); flow needs at least two frames")
        outside = [f for f in wanted if not first <= f <= last]
        if outside:
            raise MissingFramesError(f"frames {outside[:5]} are outside the plate's range {first}-{last}; "
                                     "fix the frame list", missing=outside)
        if not wanted:
            return
        windows = plan_windows(wanted, first=first, last=last, window=self.estimator.window)
        needed_pairs = {p for f in wanted for p in (f, f - 1) if first <= p < last}
        read_order = sorted({f for win in windows for f in win})

        forward: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # n -> flow n -> n+1
        backward: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # n -> flow n+1 -> n
        cache: dict[int, np.ndarray] = {}
        next_out = 0
        with PrefetchReader(read, read_order, depth=self.prefetch) as reader:
            stream = iter(reader)
            for win in windows:
                while any(f not in cache for f in win):
                    frame, image = next(stream)
                    cache[frame] = image
                stack = [cache[f] for f in win]
                for f, image in zip(win[1:], stack[1:], strict=True):
                    if image.shape != stack[0].shape:
                        raise FrameSizeError(f"frame {f} is {image.shape[1]}x{image.shape[0]} but frame "
                                             f"{win[0]} is {stack[0].shape[1]}x{stack[0].shape[0]}; "
                                             "every frame of a plate must have the same size")
                result = self.estimate_window(np.stack(stack), label=f"frames {win[0]}-{win[-1]}")
                for i, n in enumerate(win[:-1]):
                    if n not in needed_pairs:
                        continue
                    forward[n] = (result.forward[i], _index(result.confidence_forward, i))
                    backward[n] = (result.backward[i], _index(result.confidence_backward, i))
                for f in [f for f in cache if f < win[-1]]:
                    del cache[f]  # later windows start at win[-1] or after
                while next_out < len(wanted):
                    f = wanted[next_out]
                    if (f < last and f not in forward) or (f > first and f - 1 not in backward):
                        break  # a later window completes this frame
                    fwd = forward.pop(f, None) if f < last else None
                    bwd = backward.pop(f - 1, None) if f > first else None
                    yield FrameFlows(
                        frame=f,
                        forward=None if fwd is None else fwd[0],
                        backward=None if bwd is None else bwd[0],
                        confidence_forward=None if fwd is None else fwd[1],
                        confidence_backward=None if bwd is None else bwd[1],
                    )
                    next_out += 1


def _index(array: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if array is None else array[i]


# --------------------------------------------------------------------------------------------------
# one pair, from Python


def _as_display_frame(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise UsageError(f"`{name}` must be an RGB array [H, W, 3], got shape {array.shape}", param=name)
    if np.issubdtype(array.dtype, np.integer):
        # integer pixels: scale by the type's own range so uint8 and uint16 both land in [0, 1]
        return array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    return array.astype(np.float32, copy=False)


def estimate_flow(
    frame1: np.ndarray,
    frame2: np.ndarray,
    *,
    model: str = DEFAULT_MODEL,
    device: str | None = None,
) -> np.ndarray:
    """Optical flow from ``frame1`` to ``frame2``.

    Frames are float32 RGB ``[H, W, 3]``, display-referred, in [0, 1]. Returns float32 ``[H, W, 2]`` in
    pixels, +x right and +y down (``.flo`` convention): pixel (x, y) of ``frame1`` is at
    ``(x + u, y + v)`` in ``frame2``. ``device`` None means ``auto`` (CUDA when present). The model is
    loaded on every call; to run many pairs, build one :class:`FlowEngine` and call ``estimate_pair``.
    """
    a = _as_display_frame(frame1, "frame1")
    b = _as_display_frame(frame2, "frame2")
    if a.shape != b.shape:
        raise UsageError(f"`frame1` is {a.shape[1]}x{a.shape[0]} but `frame2` is {b.shape[1]}x{b.shape[0]}; "
                         "pass two frames of the same size", param=("frame1", "frame2"))
    resolved = device_for_model(model, device)
    # No module-level cache of loaded models (no global state): for many pairs, keep a FlowEngine.
    return FlowEngine(model, device=resolved).estimate_pair(a, b)
