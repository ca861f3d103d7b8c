"""Where retime and stabilize get their flows: fresh from the engine, or from rendered EXR passes.

A farm renders the vectors once (``daflow-vfx render``); ``--vectors PATTERN`` then reuses them,
so retiming or stabilizing never recomputes flow. Either way the result is one
:class:`~daflow_vfx.engine.FrameFlows` per plate frame, ``.flo`` convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..engine import FlowEngine, FrameFlows
from ..errors import InputError, MissingFramesError, MissingInputError
from ..frames import SequencePattern


@dataclass(frozen=True, kw_only=True)
class FlowOptions:
    """How to compute flows when no rendered vectors are given."""

    model: str = "default"
    device: str = "cpu"
    dtype: str = "float32"
    tile: int | None = None
    tile_pad: int = 32
    weights: str | None = None
    iters: int | None = None


def compute_flows(
    read_display, frames: Sequence[int], *, first: int, last: int, options: FlowOptions
) -> dict[int, FrameFlows]:
    """Flows for ``frames`` of a plate spanning ``first..last``; ``read_display(frame)`` -> [H, W, 3]."""
    engine = FlowEngine(options.model, device=options.device, dtype=options.dtype, tile=options.tile,
                        tile_pad=options.tile_pad, weights=options.weights, iters=options.iters)
    return {ff.frame: ff for ff in engine.flows(read_display, frames, first=first, last=last)}


def read_vector_flows(pattern: str, frames: Sequence[int], *, size: tuple[int, int]) -> dict[int, FrameFlows]:
    """Read rendered motion-vector EXRs (Nuke or Blender layout) for ``frames``.

    ``size`` is the plate's (height, width): vectors of another size are a clear error, never a
    silent resample. A missing neighbour recorded in the header (first/last frame) becomes None.
    """
    from ..io import is_complete_exr, read_motion_exr

    seq = SequencePattern.parse(pattern)
    if seq is None:
        raise InputError(f"{pattern}: --vectors needs a frame pattern such as vectors.####.exr")
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
