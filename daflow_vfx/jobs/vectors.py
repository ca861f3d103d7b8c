"""Flows from rendered motion-vector EXRs: what ``vectors=`` (``--vectors``) of retime and stabilize reads.

A farm renders the vectors once (`daflow-vfx render`); retime and stabilize then reuse them instead of
computing flow again. Either way the result is one :class:`~daflow_vfx.engine.FrameFlows` per plate
frame, ``.flo`` convention.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from daflow_vfx.engine import FrameFlows
from daflow_vfx.errors import InputError, MissingFramesError, MissingInputError, UsageError
from daflow_vfx.vfx.retiming import FlowQuad

__all__ = ["check_vector_files", "read_vector_flows", "vector_lookup", "vector_pattern"]


def vector_pattern(text: str):
    """The :class:`~daflow_vfx.frames.SequencePattern` of a vectors pattern such as vectors.####.exr."""
    from daflow_vfx.frames import SequencePattern

    pattern = SequencePattern.parse(text)
    if pattern is None:
        raise UsageError(f"`vectors` {text!r} needs a frame pattern such as vectors/sh010.####.exr",
                         param="vectors")
    return pattern


def read_vector_flows(pattern: str, frames: Sequence[int], *, size: tuple[int, int]) -> dict[int, FrameFlows]:
    """Read rendered motion-vector EXRs (Nuke or Blender layout) for ``frames``.

    ``size`` is the plate's (height, width): vectors of another size are a clear error, never a
    silent resample. A missing neighbour recorded in the header (first/last frame) becomes None.
    """
    from daflow_vfx.io import is_complete_exr, read_motion_exr

    seq = vector_pattern(pattern)
    missing = [f for f in frames if not is_complete_exr(seq.path(f))]
    if len(missing) == len(frames):
        raise MissingInputError(f"{pattern}: no readable vector EXRs for frames {frames[0]}-{frames[-1]}; "
                                "render them with `daflow-vfx render` first")
    if missing:
        shown = ", ".join(str(f) for f in missing[:8])
        raise MissingFramesError(f"{pattern}: vectors for frames {shown} are missing or unreadable; "
                                 "render them (daflow-vfx render --skip-existing)", missing=missing)
    out: dict[int, FrameFlows] = {}
    for f in frames:
        mp = read_motion_exr(seq.path(f))
        for name, flow in (("forward", mp.forward), ("backward", mp.backward)):
            if flow is not None and flow.shape[:2] != size:
                raise InputError(f"{seq.path(f)}: {name} vectors are {flow.shape[1]}x{flow.shape[0]} but the "
                                 f"plate is {size[1]}x{size[0]}; render vectors from this plate")
        # A rendered pass carries one confidence channel: the forward flow's (see `render`).
        conf = None if mp.confidence is None else mp.confidence.astype(np.float32)
        out[f] = FrameFlows(frame=f, forward=mp.forward, backward=mp.backward, confidence_forward=conf)
    return out


def check_vector_files(pattern: Any, frames: Sequence[int], info: Any) -> None:
    """Every needed vector file exists and matches the plate's size, before anything is computed."""
    from daflow_vfx.frames import format_frame_spec
    from daflow_vfx.io.sequence import read_image_header

    missing = [f for f in frames if not os.path.isfile(pattern.path(f))]
    if missing:
        raise MissingFramesError(f"{pattern}: vectors for frames {format_frame_spec(missing)} are missing; "
                                 "render them with `daflow-vfx render` over the same plate", missing=missing)
    for f in frames:
        header = read_image_header(pattern.path(f))
        if (header.width, header.height) != (info.width, info.height):
            raise InputError(f"{pattern.path(f)}: vectors are {header.width}x{header.height} but the plate "
                             f"is {info.width}x{info.height}; render vectors from this plate")


def vector_lookup(pattern: Any, *, size: tuple[int, int], label: str) -> Callable[[int], FlowQuad]:
    """The flows of interval n (forward n -> n+1, backward n+1 -> n, their confidences) from the
    rendered pass: a ``flow_lookup`` for :class:`~daflow_vfx.vfx.retiming.FrameSources`. ``label``
    names the plate in errors."""

    def lookup(n: int) -> FlowQuad:
        got = read_vector_flows(str(pattern), [n, n + 1], size=size)
        a, b = got[n], got[n + 1]
        for frame, flow, what in ((n, a.forward, "forward"), (n + 1, b.backward, "backward")):
            if flow is None:
                raise InputError(f"{pattern.path(frame)}: has no {what} vectors (its header marks it an "
                                 f"end frame of another plate); render vectors from {label}")
        # a rendered pass holds the forward flow's confidence only
        return (a.forward, b.backward, a.confidence_forward, None)

    return lookup
