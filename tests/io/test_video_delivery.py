"""Delivery codecs (``--codec``/``--quality``): each written and read back, pixel format and all."""

from __future__ import annotations

import av
import numpy as np
import pytest

from daflow_vfx.errors import UsageError
from daflow_vfx.io import open_plate, write_video
from daflow_vfx.io.video import delivery_settings
from tests.helpers import noise_texture

W, H = 256, 128   # DNxHR's smallest frames are 256x120


@pytest.mark.parametrize(("codec", "ext", "decoder", "profile", "bits", "chroma", "alpha"), [
    ("h264", ".mp4", "h264", None, 8, (2, 2), False),
    ("prores", ".mov", "prores", "HQ", 10, (2, 1), False),
    ("prores4444", ".mov", "prores", "4444", 10, (1, 1), True),
    ("dnxhr", ".mov", "dnxhd", "DNXHR HQX", 10, (2, 1), False),
])
def test_codec_reads_back(tmp_path, codec: str, ext: str, decoder: str, profile: str | None, bits: int,
                          chroma: tuple[int, int], alpha: bool) -> None:
    path = tmp_path / f"out{ext}"
    encoder, pix_fmt, options = delivery_settings(codec, "high", str(path), size=(W, H))
    frames = [noise_texture(H, W, seed=k) for k in range(3)]   # [H, W, 3] each
    assert write_video(path, frames, fps=24, codec=encoder, pix_fmt=pix_fmt, options=options) == 3
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == decoder
        if profile is not None:
            assert stream.codec_context.profile == profile
        decoded = list(container.decode(stream))
    assert len(decoded) == 3 and (decoded[0].width, decoded[0].height) == (W, H)
    fmt = decoded[0].format
    assert min(c.bits for c in fmt.components) >= bits   # ProRes 4444 decodes at 12 bits: at least 10
    assert max(c.bits for c in fmt.components) < 16 or bits == 8
    luma, cb = fmt.components[0], fmt.components[1]
    assert (luma.width // cb.width, luma.height // cb.height) == chroma   # 4:2:0, 4:2:2 or 4:4:4
    assert fmt.has_alpha == alpha if hasattr(fmt, "has_alpha") else (len(fmt.components) == 4) == alpha
    with open_plate(path) as plate:   # and our own reader takes it back
        assert len(plate.info.frames) == 3 and (plate.info.width, plate.info.height) == (W, H)
        # subsampled chroma blurs colour edges, so compare on average
        assert np.abs(plate.read(1) - frames[0]).mean() < (0.035 if codec == "h264" else 0.02)


def test_codec_refuses_what_cannot_be_written(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"\.mov") as caught:
        delivery_settings("prores", "high", str(tmp_path / "o.mp4"))
    assert caught.value.param == "codec"
    with pytest.raises(UsageError, match="256x120"):
        delivery_settings("dnxhr", "high", str(tmp_path / "o.mov"), size=(128, 64))
    with pytest.raises(UsageError, match="quality"):
        delivery_settings("h264", "best", str(tmp_path / "o.mp4"))
    assert delivery_settings("dnxhr", "medium", str(tmp_path / "o.mxf"))[1:] == ("yuv422p",
                                                                                 {"profile": "dnxhr_hq"})
