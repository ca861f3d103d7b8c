"""Nuke node snippets (``.nk`` text to paste into a node graph) for per-frame 2D transforms.

Input matrices follow :mod:`daflow_vfx.vfx.stabilization`: 3x3, pixel-index coordinates (+y down, top-left
pixel centre at (0, 0)), mapping an OUTPUT pixel to the SOURCE pixel it samples. Nuke nodes move the
image forward (a source point goes to where the node puts it) in Nuke's own coordinates, origin at the
bottom-left corner of the image, +Y up, pixel centres at half-integers. So each matrix is inverted and
conjugated by the flip ``F``::

    X = x + 0.5,  Y = height - 0.5 - y          (F, pixel index -> Nuke)
    nuke_forward = F @ inv(transform) @ inv(F)

Pure text: nothing here imports Nuke, and the output is plain ``.nk`` syntax
(``knob {{curve x1001 v x1002 v ...}}``, one key per frame), so the snippet is testable without Nuke.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = [
    "NODES",
    "cornerpin_knobs",
    "flip_matrix",
    "nuke_snippet",
    "to_nuke_forward",
    "transform_knobs",
    "transform_matrix_from_knobs",
]

NODES = ("Transform", "CornerPin2D")


def flip_matrix(height: int) -> np.ndarray:
    """``F``: pixel index (+y down, centres at integers) -> Nuke (+Y up, origin bottom-left)."""
    return np.array([[1.0, 0.0, 0.5], [0.0, -1.0, height - 0.5], [0.0, 0.0, 1.0]])


def to_nuke_forward(transform: np.ndarray, height: int) -> np.ndarray:
    """An output->source matrix (pixel indices, +y down) as the forward source->output matrix a Nuke
    node applies, in Nuke coordinates."""
    flip = flip_matrix(height)
    m = flip @ np.linalg.inv(np.asarray(transform, dtype=np.float64)) @ np.linalg.inv(flip)
    return m / m[2, 2]


def transform_knobs(transforms: Sequence[np.ndarray] | np.ndarray, *, width: int,
                    height: int) -> dict[str, np.ndarray]:
    """Per-frame Transform knobs: ``translate`` [N, 2], ``rotate`` [N] (degrees, counter-clockwise in
    Nuke, unwrapped so keys never jump by 360), ``scale`` [N] and the constant ``center`` [2].

    Nuke's Transform applies ``p' = translate + center + R(rotate) S(scale) (p - center)``, so with the
    similarity ``[[a, -b, tx], [b, a, ty]]`` (the nearest one, for translation/similarity motion):
    ``scale = |(a, b)|``, ``rotate = atan2(b, a)`` and ``translate = M(center) - center``.
    """
    center = np.array([width / 2.0, height / 2.0])
    translate, angles, scale = [], [], []
    for t in np.asarray(transforms, dtype=np.float64):
        m = to_nuke_forward(t, height)
        a = 0.5 * (m[0, 0] + m[1, 1])
        b = 0.5 * (m[1, 0] - m[0, 1])
        moved = m[:2, :2] @ center + m[:2, 2]
        translate.append(moved - center)
        angles.append(math.atan2(b, a))
        scale.append(math.hypot(a, b))
    return {
        "translate": np.array(translate).reshape(-1, 2),
        "rotate": np.degrees(np.unwrap(np.array(angles))),
        "scale": np.array(scale),
        "center": center,
    }


def transform_matrix_from_knobs(translate: Sequence[float], rotate: float, scale: float,
                                center: Sequence[float]) -> np.ndarray:
    """The forward matrix (Nuke coordinates) a Transform node with these knob values applies."""
    c, s = math.cos(math.radians(rotate)), math.sin(math.radians(rotate))
    lin = scale * np.array([[c, -s], [s, c]])
    ctr = np.asarray(center, dtype=np.float64)
    out = np.eye(3)
    out[:2, :2] = lin
    out[:2, 2] = np.asarray(translate, dtype=np.float64) + ctr - lin @ ctr
    return out


def cornerpin_knobs(transforms: Sequence[np.ndarray] | np.ndarray, *, width: int,
                    height: int) -> dict[str, np.ndarray]:
    """CornerPin2D knobs: ``from1..from4`` are the image corners in Nuke order (bottom-left,
    bottom-right, top-right, top-left) and ``to1..to4`` [N, 2] where each frame's transform puts them."""
    corners = np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])
    homog = np.concatenate([corners, np.ones((4, 1))], axis=1)  # [4, 3]
    moved = []
    for t in np.asarray(transforms, dtype=np.float64):
        p = homog @ to_nuke_forward(t, height).T  # [4, 3]
        moved.append(p[:, :2] / p[:, 2:])
    moved_arr = np.array(moved).reshape(-1, 4, 2)  # [N, 4, 2]
    knobs: dict[str, np.ndarray] = {}
    for i in range(4):
        knobs[f"to{i + 1}"] = moved_arr[:, i]
        knobs[f"from{i + 1}"] = corners[i]
    return knobs


