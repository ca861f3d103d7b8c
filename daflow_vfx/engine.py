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

Batches and overlap: a sequence (:meth:`FlowEngine.flows`) runs in :mod:`daflow_vfx.pipeline`, where
reading, the estimator and the caller's writing overlap and up to ``batch_windows`` windows share one
estimator call; padding and the tiles' blending are in :mod:`daflow_vfx.tiling`.

Devices, dtypes, memory sizes and thread limits are in :mod:`daflow_vfx.devices`; what a command does
with the engine (files in, files out) is in :mod:`daflow_vfx.jobs`. Nothing heavy is imported at module
level: torch only when a device has to be resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from daflow_vfx.detail import downscale_frames, reduced_size, upscale_flows
from daflow_vfx.devices import (
    check_engine_settings,
    device_for_model,
    dtype_that_runs,
    format_memory_size,
    is_out_of_memory,
    release_device_memory,
    resolve_device,
    thread_limit,
)
from daflow_vfx.errors import DeviceError, UsageError
from daflow_vfx.estimators import DEFAULT_MODEL, FlowEstimator, WindowFlows, load_estimator
from daflow_vfx.numerics import AUTO_DTYPE
from daflow_vfx.tiling import blend_tiles, pad_to_stride, round_up, tile_region

log = logging.getLogger(__name__)

__all__ = [
    "MIN_TILE",
    "check_batch_windows",
    "FlowEngine",
    "FrameFlows",
    "estimate_flow",
    "plan_windows",
    "window_anchor",
]


# --------------------------------------------------------------------------------------------------
# windows


