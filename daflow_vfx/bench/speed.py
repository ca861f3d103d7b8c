"""Speed and memory benchmark: frame pairs per second and peak memory per model and frame size.

``daflow-vfx bench speed`` times, at each size, what a render needs per frame: the forward and the
backward flow of a frame pair. Every model runs through the engine (:class:`~daflow_vfx.engine.FlowEngine`,
so padding is included) on the same synthetic textured frames, with warm-up calls and the median
over repeats:

- ``daflow-compact`` / ``daflow-full`` from the registry (random weights where no trained weights
  are present; the table says so). One call is a whole 3-frame window, 2 pairs both ways, as in a
  render; pairs/s counts those 2 pairs.
- ``dis``: OpenCV DIS, medium preset (CPU only), one pair per call.
- ``raft_small`` / ``raft_large``: torchvision's RAFT architectures with ``weights=None`` and the same
  number of refinement iterations, forward and backward batched in one call.

A reduced-precision row (``--dtypes``; on CUDA DA-Flow runs bf16 autocast by default) also reports how
far that precision moves the flow from float32 on a fixed input (:func:`daflow_vfx.numerics.autocast_epe`),
so the speed it buys is read beside what it costs.

It also measures windowed reuse on a short sequence: DA-Flow computes each frame's features once
per window and shares them between the window's pairs, against recomputing them for every pair.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DaflowError, ModelError, UsageError
from ..estimators.base import FlowEstimator, WindowFlows
from ..numerics import REDUCED_DTYPES, autocast_epe, fixed_window

log = logging.getLogger(__name__)

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((960, 540), (1920, 1080), (4096, 2160))
DAFLOW_MODELS = ("daflow-compact", "daflow-full")
RAFT_MODELS = ("raft_small", "raft_large")
DEFAULT_MODELS = (*DAFLOW_MODELS, "dis", *RAFT_MODELS)
REFERENCE = "raft_large"
# Compute dtypes a DA-Flow row may run in (reduced ones under autocast, weights stay float32).
DTYPES = ("float32", *REDUCED_DTYPES)
# The fixed window of the numerics check: 3 frames of this size (height, width), or the case's size
# where that is smaller; large enough that the backbone, the prior and refinement all take part.
NUMERICS_SIZE = (192, 320)
# torchvision's RAFT pools its 1/8 feature maps three times and refuses maps under 16 px.
RAFT_MIN_SIDE = 128
# daflow-full (2.35 B parameters) on a CPU: the SD3 VAE and 24 joint blocks over three frames take
# minutes per window even at 960x540, so by default it only runs on tiny quick-check sizes.
FULL_CPU_MAX_PIXELS = 128 * 128
# Host memory needed to build daflow-full at all: ~9.4 GB of float32 weights plus working space.
FULL_HOST_BYTES = 12 * 2**30
# The worker subprocess marks its one result line so stray library output on stdout cannot confuse it.
_RESULT_MARK = "DAFLOW_SPEED_RESULT "
_MIB = 2**20


# --------------------------------------------------------------------------------------------------
# options


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> ``(1920, 1080)``; :class:`UsageError` for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise UsageError(f"bad size {text.strip()!r} in --sizes; use WIDTHxHEIGHT, e.g. 1920x1080")
    return int(match.group(1)), int(match.group(2))


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Comma-separated ``WIDTHxHEIGHT`` list, e.g. ``960x540,1920x1080``."""
    sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not sizes:
        raise UsageError("--sizes is empty; give WIDTHxHEIGHT values, e.g. 960x540,1920x1080")
    return sizes


def check_models(models: Sequence[str]) -> tuple[str, ...]:
    if not models:
        raise UsageError(f"--models is empty; choose from {', '.join(DEFAULT_MODELS)}")
    unknown = [m for m in models if m not in DEFAULT_MODELS]
    if unknown:
        raise UsageError(
            f"unknown model {unknown[0]!r} for bench speed; choose from {', '.join(DEFAULT_MODELS)}"
        )
    return tuple(dict.fromkeys(models))


# --------------------------------------------------------------------------------------------------
# torchvision RAFT

