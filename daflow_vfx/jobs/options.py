"""The engine options of every command that computes flow, and the one way a job builds its engine.

`render`, `flow`, `retime` and `stabilize` take the same options (``--model --device --dtype --tile
--tile-pad --max-memory --threads --compile --compile-refinement --iters --weights --detail
--batch-windows``, one click decorator in ``daflow_vfx.cli._common``), so they are one dataclass here
and one :func:`build_engine`: a job never picks its own subset, and an option added here reaches every
command at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from daflow_vfx.devices import check_device_name, check_engine_settings, device_for_model
from daflow_vfx.engine import FlowEngine, check_batch_windows, plan_windows
from daflow_vfx.errors import UnknownModelError
from daflow_vfx.estimators import DEFAULT_MODEL, model_names, model_window

__all__ = ["EngineOptions", "VideoOptions", "build_engine", "frames_read"]


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """Which model computes the flow, where, in what precision and in what pieces.

    Checked when made, so a job refuses bad options before it touches a file: an unknown model or
    device name is a usage error (exit 2). Whether the device is present is asked only by
    :meth:`resolved_device` (``auto`` may import torch, which a bad job should not wait for).
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    dtype: str = "auto"  # compute precision of learned models; auto: bf16 where the device has it natively
    tile: int | None = None  # flow in overlapping tiles of at most this many pixels (large plates)
    tile_pad: int = 32  # overlap around each tile, blended with feathering
    max_memory: int | str | None = None  # bytes or "8G"; frames that do not fit are tiled
    threads: int | None = None  # torch / OpenCV CPU threads while computing; None leaves them
    compile: bool = False  # torch.compile the network (learned models)
    iters: int | None = None  # refinement iterations of a learned model; None: the model's own
    weights: str | None = None  # local weights for a learned model
    detail: float = 1.0  # flow at this fraction of the plate's resolution, upsampled ("Vector Detail")
    # windows per estimator call where memory allows; the same flows (to float32 round-off), fewer calls
    batch_windows: int = 1
    compile_refinement: bool = False  # compile the refinement iteration (CUDA graphs on CUDA); opt-in

    def __post_init__(self) -> None:
        if self.model not in model_names():
            known = ", ".join(model_names())
            raise UnknownModelError(f"unknown `model` {self.model!r}; choose one of: {known} (see "
                                    "`daflow-vfx models`)", param="model")
        check_device_name(self.device)
        check_engine_settings(dtype=self.dtype, tile=self.tile, tile_pad=self.tile_pad, threads=self.threads,
                              max_memory=self.max_memory, detail=self.detail)
        check_batch_windows(self.batch_windows)

    def resolved_device(self) -> str:
        """The device the engine will use (``auto`` is ``cpu`` for CPU-only models)."""
        return device_for_model(self.model, self.device)


def frames_read(options: EngineOptions, frames: Iterable[int], *, first: int, last: int) -> list[int]:
    """Every plate frame the engine reads for the flows of ``frames`` on a plate spanning ``first..last``:
    the model's windows reach just outside a chunk. A job checks these, and only these, for gaps."""
    windows = plan_windows(frames, first=first, last=last, window=model_window(options.model))
    return sorted({f for win in windows for f in win})


def build_engine(options: EngineOptions, *, device: str | None = None) -> FlowEngine:
    """The engine ``options`` describe, with its model loaded. ``device``: one already resolved by
    :meth:`EngineOptions.resolved_device` (a job that reports the device resolves it once)."""
    return FlowEngine(
        options.model,
        device=device or options.resolved_device(),
        dtype=options.dtype,
        tile=options.tile,
        tile_pad=options.tile_pad,
        weights=options.weights,
        iters=options.iters,
        max_memory=options.max_memory,
        threads=options.threads,
        compile=options.compile,
        detail=options.detail,
        batch_windows=options.batch_windows,
        compile_refinement=options.compile_refinement,
    )


@dataclass(frozen=True, kw_only=True)
class VideoOptions:
    """How a command that writes video encodes it (``--codec --quality --output-colorspace``, one click
    decorator in ``daflow_vfx.cli._common``); :func:`daflow_vfx.jobs.video_out.check_video_output` checks
    them against the output path and plate, :func:`~daflow_vfx.jobs.video_out.write_plate_video` writes."""

    codec: str = "h264"  # h264 | prores (422 HQ) | prores4444 | dnxhr (HQX); see io.video.delivery_settings
    quality: str = "high"  # high | medium | low
    output_colorspace: str | None = None  # OCIO colour space or display; None: the estimators' sRGB display

    def __post_init__(self) -> None:
        from daflow_vfx.errors import check_choice
        from daflow_vfx.io.video import VIDEO_CODECS, VIDEO_QUALITIES

        check_choice(self.codec, VIDEO_CODECS, "codec")
        check_choice(self.quality, VIDEO_QUALITIES, "quality")
