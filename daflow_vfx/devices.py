"""Where and how the engine computes: devices, dtypes, memory budgets, CPU threads, out-of-memory errors.

Nothing heavy is imported at module level: torch only when a device has to be resolved, and the thread
and out-of-memory helpers only touch libraries that are already loaded.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
from collections.abc import Iterator

from daflow_vfx.detail import check_detail
from daflow_vfx.errors import DeviceError, UnknownDeviceError, UsageError
from daflow_vfx.estimators import model_is_cpu_only
from daflow_vfx.numerics import DTYPE_CHOICES, resolve_dtype

__all__ = [
    "check_device_name",
    "check_dtype",
    "check_engine_settings",
    "device_for_model",
    "dtype_that_runs",
    "format_memory_size",
    "is_out_of_memory",
    "max_threads",
    "parse_memory_size",
    "release_device_memory",
    "resolve_device",
    "thread_limit",
]


# --------------------------------------------------------------------------------------------------
# devices and dtypes


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:  # classical estimators run without torch
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


_DEVICE_NAME = re.compile(r"auto|cpu|cuda(?::(\d+))?")


def check_device_name(device: str | None) -> str:
    """The device name lower-cased, when it is one this tool knows (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``); otherwise :class:`UnknownDeviceError`, a usage mistake. Imports nothing: whether the
    device is present is :func:`resolve_device`'s question."""
    name = (device or "auto").strip().lower()
    if _DEVICE_NAME.fullmatch(name) is None:
        raise UnknownDeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N", param="device")
    return name


def resolve_device(device: str | None) -> str:
    """``auto`` -> ``cuda`` when a GPU is present else ``cpu``; validates ``cpu``, ``cuda``, ``cuda:N``."""
    name = check_device_name(device)
    if name == "auto":
        return "cuda" if _cuda_device_count() > 0 else "cpu"
    if name == "cpu":
        return "cpu"
    match = _DEVICE_NAME.fullmatch(name)
    assert match is not None  # checked above
    count = _cuda_device_count()
    if count == 0:
        raise DeviceError(f"device {device!r} asked for, but no CUDA GPU is available here; "
                          "use `device` cpu (or auto), or install a CUDA build of torch", param="device")
    index = int(match.group(1) or 0)
    if index >= count:
        raise DeviceError(f"device {device!r} does not exist: {count} CUDA device(s) here, "
                          f"cuda:0 to cuda:{count - 1}", param="device")
    return name


def device_for_model(model: str, device: str | None) -> str:
    """:func:`resolve_device`, except that ``auto`` is ``cpu`` for CPU-only (classical) models: they
    never use a GPU, and asking torch whether one exists costs seconds of import time."""
    if (device or "auto").strip().lower() == "auto" and model_is_cpu_only(model):
        return "cpu"
    return resolve_device(device)


def dtype_that_runs(model: str, dtype: str, device: str | None) -> str:
    """The precision ``model`` computes in when asked for ``dtype`` on ``device``.

    ``auto`` resolves for the device the model runs on (:func:`daflow_vfx.numerics.resolve_dtype`).
    Classical models always compute in float32, so they record float32 whatever the hardware (a farm
    of mixed CPUs keeps their outputs on resume).
    """
    if model_is_cpu_only(model):
        return "float32"
    return resolve_dtype(dtype, device_for_model(model, device))


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPE_CHOICES:
        raise UsageError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}", param="dtype")
    return dtype


# --------------------------------------------------------------------------------------------------
# memory sizes and threads

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_memory_size(value: int | str | None, *, param: str = "max_memory") -> int | None:
    """``8G``, ``512M``, ``1.5G``, ``8GB``, ``8GiB`` or plain bytes -> bytes (units are powers of 1024);
    None stays None. Anything else, or a size under 1 MiB, is a :class:`UsageError` naming ``param``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"`{param}`: expected a size such as 8G or 512M, got {value!r}", param=param)
    if isinstance(value, int | float):
        size = int(value)
    else:
        match = _SIZE.fullmatch(str(value).strip())
        if match is None:
            raise UsageError(f"`{param}`: cannot read {value!r} as a size; use bytes or a number with K, M, "
                             "G or T (powers of 1024), e.g. 8G or 512M", param=param)
        size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if size < 2**20:
        raise UsageError(f"`{param}`: {value!r} is under 1 MiB, too little for any frame; e.g. 8G or 512M",
                         param=param)
    return size


def format_memory_size(size: int) -> str:
    """Bytes for messages: ``1.5 GiB``, ``512 MiB``."""
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    return f"{size / 2**20:.0f} MiB"


def check_engine_settings(*, dtype: str, tile: int | None, tile_pad: int, threads: int | None,
                          max_memory: int | str | None, detail: float = 1.0) -> int | None:
    """Refuse engine settings that cannot work, naming the parameter; returns ``max_memory`` in bytes.

    One check for :class:`~daflow_vfx.engine.FlowEngine` and for the jobs' ``EngineOptions``, which
    run it before any file is touched.
    """
    check_dtype(dtype)
    check_detail(detail)
    if tile is not None and int(tile) < 1:
        raise UsageError(f"`tile` must be a positive number of pixels, got {tile}", param="tile")
    if int(tile_pad) < 0:
        raise UsageError(f"`tile_pad` must be zero or more pixels, got {tile_pad}", param="tile_pad")
    if threads is not None and int(threads) < 1:
        raise UsageError(f"`threads` must be 1 or more, got {threads}", param="threads")
    if threads is not None and int(threads) > max_threads():
        # torch and OpenCV would try to start them all: minutes of thread creation, then an unrelated error
        raise UsageError(f"`threads` {threads} is more than this machine can use: at most {max_threads()} "
                         f"({_THREADS_PER_CPU} per CPU core, {_cpu_count()} here)", param="threads")
    return parse_memory_size(max_memory)


_THREADS_PER_CPU = 4  # oversubscription beyond this only adds switching, never speed


def _cpu_count() -> int:
    """CPU cores this process may run on (a farm slot's affinity, else the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


def max_threads() -> int:
    """The most CPU threads ``threads`` may ask for here."""
    return _THREADS_PER_CPU * _cpu_count()


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` CPU threads in torch and OpenCV, restoring both afterwards.

    Only libraries already loaded are touched: a classical estimator never imports torch for this,
    and a DA-Flow run never imports OpenCV. None leaves everything as it is.
    """
    if threads is None:
        yield
        return
    torch = sys.modules.get("torch")
    cv2 = sys.modules.get("cv2")
    saved_torch = torch.get_num_threads() if torch is not None else None
    saved_cv2 = cv2.getNumThreads() if cv2 is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
        if cv2 is not None:
            cv2.setNumThreads(threads)
        yield
    finally:
        if torch is not None and saved_torch is not None:
            torch.set_num_threads(saved_torch)
        if cv2 is not None and saved_cv2 is not None:
            cv2.setNumThreads(saved_cv2)


# --------------------------------------------------------------------------------------------------
# out-of-memory errors

_OOM_MARKERS = ("out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA out-of-memory error: ``torch.cuda.OutOfMemoryError``, or a RuntimeError saying
    so (older torch, cuDNN and cuBLAS allocation failures)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _OOM_MARKERS)


def release_device_memory() -> None:
    """After an out-of-memory error: drop the failed window's tensors and return cached GPU blocks."""
    gc.collect()  # the failed call's frames may sit in reference cycles
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