def _num(value: float) -> str:
    text = f"{float(value):.8g}"
    return "0" if text == "-0" else text


def _curve(frames: Sequence[int], values: np.ndarray) -> str:
    keys = " ".join(f"x{int(f)} {_num(v)}" for f, v in zip(frames, values, strict=True))
    return "{curve " + keys + "}"


def _clean_name(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name) or "DaflowStabilize"
    return cleaned if not cleaned[0].isdigit() else "_" + cleaned


def nuke_snippet(frames: Sequence[int], transforms: Sequence[np.ndarray] | np.ndarray, *, width: int,
                 height: int, node: str = "Transform", name: str = "DaflowStabilize1",
                 label: str | None = None) -> str:
    """``.nk`` text for one node animated over ``frames`` (one key per frame per knob component).

    ``node="Transform"``: translate/rotate/scale about the image centre (for translation and similarity
    motion; anything else is reduced to its nearest similarity). ``node="CornerPin2D"``: to1..to4
    animated, from1..from4 the image corners (exact for affine and perspective). Paste it with a node
    selected and it connects to that node.
    """
    frames = [int(f) for f in frames]
    transforms = np.asarray(transforms, dtype=np.float64).reshape(-1, 3, 3)
    if len(frames) != len(transforms):
        raise ValueError(f"{len(frames)} frames but {len(transforms)} matrices")
    if node not in NODES:
        raise ValueError(f"unknown node {node!r}; choose one of {', '.join(NODES)}")
    lines = ["set cut_paste_input [stack 0]", "push $cut_paste_input", f"{node} {{"]
    if node == "Transform":
        knobs = transform_knobs(transforms, width=width, height=height)
        tr = knobs["translate"]
        lines.append(f" translate {{{_curve(frames, tr[:, 0])} {_curve(frames, tr[:, 1])}}}")
        lines.append(f" rotate {{{_curve(frames, knobs['rotate'])}}}")
        lines.append(f" scale {{{_curve(frames, knobs['scale'])}}}")
        cx, cy = knobs["center"]
        lines.append(f" center {{{_num(cx)} {_num(cy)}}}")
        lines.append(" black_outside true")
    else:
        knobs = cornerpin_knobs(transforms, width=width, height=height)
        for i in range(1, 5):
            to = knobs[f"to{i}"]
            lines.append(f" to{i} {{{_curve(frames, to[:, 0])} {_curve(frames, to[:, 1])}}}")
        for i in range(1, 5):
            fx, fy = knobs[f"from{i}"]
            lines.append(f" from{i} {{{_num(fx)} {_num(fy)}}}")
    lines.append(f" name {_clean_name(name)}")
    if label:
        # Tcl would expand [ ] $ \ and quotes inside the string: keep the label to plain characters.
        safe = re.sub(r"[^\w .:,+-]", " ", label)
        lines.append(f' label "{safe}"')
    lines.append(" selected true")
    lines.append("}")
    return "\n".join(lines) + "\n"
