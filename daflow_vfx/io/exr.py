"""Motion-vector EXR passes: Nuke and Blender layouts, header metadata, atomic writes.

In memory a flow is float32 ``[H, W, 2]`` in the ``.flo`` convention: pixels, +x right, +y DOWN, from
this frame to the other one. The files use the hosts' conventions instead (both have +y UP):

Nuke layout (``layout="nuke"``)::

    forward.u  =  fwd_u      forward.v  = -fwd_v      motion from this frame to the next one
    backward.u =  bwd_u      backward.v = -bwd_v      motion from this frame to the previous one

Blender layout (``layout="blender"``), the ``Vector`` pass as Cycles writes it::

    Vector.X = bwd_u    Vector.Y = -bwd_v       previous position minus current  (= backward flow, y up)
    Vector.Z = -fwd_u   Vector.W =  fwd_v       current position minus next      (= -forward flow, y up)

``layout="both"`` writes both sets. Optional ``flow.confidence`` and ``flow.occlusion`` channels follow.
A missing neighbour (first/last frame) is written as zeros with the header attribute
``daflow/forwardValid`` or ``daflow/backwardValid`` set to 0, so no host mistakes it for "no motion".
Header metadata goes into ``daflow/<key>`` string attributes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daflow_vfx.errors import CorruptFileError, InputError, MissingInputError, UsageError

__all__ = [
    "LOSSLESS_COMPRESSIONS",
    "LAYOUTS",
    "NUKE_CHANNELS",
    "BLENDER_CHANNELS",
    "CONFIDENCE_CHANNEL",
    "OCCLUSION_CHANNEL",
    "MotionPass",
    "write_motion_exr",
    "read_motion_exr",
    "is_complete_exr",
    "read_exr_metadata",
]

LOSSLESS_COMPRESSIONS: tuple[str, ...] = ("zip", "zips", "piz", "rle", "none")
LAYOUTS: tuple[str, ...] = ("nuke", "blender", "both")
NUKE_CHANNELS: tuple[str, ...] = ("forward.u", "forward.v", "backward.u", "backward.v")
BLENDER_CHANNELS: tuple[str, ...] = ("Vector.X", "Vector.Y", "Vector.Z", "Vector.W")
CONFIDENCE_CHANNEL = "flow.confidence"
OCCLUSION_CHANNEL = "flow.occlusion"
METADATA_PREFIX = "daflow/"


@dataclass
class MotionPass:
    """A motion-vector EXR read back into memory, flows in ``.flo`` convention."""

    forward: np.ndarray | None          # [H, W, 2] this frame -> next; None when the file says it is invalid
    backward: np.ndarray | None         # [H, W, 2] this frame -> previous
    confidence: np.ndarray | None       # [H, W]
    occlusion: np.ndarray | None        # [H, W]
    metadata: dict[str, str] = field(default_factory=dict)   # "daflow/<key>" attributes, prefix stripped


def _check_flow(name: str, flow: np.ndarray | None, size: tuple[int, int] | None) -> tuple[int, int] | None:
    if flow is None:
        return size
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name} flow must be [H, W, 2], got {flow.shape}")
    return _check_size(name, flow.shape[:2], size)


def _check_size(name: str, shape: tuple[int, ...], size: tuple[int, int] | None) -> tuple[int, int]:
    hw = (int(shape[0]), int(shape[1]))
    if size is not None and hw != size:
        raise ValueError(f"{name} is {hw[1]}x{hw[0]} but the other arrays are {size[1]}x{size[0]}")
    return hw


def write_motion_exr(path: str | os.PathLike, *, forward: np.ndarray | None, backward: np.ndarray | None,
                     layout: str = "nuke", confidence: np.ndarray | None = None,
                     occlusion: np.ndarray | None = None, rgb: np.ndarray | None = None, half: bool = True,
                     compression: str = "zip",
                     metadata: Mapping[str, str | int | float] | None = None) -> None:
    """Write one frame's motion vectors (``.flo`` convention in) as an EXR in the host layout, atomically.

    ``forward``/``backward``: ``[H, W, 2]`` or None (written as zeros, flagged invalid in the header).
    ``confidence``/``occlusion``: ``[H, W]`` -> ``flow.confidence`` / ``flow.occlusion``.
    ``rgb``: optional ``[H, W, 3]`` beauty stored as R, G, B. Raises UsageError for an unknown layout or
    a lossy/unknown compression, OutputError when the file cannot be written.
    """
    from daflow_vfx.io.images import write_oiio_image

    target = os.fspath(path)
    if layout not in LAYOUTS:
        raise UsageError(f"{target}: unknown vector layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if compression not in LOSSLESS_COMPRESSIONS:
        raise UsageError(f"{target}: compression {compression!r} is not a lossless EXR compression; use one "
                         f"of {', '.join(LOSSLESS_COMPRESSIONS)}")
    size: tuple[int, int] | None = None
    size = _check_flow("forward", forward, size)
    size = _check_flow("backward", backward, size)
    for name, plane in (("confidence", confidence), ("occlusion", occlusion)):
        if plane is not None:
            plane_shape = np.shape(plane)
            if len(plane_shape) == 3 and plane_shape[2] == 1:
                plane_shape = plane_shape[:2]
            if len(plane_shape) != 2:
                raise ValueError(f"{name} must be [H, W], got {plane_shape}")
            size = _check_size(name, plane_shape, size)
    if rgb is not None:
        if np.ndim(rgb) != 3 or np.shape(rgb)[2] != 3:
            raise ValueError(f"rgb must be [H, W, 3], got {np.shape(rgb)}")
        size = _check_size("rgb", np.shape(rgb), size)
    if size is None:
        raise ValueError("write_motion_exr needs one of forward, backward, confidence, occlusion, rgb")
    height, width = size
    zeros = np.zeros((height, width), np.float32)
    none = np.zeros((height, width, 2), np.float32)
    fwd = np.asarray(forward, np.float32) if forward is not None else none    # [H, W, 2]
    bwd = np.asarray(backward, np.float32) if backward is not None else none  # [H, W, 2]

    names: list[str] = []
    planes: list[np.ndarray] = []   # each [H, W]
    if rgb is not None:
        # R, G, B first so viewers that show the first three channels show the beauty.
        rgb_arr = np.asarray(rgb, np.float32)
        names += ["R", "G", "B"]
        planes += [rgb_arr[..., 0], rgb_arr[..., 1], rgb_arr[..., 2]]
    if layout in ("nuke", "both"):
        # Nuke's origin is bottom-left, so +v is up: negate the .flo (y down) component.
        names += list(NUKE_CHANNELS)
        planes += [fwd[..., 0], -fwd[..., 1], bwd[..., 0], -bwd[..., 1]]
    if layout in ("blender", "both"):
        # Cycles: X/Y = previous position - current = backward motion; Z/W = current - next = -forward.
        # Both with y up.
        names += list(BLENDER_CHANNELS)
        planes += [bwd[..., 0], -bwd[..., 1], -fwd[..., 0], fwd[..., 1]]
    if confidence is not None:
        names.append(CONFIDENCE_CHANNEL)
        planes.append(np.asarray(confidence, np.float32).reshape(height, width))
    if occlusion is not None:
        names.append(OCCLUSION_CHANNEL)
        planes.append(np.asarray(occlusion, np.float32).reshape(height, width))
    # "-0.0" would survive into half and show up in pixel inspectors; make zeros plain zeros.
    pixels = np.stack(planes, axis=-1) + zeros[..., None]   # [H, W, C]

    attributes: dict[str, Any] = {
        "compression": compression,
        "Software": "daflow-vfx",
        f"{METADATA_PREFIX}forwardValid": 1 if forward is not None else 0,
        f"{METADATA_PREFIX}backwardValid": 1 if backward is not None else 0,
        f"{METADATA_PREFIX}layout": layout,
    }
    for key, value in (metadata or {}).items():
        attributes[f"{METADATA_PREFIX}{key}"] = str(value)
    write_oiio_image(target, pixels, channel_names=names, pixel_type="half" if half else "float",
                     attributes=attributes)


def read_motion_exr(path: str | os.PathLike) -> MotionPass:
    """Read a motion-vector EXR of either layout back into ``.flo``-convention flows.

    Nuke channels win when both layouts are present. A flow flagged invalid in the header
    (``daflow/forwardValid = 0``) comes back as None. InputError when the file has no vector channels.
    """
    from daflow_vfx.io.sequence import read_image_channels, read_image_header

    target = os.fspath(path)
    if not os.path.exists(target):
        raise MissingInputError(f"{target}: no such vector pass; check the path or render it first")
    header = read_image_header(target)
    available = set(header.channels)
    metadata = _read_metadata(target)
    if all(c in available for c in NUKE_CHANNELS):
        vectors = list(NUKE_CHANNELS)
    elif all(c in available for c in BLENDER_CHANNELS):
        vectors = list(BLENDER_CHANNELS)
    else:
        raise InputError(f"{target}: no motion-vector channels (has {', '.join(header.channels)}); expected "
                         f"{', '.join(NUKE_CHANNELS)} or {', '.join(BLENDER_CHANNELS)}")
    extras = [c for c in (CONFIDENCE_CHANNEL, OCCLUSION_CHANNEL) if c in available]
    data = read_image_channels(target, vectors + extras, what="vector pass")   # [H, W, 4 + len(extras)]
    forward: np.ndarray | None
    backward: np.ndarray | None
    if vectors[0] == NUKE_CHANNELS[0]:
        forward = np.stack([data[..., 0], -data[..., 1]], axis=-1)
        backward = np.stack([data[..., 2], -data[..., 3]], axis=-1)
    else:
        backward = np.stack([data[..., 0], -data[..., 1]], axis=-1)
        forward = np.stack([-data[..., 2], data[..., 3]], axis=-1)
    if metadata.get("forwardValid") == "0":
        forward = None
    if metadata.get("backwardValid") == "0":
        backward = None
    planes = {name: data[..., 4 + i].copy() for i, name in enumerate(extras)}   # each [H, W]
    confidence = planes.get(CONFIDENCE_CHANNEL)
    occlusion = planes.get(OCCLUSION_CHANNEL)

    def clean(flow: np.ndarray | None) -> np.ndarray | None:
        # + 0.0 turns the -0.0 produced by negating zeros into 0.0.
        return None if flow is None else np.ascontiguousarray(flow + 0.0, dtype=np.float32)

    return MotionPass(forward=clean(forward), backward=clean(backward), confidence=confidence,
                      occlusion=occlusion, metadata=metadata)


def _read_metadata(path: str) -> dict[str, str]:
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    if inp is None:
        from daflow_vfx.io.sequence import one_line

        raise CorruptFileError(f"{path}: cannot read the EXR header ({one_line(oiio.geterror())}); re-render "
                               "the file")
    try:
        result: dict[str, str] = {}
        for attrib in inp.spec().extra_attribs:
            if attrib.name.startswith(METADATA_PREFIX):
                result[attrib.name[len(METADATA_PREFIX):]] = str(attrib.value)
        return result
    finally:
        inp.close()


def is_complete_exr(path: str | os.PathLike) -> bool:
    """True when ``path`` is an EXR whose every part reads in full without error.

    False for a missing, empty, truncated, corrupt or non-EXR file; ``--skip-existing`` treats those as
    not rendered yet. This reads all pixels, because a truncated file's header is still intact.
    """
    from daflow_vfx.io.images import reads_back

    return reads_back(path, format_name="openexr")


def read_exr_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``daflow/<key>`` header attributes of an EXR, prefix stripped (CorruptFileError if unreadable)."""
    return _read_metadata(os.fspath(path))