def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _drop_modules(top: str, keep: set[str]) -> None:
    for name in [n for n in sys.modules if (n == top or n.startswith(top + ".")) and n not in keep]:
        del sys.modules[name]


def load_raft_module(module: str = "torchvision") -> tuple[types.ModuleType, str]:
    """torchvision's ``models.optical_flow`` module and how it was loaded; :class:`ModelError` if neither
    way works.

    ``import torchvision`` is tried first. It fails where torchvision's compiled ops do not match the
    installed torch (for example the PyPI wheel, built against CUDA torch, beside a CPU-only torch:
    its ``__init__`` registers kernels for ops its ``_C`` library could not load). RAFT itself is pure
    Python, so the fallback registers empty package objects for ``torchvision`` and
    ``torchvision.models`` whose ``__path__`` is the installed folder, imports only
    ``torchvision.models.optical_flow`` (and the few pure-Python modules it needs), then removes the
    stand-ins from ``sys.modules`` so later imports see torchvision exactly as before.
    ``module`` is the top-level name to load; tests pass a missing one to exercise the failure path.
    """
    before = set(sys.modules)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(module)
            flow_module = importlib.import_module(f"{module}.models.optical_flow")
        return flow_module, f"import {module}"
    except Exception as exc:  # ImportError, or the RuntimeError/OSError of mismatched compiled ops
        exc_first, first = exc, _one_line(exc)
    _drop_modules(module, before)  # what the failed import left half-initialised
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        missing = isinstance(exc_first, ModuleNotFoundError) and exc_first.name == module
        reason = f"{module} is not installed" if missing else f"{module} cannot be imported ({first})"
        raise ModelError(reason)
    root = spec.submodule_search_locations[0]
    try:
        for name, path in ((module, root), (f"{module}.models", os.path.join(root, "models"))):
            package = types.ModuleType(name)
            package.__path__ = [path]
            package.__package__ = name
            sys.modules[name] = package
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flow_module = importlib.import_module(f"{module}.models.optical_flow")
    except Exception as exc:
        reason = (
            f"import {module} failed ({first}); loading only its RAFT modules failed too ({_one_line(exc)})"
        )
        raise ModelError(reason) from None
    finally:
        _drop_modules(module, before)
    how = f"RAFT loaded from {module}'s pure-Python modules; `import {module}` failed: {first}"
    return flow_module, how


def torchvision_version(module: str = "torchvision") -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


class TorchvisionRAFT(FlowEstimator):
    """torchvision's RAFT (random weights) behind the estimator contract, forward and backward batched."""

    window = 2
    stride = 8

    def __init__(
        self, *, arch: str, device: str = "cpu", iters: int = 12, module: str = "torchvision"
    ) -> None:
        import torch

        flow_module, _ = load_raft_module(module)
        self.name = arch
        self.version = f"torchvision-{torchvision_version(module) or 'unknown'}"
        self.device = torch.device(device)
        self.iters = iters
        self.model = getattr(flow_module, arch)(weights=None, progress=False).to(self.device).eval()

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        import torch

        # frames: [2, H, W, 3] display [0, 1] -> [2, 3, H, W] in [-1, 1], RAFT's input range
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
        x = x.to(self.device) * 2.0 - 1.0
        with torch.inference_mode():
            # batch of two: (frame0 -> frame1) and (frame1 -> frame0); the last iteration's flow
            flow = self.model(x, x.flip(0), num_flow_updates=self.iters)[-1]  # [2, 2, H, W]
        flow = flow.float().permute(0, 2, 3, 1).cpu().numpy()  # [2, H, W, 2]
        return WindowFlows(forward=flow[:1], backward=flow[1:])


# --------------------------------------------------------------------------------------------------
# memory


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
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
            self.baseline = 1024 * (_proc_status_kib("VmRSS") or 0)

    def stop(self) -> tuple[int | None, int | None]:
        """(peak, peak minus the memory in use at :meth:`start`), None where unknown."""
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return peak, peak - self.baseline
        hwm = _proc_status_kib("VmHWM")
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