def check_batch_windows(value: int) -> int:
    """``batch_windows`` as an int of at least 1; a :class:`UsageError` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UsageError(f"`batch_windows` must be a whole number of windows, 1 or more, got {value!r}",
                         param="batch_windows")
    return int(value)


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

    ``batch_windows`` puts up to that many windows of a sequence into one estimator call where memory
    allows (:meth:`launch_windows`; frames that are tiled go one window at a time). Each window's flow
    is the one it gets alone, up to float32 summation order in batched kernels (about 1e-6 px).
    ``compile_refinement`` compiles a learned model's refinement iteration (CUDA graphs on CUDA; opt-in,
    its speed is not measured yet).
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
        batch_windows: int = 1,
        compile_refinement: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.batch_windows = check_batch_windows(batch_windows)
        self.max_memory = check_engine_settings(dtype=dtype, tile=tile, tile_pad=tile_pad, threads=threads,
                                                max_memory=max_memory, detail=detail)
        self.detail = float(detail)
        if dtype == AUTO_DTYPE:
            # what runs: a built estimator's own precision, else what this device computes natively
            dtype = (dtype_that_runs(estimator, dtype, self.device) if isinstance(estimator, str)
                     else str(getattr(estimator, "dtype", "float32")).removeprefix("torch."))
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
        # (frames, H, W) of the plate's windows -> how many go into one estimator call
        self._batches: dict[tuple[int, int, int], int] = {}
        if compile and not self.estimator.enable_compile():
            log.warning("%s has no network to compile; --compile is ignored", self.estimator.name)
        if compile_refinement and not self.estimator.enable_refinement_compile():
            log.warning("%s has no refinement loop to compile; --compile-refinement is ignored",
                        self.estimator.name)

    # -- memory -----------------------------------------------------------------------------------

    @property
    def _min_tile(self) -> int:
        floor = MIN_TILE if self.tile is None else min(MIN_TILE, self.tile)
        return max(floor, self.estimator.stride)

    def _on_gpu(self) -> bool:
        return str(getattr(self.estimator, "device", self.device)).startswith("cuda")

    @property
    def asynchronous(self) -> bool:
        """Whether the estimator's results arrive after :meth:`launch_windows` returns (a GPU), so a
        sequence keeps one batch in flight while it reads and queues the next."""
        return self._on_gpu()

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
            height = tile_region(height, tile, self.tile_pad)
            width = tile_region(width, tile, self.tile_pad)
        stride = self.estimator.stride
        return self.estimator.memory_estimate(frames=frames, height=round_up(height, stride),
                                              width=round_up(width, stride))

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
        result = self.estimator.estimate(pad_to_stride(frames, self.estimator.stride))

        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[:, :h, :w], dtype=np.float32)

        return WindowFlows(
            forward=crop(result.forward),  # [F-1, H, W, 2]
            backward=crop(result.backward),  # [F-1, H, W, 2]
            confidence_forward=crop(result.confidence_forward),  # [F-1, H, W]
            confidence_backward=crop(result.confidence_backward),
        )

    def _estimate_tiled(self, frames: np.ndarray, tile: int) -> WindowFlows:
        return blend_tiles(self._estimate_padded, frames, tile=tile, pad=self.tile_pad)

    # -- several windows at once --------------------------------------------------------------------

    def _batch_size(self, count: int, h: int, w: int) -> int:
        """How many untiled windows of ``count`` frames of ``h`` x ``w`` go into one call: up to
        ``batch_windows``, and under ``max_memory`` only as many as the estimator's memory estimate says
        fit (the weights counted once per window: conservative)."""
        key = (count, h, w)
        if key in self._batches:
            return self._batches[key]
        size = self.batch_windows
        if size > 1 and self.max_memory is not None:
            height, width = reduced_size(h, w, self.detail)
            need = self._needs(count, height, width, None)
            budget = self.max_memory
            if need is None:
                size = 1
            else:
                while size > 1:
                    host = 0 if self._on_gpu() else size * self.host_bytes(count, h, w)
                    if size * need <= budget - host:
                        break
                    size -= 1
        self._batches[key] = size
        return size

    def launch_windows(self, windows: list[np.ndarray], *,
                       labels: list[str] | None = None) -> Callable[[], list[WindowFlows]]:
        """Start the flows of ``windows`` (each ``[F, H, W, 3]``, one shape); returns a function that
        waits for them and returns one :class:`WindowFlows` per window, as :meth:`estimate_window` would.

        As many as fit go into one estimator call (:meth:`FlowEstimator.launch`); on a GPU the call
        returns while the device works (a single window too). A batch that runs out of device memory is
        redone one window at a time (with :meth:`estimate_window`'s own retry in tiles), and that size is
        not batched again. Tiled frames go one window at a time, through :meth:`estimate_window`.
        """
        labels = labels or [None] * len(windows)  # type: ignore[list-item]
        count, h, w = windows[0].shape[:3]
        if self._plan_tile(count, h, w) is not None:
            results = self._one_by_one(windows, labels)
            return lambda: results
        size = self._batch_size(count, h, w)
        finishes = [self._launch_batch(windows[i:i + size], labels[i:i + size])
                    for i in range(0, len(windows), size)]
        return lambda: [result for finish in finishes for result in finish()]

    def _one_by_one(self, windows: list[np.ndarray], labels: list[str | None]) -> list[WindowFlows]:
        return [self.estimate_window(win, label=label) for win, label in zip(windows, labels, strict=True)]

    def _launch_batch(self, windows: list[np.ndarray],
                      labels: list[str | None]) -> Callable[[], list[WindowFlows]]:
        count, h, w = windows[0].shape[:3]
        size = reduced_size(h, w, self.detail)
        with thread_limit(self.threads):
            stack = np.stack(windows).astype(np.float32, copy=False)  # [B, F, H, W, 3]
            if size != (h, w):
                stack = np.stack([downscale_frames(win, size) for win in stack])  # [B, F, h', w', 3]
            hh, ww = stack.shape[2:4]
            padded = pad_to_stride(stack, self.estimator.stride)  # [B, F, H', W', 3]
            if len(windows) > 1:
                log.debug("%s: %d windows of %dx%d frames in one call", self.estimator.name, len(windows),
                          w, h)
            try:
                finish = self.estimator.launch(padded)
                failed = False
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                failed = True
        if failed:
            # outside the except block, so the failed call's tensors are unreferenced
            release_device_memory()
            if len(windows) > 1:
                log.warning("%d windows of %dx%d frames: out of memory together; computing them one at a "
                            "time", len(windows), w, h)
            else:
                # one whole window did not fit: straight to halved tiles, as estimate_window would retry
                self._after_out_of_memory(None, count, h, w, labels[0])
            self._batches[(count, h, w)] = 1
            results = self._one_by_one(windows, labels)
            return lambda: results

        def crop(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[:, :hh, :ww], dtype=np.float32)

        def collect() -> list[WindowFlows]:
            out = []
            with thread_limit(self.threads):
                for part in finish():
                    flows = WindowFlows(forward=crop(part.forward),  # [F-1, h', w', 2]
                                        backward=crop(part.backward),
                                        confidence_forward=crop(part.confidence_forward),  # [F-1, h', w']
                                        confidence_backward=crop(part.confidence_backward))
                    out.append(flows if size == (h, w) else upscale_flows(flows, h, w))  # [F-1, H, W, ...]
            return out

        return collect

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
        when a window needs them. Up to ``batch_windows`` windows go into one estimator call, and on a
        GPU one call stays in flight while the next is read and queued (:mod:`daflow_vfx.pipeline`).
        """
        from daflow_vfx.pipeline import flow_sequence

        return flow_sequence(self, read, frames, first=first, last=last)


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
