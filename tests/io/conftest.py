"""Helpers for the I/O tests: write and read images with OpenImageIO directly, independent of daflow_vfx."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest

oiio = pytest.importorskip("OpenImageIO")


def oiio_write(path: str | os.PathLike, pixels: np.ndarray, channels: Sequence[str] | None = None,
               pixel_type: str = "half", **attributes: object) -> str:
    """Write float pixels [H, W, C] with OpenImageIO as given (no daflow_vfx code involved)."""
    data = np.ascontiguousarray(pixels, dtype=np.float32)
    if data.ndim == 2:
        data = data[..., None]
    height, width, nchannels = data.shape
    spec = oiio.ImageSpec(width, height, nchannels, oiio.TypeDesc(pixel_type))
    if channels is not None:
        spec.channelnames = tuple(channels)
    for key, value in attributes.items():
        spec.attribute(key, value)
    out = oiio.ImageOutput.create(os.fspath(path))
    assert out is not None, oiio.geterror()
    assert out.open(os.fspath(path), spec), out.geterror()
    assert out.write_image(data), out.geterror()
    out.close()
    return os.fspath(path)


def oiio_channels(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every channel of an image by its exact name, as float32 [H, W]."""
    inp = oiio.ImageInput.open(os.fspath(path))
    assert inp is not None, oiio.geterror()
    spec = inp.spec()
    pixels = inp.read_image(0, 0, 0, spec.nchannels, "float")
    assert pixels is not None, inp.geterror()
    pixels = np.asarray(pixels).reshape(spec.height, spec.width, spec.nchannels)
    inp.close()
    return {name: pixels[..., i] for i, name in enumerate(spec.channelnames)}


def oiio_attributes(path: str | os.PathLike) -> dict[str, object]:
    inp = oiio.ImageInput.open(os.fspath(path))
    assert inp is not None, oiio.geterror()
    attrs = {a.name: a.value for a in inp.spec().extra_attribs}
    inp.close()
    return attrs


def truncate(path: str | os.PathLike, fraction: float = 0.5) -> None:
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: int(len(data) * fraction)])


@pytest.fixture
def texture() -> np.ndarray:
    """A small random RGB texture [24, 32, 3] in [0, 1], exactly representable in half."""
    rng = np.random.default_rng(7)
    return (rng.integers(0, 1024, size=(24, 32, 3)) / 1024).astype(np.float32)


@pytest.fixture
def iox() -> SimpleNamespace:
    """The helpers above as a fixture, so tests need no import of this conftest (works in any import mode)."""
    return SimpleNamespace(write=oiio_write, channels=oiio_channels, attributes=oiio_attributes,
                           truncate=truncate)
