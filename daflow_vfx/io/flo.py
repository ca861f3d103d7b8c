"""Middlebury ``.flo`` optical flow files, for exchange with research tools.

Layout (little-endian): float32 magic 202021.25 (the bytes "PIEH"), int32 width, int32 height, then
float32 ``[H, W, 2]`` (u, v) in pixels with +x right and +y DOWN, the in-memory convention.
"""

from __future__ import annotations

import os

import numpy as np

from daflow_vfx.errors import CorruptFileError, MissingInputError
from daflow_vfx.io._atomic import atomic_path

__all__ = ["read_flo", "write_flo", "FLO_MAGIC"]

FLO_MAGIC = 202021.25
_HEADER_BYTES = 12
# Largest side we accept from a header: guards against allocating gigabytes for a corrupt size field.
_MAX_SIDE = 1 << 16


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.flo`` file as float32 ``[H, W, 2]``. CorruptFileError on a bad magic or size."""
    target = os.fspath(path)
    if not os.path.isfile(target):
        raise MissingInputError(f"{target}: no such .flo file; check the path")
    with open(target, "rb") as handle:
        raw = handle.read()
    if len(raw) < _HEADER_BYTES:
        raise CorruptFileError(f"{target}: too short for a .flo header ({len(raw)} bytes); re-export it")
    magic = np.frombuffer(raw, "<f4", count=1, offset=0)[0]
    width, height = (int(v) for v in np.frombuffer(raw, "<i4", count=2, offset=4))
    if magic != np.float32(FLO_MAGIC):
        raise CorruptFileError(f"{target}: not a .flo file (bad magic {float(magic)!r}); re-export it in "
                               "Middlebury format")
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise CorruptFileError(f"{target}: impossible .flo size {width}x{height}; the file is corrupt, "
                               "re-export it")
    expected = _HEADER_BYTES + width * height * 2 * 4
    if len(raw) != expected:
        raise CorruptFileError(f"{target}: {len(raw)} bytes but a {width}x{height} .flo needs {expected}; "
                               "the file is truncated or corrupt, re-export it")
    flow = np.frombuffer(raw, "<f4", offset=_HEADER_BYTES).reshape(height, width, 2)   # [H, W, 2]
    return flow.astype(np.float32)   # native byte order, writable copy


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> None:
    """Write float ``[H, W, 2]`` flow (.flo convention, +y down) as a Middlebury ``.flo``, atomically."""
    data = np.asarray(flow)
    if data.ndim != 3 or data.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got {data.shape}")
    height, width = data.shape[:2]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    payload = np.ascontiguousarray(data, dtype="<f4").tobytes()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(header)
        handle.write(payload)
