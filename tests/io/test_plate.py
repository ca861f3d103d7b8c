"""The plate reader contract is enforced: a reader without read() or close() cannot be made."""

from __future__ import annotations

import pytest

from daflow_vfx.io.plate import Plate


def test_plate_readers_must_implement_read_and_close() -> None:
    class NoClose(Plate):
        def read(self, frame: int):
            return None

    with pytest.raises(TypeError):
        Plate()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="close"):
        NoClose()  # type: ignore[abstract]
