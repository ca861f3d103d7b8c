"""Contact sheets: a grid of pictures (before/after, frames of a retime) saved as one PNG for the docs."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["contact_sheet"]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 2:
        data = data[..., None]
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    if data.shape[2] == 4:
        data = data[..., :3]
    if data.ndim != 3 or data.shape[2] != 3:
        raise ValueError(f"contact_sheet takes [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] images, got "
                         f"{data.shape}")
    return data


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], labels: Sequence[Sequence[str | None]] | None = None,
                  path: str | os.PathLike | None = None, *, gap: int = 4, background: float = 0.1,
                  scale: float = 1.0) -> np.ndarray:
    """Lay ``rows`` of display-referred images ([0, 1], any sizes) out as one grid; optionally save it.

    ``labels`` has the shape of ``rows`` (None or "" for no label); each is drawn in the cell's top-left
    corner, white on a dark box. ``scale`` resizes every cell (nearest neighbour when enlarging, so
    pixels stay visible). Cells are centred in a grid of the widest column and tallest row; ``gap``
    pixels of ``background`` grey separate them. Returns the sheet ``[H, W, 3]`` float32 and writes it
    (PNG, TIFF, EXR... by extension, atomically) when ``path`` is given.
    """
    import cv2

    if not rows or not any(len(r) for r in rows):
        raise ValueError("contact_sheet needs at least one image")
    if labels is not None and (len(labels) != len(rows) or any(len(a) > len(b) for a, b in
                                                                  zip(labels, rows, strict=True))):
        raise ValueError("labels must have the shape of rows")
    cells: list[list[np.ndarray]] = []
    for row in rows:
        out_row = []
        for image in row:
            rgb = _as_rgb(image)
            if scale != 1.0:
                size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
                mode = cv2.INTER_NEAREST if scale > 1.0 else cv2.INTER_AREA
                rgb = cv2.resize(rgb, size, interpolation=mode)
            out_row.append(np.clip(rgb, 0.0, 1.0))
        cells.append(out_row)
    ncols = max(len(r) for r in cells)
    col_w = [max((r[c].shape[1] for r in cells if c < len(r)), default=0) for c in range(ncols)]
    row_h = [max((im.shape[0] for im in r), default=0) for r in cells]
    height = sum(row_h) + gap * (len(cells) + 1)
    width = sum(col_w) + gap * (ncols + 1)
    sheet = np.full((height, width, 3), background, np.float32)  # [H, W, 3]
    y = gap
    for r, row in enumerate(cells):
        x = gap
        for c, image in enumerate(row):
            oy = y + (row_h[r] - image.shape[0]) // 2
            ox = x + (col_w[c] - image.shape[1]) // 2
            sheet[oy:oy + image.shape[0], ox:ox + image.shape[1]] = image
            text = labels[r][c] if labels is not None and c < len(labels[r]) else None
            if text:
                _draw_label(sheet, str(text), ox, oy, image.shape[1])
            x += col_w[c] + gap
        y += row_h[r] + gap
    if path is not None:
        from daflow_vfx.io import write_image

        write_image(path, sheet)
    return sheet


def _draw_label(sheet: np.ndarray, text: str, x: int, y: int, max_width: int) -> None:
    """White text on a dark box at (x, y), scaled down to fit the cell's width."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    font_scale = 0.4
    (tw, th), base = cv2.getTextSize(text, font, font_scale, 1)
    if tw > max_width - 4 and tw > 0:
        font_scale *= max(0.2, (max_width - 4) / tw)
        (tw, th), base = cv2.getTextSize(text, font, font_scale, 1)
    box_h, box_w = th + base + 4, tw + 4
    y1, x1 = min(sheet.shape[0], y + box_h), min(sheet.shape[1], x + box_w)
    # OpenCV draws text into 8-bit images only: draw a coverage mask, then composite white over the box
    mask = np.zeros((box_h, box_w), np.uint8)
    top = int(np.iinfo(np.uint8).max)
    cv2.putText(mask, text, (2, th + 2), font, font_scale, top, 1, cv2.LINE_AA)
    alpha = (mask.astype(np.float32) / top)[: y1 - y, : x1 - x, None]  # [h, w, 1] text coverage
    region = sheet[y:y1, x:x1] * 0.35
    sheet[y:y1, x:x1] = region * (1.0 - alpha) + alpha
