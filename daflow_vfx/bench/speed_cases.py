"""One measurement of ``bench speed``: a (model, size) case or the windowed-reuse run, and its memory probe.

Specs and results are plain dataclasses, so a case travels to a worker process as JSON and back
(:mod:`.speed_worker`); :mod:`.speed` plans the cases and :mod:`.speed_report` writes the table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..estimators.base import FlowEstimator
from ..numerics import autocast_epe, fixed_window
from ..registry import NETWORKS, load_estimator
from .torchvision_raft import TorchvisionRAFT

RAFT_MODELS = ("raft_small", "raft_large")
# The fixed window of the numerics check: 3 frames of this size (height, width), or the case's size
# where that is smaller; large enough that the backbone, the prior and refinement all take part.
NUMERICS_SIZE = (192, 320)


def proc_kib(key: str, path: str = "/proc/self/status") -> int | None:
    """A ``key:  N kB`` value of a /proc file (this process's status by default); None where unknown."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) to the current RSS; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak memory of the code run between :meth:`start` and :meth:`stop`, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only, which
    is what a memory budget has to hold). CPU: the process's peak resident set (VmHWM), reset at the
    start by writing ``5`` to ``/proc/self/clear_refs``. ``ru_maxrss`` is no use here: it never
    decreases, so every case after the largest would repeat its peak. Even a reset peak understates
    a case that runs after others in the same process, because the allocator keeps memory that
    earlier cases freed and the new case reuses it without raising RSS; that is why
    :func:`run_speed` measures each case in a fresh subprocess by default (``isolate``).
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.device = device
        self.baseline = 0
        self.reset_ok = True

    @property
    def kind(self) -> str:
        return "cuda" if self.cuda else "rss"

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            self.reset_ok = _reset_peak_rss()
            self.baseline = 1024 * (proc_kib("VmRSS") or 0)

    def stop(self) -> tuple[int | None, int | None]:
        """(peak, peak minus the memory in use at :meth:`start`), None where unknown."""
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return peak, peak - self.baseline
        hwm = proc_kib("VmHWM")
        if hwm is None:
            return None, None
        peak = 1024 * hwm
        # without a reset the peak may include model building; the delta is then an upper bound
        return peak, max(0, peak - self.baseline)


# --------------------------------------------------------------------------------------------------
# one case


@dataclass(frozen=True, kw_only=True)
class CaseSpec:
    """One (model, size) measurement; plain values so it travels to a worker process as JSON."""

    model: str
    width: int
    height: int
    device: str = "cpu"
    dtype: str = "float32"
    iters: int = 12
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None
    torchvision_module: str = "torchvision"


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    model: str
    width: int
    height: int
    status: str  # "ok", "skipped", "unavailable" or "failed"
    reason: str = ""
    weights: str = ""  # "trained", "random weights" or "-" (classical)
    dtype: str = ""
    pairs_per_call: int = 0
    seconds: list[float] = field(default_factory=list)  # each timed call
    pairs_per_s: float | None = None
    peak_bytes: int | None = None
    delta_bytes: int | None = None
    memory: str = ""  # "rss" or "cuda"
    threads: int | None = None
    note: str = ""
    # reduced-precision rows: |flow - float32 flow| on the fixed numerics window, mean and max, px
    epe_vs_float32: float | None = None
    epe_max_vs_float32: float | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def ms_per_pair(self) -> float | None:
        return None if not self.pairs_per_s else 1000.0 / self.pairs_per_s


def set_threads(threads: int | None) -> int:
    import cv2
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    return torch.get_num_threads()