def _set_threads(threads: int | None) -> int:
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
    from ..estimators import load_estimator

    if spec.model in RAFT_MODELS:
        return TorchvisionRAFT(
            arch=spec.model, device=spec.device, iters=spec.iters, module=spec.torchvision_module
        )
    return load_estimator(
        spec.model, device=spec.device, dtype=spec.dtype, iters=spec.iters, allow_random=True
    )


def _weights_label(estimator: FlowEstimator, model: str) -> str:
    if model in DAFLOW_MODELS:
        return "trained" if estimator.weights_sha256 else "random weights"
    return "random weights" if model in RAFT_MODELS else "-"


def measure_case(spec: CaseSpec) -> CaseResult:
    """Build the model, warm up, time ``repeats`` calls and take the median; memory over all calls."""
    from ..engine import FlowEngine

    threads = _set_threads(spec.threads)
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
    from ..estimators import load_estimator

    _set_threads(spec.threads)
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


# --------------------------------------------------------------------------------------------------
# worker processes


def _worker(payload: dict[str, Any]) -> dict[str, Any]:
    kind = payload.pop("kind")
    try:
        if kind == "case":
            return asdict(measure_case(CaseSpec(**payload)))
        return asdict(measure_reuse(ReuseSpec(**payload)))
    except DaflowError as exc:
        status, reason = "unavailable", " ".join(str(exc).split())
    except Exception as exc:  # a benchmark row, not a crash: the other rows still run
        log.debug("%s failed", payload, exc_info=True)
        status, reason = "failed", _one_line(exc)
    keys = ("model", "width", "height") if kind == "case" else ("model", "frames", "width", "height")
    return {**{k: payload[k] for k in keys}, "status": status, "reason": reason}


