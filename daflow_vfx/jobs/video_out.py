"""Video outputs of the jobs (retime, stabilize, degrade, propagate): checked before any work, then
written from plate values through the colour boundary with the codec of :class:`VideoOptions`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from daflow_vfx.color import ColorSpace, check_output_colorspace, output_transfer, to_output
from daflow_vfx.jobs.options import VideoOptions

__all__ = ["check_video_output", "write_plate_video"]


def check_video_output(video: VideoOptions, path: str, *, ocio_config: str | None = None,
                       size: tuple[int, int] | None = None) -> None:
    """Refuse (UsageError naming the option) a codec the container cannot hold, a frame too small for it
    (``size`` = (width, height)) or an ``output_colorspace`` the OCIO config does not know."""
    from daflow_vfx.io.video import delivery_settings

    delivery_settings(video.codec, video.quality, path, size=size)
    check_output_colorspace(video.output_colorspace, ocio_config)


def write_plate_video(path: str, frames: Iterable[np.ndarray], *, fps: float, space: ColorSpace,
                      video: VideoOptions) -> int:
    """Write plate-valued frames (float32 ``[H, W, 3]`` in ``space``) as a video, atomically; the number
    of frames written. Values go to ``video.output_colorspace`` (default: the estimators' sRGB display)
    and the file's transfer characteristic is tagged to match."""
    from daflow_vfx.io.video import delivery_settings, write_video

    encoder, pix_fmt, options = delivery_settings(video.codec, video.quality, path)
    return write_video(path, (to_output(image, space, video.output_colorspace) for image in frames),
                       fps=fps, codec=encoder, pix_fmt=pix_fmt, options=options,
                       color_trc=output_transfer(space, video.output_colorspace))