def synthetic_frames(count: int, width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """``[count, H, W, 3]`` float32 display [0, 1]: a smooth random texture moving 3 px right, 2 px down
    per frame (the content barely matters for timing, but it keeps the flow methods honest)."""
    import cv2

    rng = np.random.default_rng(seed)
    margin = 4 * count
    base = rng.random((height + margin, width + margin, 3), dtype=np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    lo, hi = float(base.min()), float(base.max())
    base = (base - lo) / max(hi - lo, 1e-6)
    frames = [np.roll(base, (2 * i, 3 * i), axis=(0, 1))[:height, :width] for i in range(count)]
    return np.ascontiguousarray(np.stack(frames), dtype=np.float32)


def build_estimator(spec: CaseSpec) -> FlowEstimator:
    """The estimator a case times (random weights for learned models without trained weights)."""
    if spec.model in RAFT_MODELS:
        return TorchvisionRAFT(
            arch=spec.model, device=spec.device, iters=spec.iters, module=spec.torchvision_module
        )
    return load_estimator(
        spec.model, device=spec.device, dtype=spec.dtype, iters=spec.iters, allow_random=True
    )


def _weights_label(estimator: FlowEstimator, model: str) -> str:
    if model in NETWORKS:
        return "trained" if estimator.weights_sha256 else "random weights"
    return "random weights" if model in RAFT_MODELS else "-"


def measure_case(spec: CaseSpec) -> CaseResult:
    """Build the model, warm up, time ``repeats`` calls and take the median; memory over all calls."""
    from ..engine import FlowEngine

    threads = set_threads(spec.threads)
    estimator = build_estimator(spec)
    engine = FlowEngine(estimator, device=spec.device)
    frames = synthetic_frames(estimator.window, spec.width, spec.height)  # [F, H, W, 3]
    pairs = frames.shape[0] - 1
    on_gpu = spec.device.startswith("cuda") and spec.model != "dis"
    probe = MemoryProbe(spec.device if on_gpu else "cpu")
    probe.start()
    for _ in range(spec.warmup):
        engine.estimate_window(frames)
    seconds = []
    for _ in range(spec.repeats):
        t0 = time.perf_counter()
        engine.estimate_window(frames)  # returns numpy, so CUDA work has finished when it returns
        seconds.append(time.perf_counter() - t0)
    peak, delta = probe.stop()
    # After the timing and the memory probe, so neither includes the check's two extra windows.
    numerics = None
    if spec.dtype != "float32" and hasattr(estimator, "estimate_as"):
        window = fixed_window(frames=estimator.window, height=min(spec.height, NUMERICS_SIZE[0]),
                              width=min(spec.width, NUMERICS_SIZE[1]))
        numerics = autocast_epe(estimator, dtype=spec.dtype, frames=window)
    notes = []
    if spec.model == "dis" and spec.device != "cpu":
        notes.append("OpenCV, runs on the CPU")
    if not probe.reset_ok:
        notes.append("peak RSS not resettable here: includes model building")
    return CaseResult(
        model=spec.model,
        width=spec.width,
        height=spec.height,
        status="ok",
        weights=_weights_label(estimator, spec.model),
        dtype="uint8" if spec.model == "dis" else spec.dtype,
        pairs_per_call=pairs,
        seconds=seconds,
        pairs_per_s=pairs / statistics.median(seconds),
        peak_bytes=peak,
        delta_bytes=delta,
        memory=probe.kind,
        threads=threads,
        note="; ".join(notes),
        epe_vs_float32=None if numerics is None else numerics.epe_mean,
        epe_max_vs_float32=None if numerics is None else numerics.epe_max,
    )


# --------------------------------------------------------------------------------------------------
# windowed reuse


@dataclass(frozen=True, kw_only=True)
class ReuseSpec:
    model: str = "daflow-compact"
    frames: int = 5
    width: int = 960
    height: int = 540
    device: str = "cpu"
    iters: int = 12
    repeats: int = 3
    warmup: int = 1
    threads: int | None = None


@dataclass(frozen=True, kw_only=True)
class ReuseResult:
    model: str
    frames: int
    width: int
    height: int
    status: str  # "ok" or "failed"
    reason: str = ""
    weights: str = ""
    windowed_s: float | None = None  # median seconds for the sequence, features once per window
    per_pair_s: float | None = None  # median seconds for the sequence, features recomputed per pair
    windowed_passes: int = 0  # frame feature computations, windowed
    per_pair_passes: int = 0  # frame feature computations, per pair

    @property
    def saving(self) -> float | None:
        if not self.windowed_s or not self.per_pair_s:
            return None
        return 1.0 - self.windowed_s / self.per_pair_s


def measure_reuse(spec: ReuseSpec) -> ReuseResult:
    """Forward and backward flow of every pair of a ``spec.frames``-frame sequence, two ways.

    Windowed: the engine's render path, windows of 3 frames anchored every 2 frames, each frame's
    features computed once per window and shared by the window's 4 flows (a frame on a window
    boundary is computed in both windows). Per pair: each pair is its own 2-frame window, so every
    frame's features are computed again for each pair it belongs to.
    """
    from ..engine import FlowEngine, plan_windows

    set_threads(spec.threads)
    estimator = load_estimator(spec.model, device=spec.device, iters=spec.iters, allow_random=True)
    engine = FlowEngine(estimator, device=spec.device)
    seq = synthetic_frames(spec.frames, spec.width, spec.height)  # [N, H, W, 3]
    n = spec.frames
    windows = plan_windows(range(n), first=0, last=n - 1, window=estimator.window)

    def windowed() -> None:
        for _ in engine.flows(lambda f: seq[f], range(n), first=0, last=n - 1):
            pass

    def per_pair() -> None:
        for i in range(n - 1):
            engine.estimate_window(seq[i : i + 2])

    def median_seconds(fn: Callable[[], None]) -> float:
        for _ in range(spec.warmup):
            fn()
        times = []
        for _ in range(spec.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return ReuseResult(
        model=spec.model,
        frames=n,
        width=spec.width,
        height=spec.height,
        status="ok",
        weights=_weights_label(estimator, spec.model),
        windowed_s=median_seconds(windowed),
        per_pair_s=median_seconds(per_pair),
        windowed_passes=sum(len(w) for w in windows),
        per_pair_passes=2 * (n - 1),
    )