def _run_isolated(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return its result dict."""
    proc = subprocess.run(
        [sys.executable, "-m", "daflow_vfx.bench.speed"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK) :])
    if proc.returncode < 0:
        why = f"worker killed by signal {-proc.returncode}"
        if proc.returncode == -9:
            why += " (likely out of memory)"
    else:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        why = f"worker exited with code {proc.returncode}" + (f": {last[-1].strip()}" if last else "")
    keys = (
        ("model", "width", "height") if payload["kind"] == "case" else ("model", "frames", "width", "height")
    )
    return {**{k: payload[k] for k in keys}, "status": "failed", "reason": why}


def _measure(payload: dict[str, Any], *, isolate: bool) -> dict[str, Any]:
    if isolate:
        return _run_isolated(dict(payload))
    return _worker(dict(payload))


def _worker_main() -> int:
    from ..hostalloc import tune_host_allocator

    # The worker times what the `daflow-vfx` command runs, so it sets the host allocator the same way.
    tune_host_allocator()
    payload = json.loads(sys.stdin.read())
    result = _worker(payload)
    sys.stdout.write(_RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------------------------------
# the run


@dataclass(frozen=True, kw_only=True)
class SpeedJob:
    """What `daflow-vfx bench speed` runs."""

    models: tuple[str, ...] = DEFAULT_MODELS
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    repeats: int = 3
    warmup: int = 1
    iters: int = 12
    device: str = "cpu"
    threads: int | None = None
    isolate: bool = True  # each measurement in a fresh process (see MemoryProbe)
    full_on_cpu: bool = False  # run daflow-full on the CPU at every size
    reuse_frames: int = 5  # 0: no windowed-reuse measurement
    output: str | None = "docs/benchmarks.md"
    command: str = ""
    torchvision_module: str = "torchvision"  # tests name a missing module to get "unavailable" rows
    # compute dtypes of the DA-Flow rows; None: float32 on the CPU, on CUDA the bf16 fast path (and
    # float32 too for daflow-compact)
    dtypes: tuple[str, ...] | None = None


@dataclass(kw_only=True)
class SpeedReport:
    job: SpeedJob
    rows: list[CaseResult]
    reuse: ReuseResult | None
    device_name: str
    threads: int
    versions: dict[str, str]
    raft_how: str
    minutes: float


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return 1024 * int(line.split()[1])
    except OSError:
        pass
    return None


def _skip_reason(
    model: str, width: int, height: int, job: SpeedJob, raft_error: str | None
) -> tuple[str, str] | None:
    """(status, reason) for a case that is not run, or None to run it."""
    if model in RAFT_MODELS:
        if raft_error is not None:
            return "unavailable", raft_error
        if min(width, height) < RAFT_MIN_SIDE:
            return "skipped", f"torchvision RAFT needs frames of at least {RAFT_MIN_SIDE}x{RAFT_MIN_SIDE}"
    if model == "daflow-full":
        if job.device == "cpu" and not job.full_on_cpu and width * height > FULL_CPU_MAX_PIXELS:
            return "skipped", (
                "2.35 B parameters on the CPU: minutes per window above 128x128 pixels; "
                "run on CUDA or pass --full-on-cpu"
            )
        available = _mem_available()
        if available is not None and available < FULL_HOST_BYTES:
            return "skipped", (
                f"building it needs ~{FULL_HOST_BYTES / 2**30:.0f} GiB of host memory, "
                f"{available / 2**30:.1f} GiB available"
            )
    return None


def _planned_weights(model: str) -> str:
    if model in DAFLOW_MODELS:
        from ..estimators import available_models

        present = {m.name: m.weights_present for m in available_models()}
        return "trained" if present.get(model) else "random weights"
    return "random weights" if model in RAFT_MODELS else "-"


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def check_dtypes(dtypes: Sequence[str]) -> tuple[str, ...]:
    """The DA-Flow rows' compute dtypes, de-duplicated; UsageError for an unknown or empty list."""
    if not dtypes:
        raise UsageError(f"--dtypes is empty; choose from {', '.join(DTYPES)}")
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise UsageError(f"bad dtype {unknown[0]!r} for bench speed; choose from {', '.join(DTYPES)}")
    return tuple(dict.fromkeys(dtypes))


def _case_dtypes(model: str, device: str, dtypes: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if model not in DAFLOW_MODELS:
        return ("float32",)  # RAFT and DIS rows are references, always at their own precision
    if dtypes is not None:
        return dtypes
    if not device.startswith("cuda"):
        return ("float32",)
    return {"daflow-compact": ("float32", "bfloat16"), "daflow-full": ("bfloat16",)}[model]


def run_speed(job: SpeedJob, *, progress: Callable[[int, int], None] | None = None) -> SpeedReport:
    """Measure every (model, size) of ``job`` and the windowed reuse; no files written."""
    import cv2
    import torch

    from .. import __version__

    models = check_models(job.models)
    if not job.sizes:
        raise UsageError("no sizes to measure; give --sizes WIDTHxHEIGHT[,...]")
    if job.repeats < 1 or job.warmup < 0 or job.iters < 1:
        raise UsageError("--repeats and --iters must be at least 1, --warmup at least 0")
    if job.dtypes is not None:
        check_dtypes(job.dtypes)
    if job.reuse_frames != 0 and job.reuse_frames < 3:
        raise UsageError(f"--reuse-frames must be 0 (off) or at least 3, got {job.reuse_frames}")
    t0 = time.perf_counter()

    raft_error: str | None = None
    raft_how = "not used"
    if any(m in RAFT_MODELS for m in models):
        try:
            _, raft_how = load_raft_module(job.torchvision_module)
        except ModelError as exc:
            raft_error = str(exc)
            raft_how = f"unavailable ({raft_error})"

    # On CUDA, DA-Flow runs under bf16 autocast (the fast path) and daflow-compact also in float32,
    # so the table shows what reduced precision buys; everything else runs in float32.
    planned: list[tuple[str, int, int, str]] = [
        (m, w, h, dt)
        for (w, h) in job.sizes
        for m in models
        for dt in _case_dtypes(m, job.device, job.dtypes)
    ]
    reuse_size = min(job.sizes, key=lambda s: s[0] * s[1])
    do_reuse = job.reuse_frames > 0 and "daflow-compact" in models
    total = len(planned) + int(do_reuse)
    done = 0
    rows: list[CaseResult] = []
    # in-process runs set the thread count for this process: restore it afterwards
    old_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        for model, w, h, dtype in planned:
            skip = _skip_reason(model, w, h, job, raft_error)
            if skip is not None:
                rows.append(
                    CaseResult(
                        model=model,
                        width=w,
                        height=h,
                        status=skip[0],
                        reason=skip[1],
                        weights=_planned_weights(model),
                    )
                )
                log.info("%s at %dx%d: %s (%s)", model, w, h, *skip)
            else:
                spec = CaseSpec(
                    model=model,
                    width=w,
                    height=h,
                    device=job.device,
                    dtype=dtype,
                    iters=job.iters,
                    repeats=job.repeats,
                    warmup=job.warmup,
                    threads=job.threads,
                    torchvision_module=job.torchvision_module,
                )
                log.info("measuring %s at %dx%d", model, w, h)
                result = _measure({"kind": "case", **asdict(spec)}, isolate=job.isolate)
                row = CaseResult(**result)
                if not row.weights:
                    row = replace(row, weights=_planned_weights(model))
                rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)
        reuse: ReuseResult | None = None
        if do_reuse:
            rspec = ReuseSpec(
                frames=job.reuse_frames,
                width=reuse_size[0],
                height=reuse_size[1],
                device=job.device,
                iters=job.iters,
                repeats=job.repeats,
                warmup=job.warmup,
                threads=job.threads,
            )
            log.info("measuring windowed reuse of daflow-compact over %d frames", job.reuse_frames)
            reuse = ReuseResult(**_measure({"kind": "reuse", **asdict(rspec)}, isolate=job.isolate))
            done += 1
            if progress is not None:
                progress(done, total)
        threads = next((r.threads for r in rows if r.threads), None) or _set_threads(job.threads)
    finally:
        torch.set_num_threads(old_threads[0])
        cv2.setNumThreads(old_threads[1])

    tv = torchvision_version(job.torchvision_module)
    versions = {
        "daflow-vfx": __version__,
        "torch": torch.__version__,
        "OpenCV": cv2.__version__,
        "torchvision": tv if tv is not None else "not installed",
    }
    return SpeedReport(
        job=job,
        rows=rows,
        reuse=reuse,
        device_name=device_name(job.device),
        threads=threads,
        versions=versions,
        raft_how=raft_how,
        minutes=(time.perf_counter() - t0) / 60,
    )


# --------------------------------------------------------------------------------------------------
# the report


def _num(value: float) -> str:
    """Three significant figures without exponents: 1234 -> '1234', 12.34 -> '12.3', 0.01234 -> '0.0123'."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{max(0, 2 - int(np.floor(np.log10(value))))}f}" if value > 0 else "0"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / _MIB:.0f}"


def _numerics_cell(row: CaseResult) -> str:
    if row.epe_vs_float32 is None or row.epe_max_vs_float32 is None:
        return "-"
    return f"{row.epe_vs_float32:.4f} ({row.epe_max_vs_float32:.3f})"


def format_table(rows: Sequence[CaseResult]) -> str:
    """Markdown: one row per (size, model, dtype); pairs/s ratio against raft_large at the same size."""
    reference = {r.size: r.pairs_per_s for r in rows if r.model == REFERENCE and r.pairs_per_s}
    lines = [
        f"| model | weights | size | dtype | pairs/s | ms/pair | vs {REFERENCE} | peak MiB | Δ MiB | "
        "Δ flow vs float32, px | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status != "ok" or not r.pairs_per_s:
            reason = f"skipped ({r.reason})" if r.status == "skipped" else f"{r.status}: {r.reason}"
            empty = " | ".join("-" * 7)  # dtype to Δ flow
            lines.append(f"| {r.model} | {r.weights or '-'} | {r.size} | {empty} | {reason} |")
            continue
        ref = reference.get(r.size)
        ratio = f"{r.pairs_per_s / ref:.2f}x" if ref else "-"
        ms = r.ms_per_pair
        lines.append(
            f"| {r.model} | {r.weights} | {r.size} | {r.dtype} | {_num(r.pairs_per_s)} | "
            f"{_num(ms) if ms else '-'} | {ratio} | {_mib(r.peak_bytes)} | {_mib(r.delta_bytes)} | "
            f"{_numerics_cell(r)} | {r.note} |"
        )
    return "\n".join(lines)


def format_reuse(reuse: ReuseResult, *, iters: int) -> str:
    head = (
        f"Windowed reuse, `{reuse.model}` ({reuse.weights or 'random weights'}), {reuse.frames} frames at "
        f"{reuse.width}x{reuse.height}, {iters} iterations, forward and backward flow of all "
        f"{reuse.frames - 1} pairs"
    )
    if reuse.status != "ok" or reuse.windowed_s is None or reuse.per_pair_s is None:
        return f"{head}: {reuse.status}: {reuse.reason}"
    saving = reuse.saving or 0.0
    per_pair = (
        f"| per pair (each pair a 2-frame window) | {reuse.per_pair_passes} | {_num(reuse.per_pair_s)} | - |"
    )
    windowed = (
        f"| windowed (3-frame windows, the render path) | {reuse.windowed_passes} | "
        f"{_num(reuse.windowed_s)} | {100 * saving:.0f}% |"
    )
    return "\n".join(
        [
            f"{head}:",
            "",
            "| path | frame feature passes | seconds | saving |",
            "|---|---|---|---|",
            per_pair,
            windowed,
        ]
    )


def format_report(report: SpeedReport) -> str:
    job = report.job
    kind = "CUDA" if job.device.startswith("cuda") else "CPU"
    memory = (
        "peak MiB is `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats` (the DIS row: "
        "process peak RSS)"
        if kind == "CUDA"
        else "peak MiB is the process's peak resident set (VmHWM)"
    )
    isolation = (
        "each measurement in a fresh process"
        if job.isolate
        else "all measurements in one process (memory of later rows may be understated)"
    )
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    lines = [
        f"## Speed and memory ({kind})",
        "",
        f"Command: `{job.command}`" if job.command else "",
        "",
        f"Device: {report.device_name} (`{job.device}`), threads: {report.threads}. {versions}. "
        f"torchvision RAFT: {report.raft_how}.",
        "",
        "pairs/s: forward plus backward flow of one frame pair per second, what `render` needs per frame "
        f"(median of {job.repeats} timed calls after {job.warmup} warm-up call(s); DA-Flow rows time one "
        "3-frame window, 2 pairs, as a render does; RAFT rows batch both directions). "
        f"vs {REFERENCE}: pairs/s over {REFERENCE}'s at the same size (above 1 is faster). "
        f"{job.iters} refinement iterations for DA-Flow and RAFT. {memory}; Δ MiB is the peak above the "
        f"memory in use after the model was built; {isolation}. Random weights time the same "
        "architectures as trained ones. Δ flow vs float32 (reduced-precision DA-Flow rows): mean (max) "
        "endpoint distance between the row's flow and float32's on a fixed 3-frame window of "
        f"{NUMERICS_SIZE[1]}x{NUMERICS_SIZE[0]} (or the row's size if smaller; "
        "`daflow_vfx.numerics.autocast_epe`), same weights and device.",
        "",
        format_table(report.rows),
    ]
    if report.reuse is not None:
        lines += ["", format_reuse(report.reuse, iters=job.iters)]
    lines += ["", f"Run took {report.minutes:.1f} min."]
    return "\n".join(lines)


def bench_speed(job: SpeedJob, *, progress: Callable[[int, int], None] | None = None) -> str:
    """Run the benchmark, write it into ``job.output`` (if any), return the markdown section.

    The section is per device kind (``speed-cpu`` / ``speed-cuda``), so a GPU run does not replace the
    CPU table.
    """
    from .accuracy import update_markdown

    report = run_speed(job, progress=progress)
    body = format_report(report)
    if job.output:
        section = "speed-cuda" if job.device.startswith("cuda") else "speed-cpu"
        update_markdown(Path(job.output), section, body)
    return body


if __name__ == "__main__":
    sys.exit(_worker_main())
