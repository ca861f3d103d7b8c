"""The `.nk` writer: the snippet parses, keys every frame, and converts to Nuke's y-up coordinates."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from daflow_vfx.vfx.nuke_snippet import (
    cornerpin_knobs,
    nuke_snippet,
    to_nuke_forward,
    transform_knobs,
    transform_matrix_from_knobs,
)

W, H = 96, 64
FRAMES = [1001, 1002, 1003, 1004]


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def similarity_about(cx: float, cy: float, deg: float, scale: float, dx: float, dy: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)) * scale, math.sin(math.radians(deg)) * scale
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return translation(cx + dx, cy + dy) @ rot @ translation(-cx, -cy)


def parse_nk(text: str) -> tuple[str, dict[str, str]]:
    """Node class and knob name -> raw value, from the one node in a snippet."""
    match = re.search(r"^(\w+) \{\n(.*?)\n\}$", text, re.S | re.M)
    assert match, text
    knobs = {}
    for line in match.group(2).splitlines():
        name, _, value = line.strip().partition(" ")
        knobs[name] = value
    return match.group(1), knobs


def curves(value: str) -> list[dict[int, float]]:
    """Each ``{curve x<frame> <value> ...}`` in a knob value as {frame: value}."""
    out = []
    for body in re.findall(r"\{curve ([^}]*)\}", value):
        keys = re.findall(r"x(-?\d+) (\S+)", body)
        assert len(keys) * 2 == len(body.split()), body  # every value has its own frame
        out.append({int(f): float(v) for f, v in keys})
    return out


def nuke_point(x: float, y: float) -> np.ndarray:
    """Written out here, independently of the module: pixel index (+y down) -> Nuke (+Y up)."""
    return np.array([x + 0.5, H - 0.5 - y])


def test_transform_snippet_parses_and_keys_every_frame() -> None:
    mats = [translation(k, -k) for k in range(len(FRAMES))]
    text = nuke_snippet(FRAMES, mats, width=W, height=H, label="daflow-vfx stabilize [x] $y")
    assert text.startswith("set cut_paste_input [stack 0]\npush $cut_paste_input\n")
    node, knobs = parse_nk(text)
    assert node == "Transform"
    assert {"translate", "rotate", "scale", "center", "name", "label"} <= set(knobs)
    tr = curves(knobs["translate"])
    assert len(tr) == 2 and all(sorted(c) == FRAMES for c in tr)
    assert [sorted(c) for c in curves(knobs["rotate"]) + curves(knobs["scale"])] == [FRAMES, FRAMES]
    assert knobs["center"] == "{48 32}"
    assert "[" not in knobs["label"] and "$" not in knobs["label"]  # Tcl would expand them
    assert text.count("{") == text.count("}")


def test_transform_y_flip_and_rotation_sign() -> None:
    # output -> source moves by (+3, +5) in pixel rows (down): the image itself moves left and UP on
    # screen, which in Nuke's +Y-up space is translate (-3, +5).
    knobs = transform_knobs([translation(3.0, 5.0)], width=W, height=H)
    np.testing.assert_allclose(knobs["translate"][0], [-3.0, 5.0], atol=1e-9)
    assert knobs["rotate"][0] == pytest.approx(0.0, abs=1e-9)
    # source -> output turning +10 degrees in +y-down pixels is clockwise on screen: -10 in Nuke
    forward = similarity_about((W - 1) / 2, (H - 1) / 2, 10.0, 1.0, 0.0, 0.0)
    knobs = transform_knobs([np.linalg.inv(forward)], width=W, height=H)
    assert knobs["rotate"][0] == pytest.approx(-10.0, abs=1e-9)
    np.testing.assert_allclose(knobs["translate"][0], [0.0, 0.0], atol=1e-9)  # about the image centre


def test_transform_knobs_rebuild_the_motion() -> None:
    rng = np.random.default_rng(4)
    mats = [np.linalg.inv(similarity_about(40.0, 20.0, rng.normal(0, 5), 1 + rng.normal(0, 0.05),
                                           *rng.normal(0, 4, 2))) for _ in FRAMES]
    knobs = transform_knobs(mats, width=W, height=H)
    for k, mat in enumerate(mats):
        rebuilt = transform_matrix_from_knobs(knobs["translate"][k], knobs["rotate"][k], knobs["scale"][k],
                                              knobs["center"])
        np.testing.assert_allclose(rebuilt, to_nuke_forward(mat, H), atol=1e-9)
        # a source pixel lands where the stabilized frame shows it, in Nuke coordinates
        src = np.array([10.0, 50.0])
        out = np.linalg.inv(mat) @ np.array([*src, 1.0])
        got = rebuilt @ np.array([*nuke_point(*src), 1.0])
        np.testing.assert_allclose(got[:2] / got[2], nuke_point(*(out[:2] / out[2])), atol=1e-9)


def test_rotation_keys_never_jump_by_360() -> None:
    mats = [np.linalg.inv(similarity_about(47.5, 31.5, deg, 1.0, 0, 0)) for deg in (170, 179, 181, 190)]
    rot = transform_knobs(mats, width=W, height=H)["rotate"]
    assert np.abs(np.diff(rot)).max() < 20


def test_cornerpin_snippet_and_y_flip() -> None:
    mats = [translation(0.0, -2.0 * k) for k in range(len(FRAMES))]  # image moves down by 2k pixels
    text = nuke_snippet(FRAMES, mats, width=W, height=H, node="CornerPin2D", name="pin 1")
    node, knobs = parse_nk(text)
    assert node == "CornerPin2D"
    assert knobs["name"] == "pin_1"
    for i in range(1, 5):
        to = curves(knobs[f"to{i}"])
        assert len(to) == 2 and all(sorted(c) == FRAMES for c in to)
    assert (knobs["from1"], knobs["from2"], knobs["from3"], knobs["from4"]) == (
        "{0 0}", "{96 0}", "{96 64}", "{0 64}")
    pins = cornerpin_knobs(mats, width=W, height=H)
    # moving down the image is moving towards Y = 0 in Nuke: bottom-left corner goes to (0, -2k)
    np.testing.assert_allclose(pins["to1"][:, 1], [0.0, -2.0, -4.0, -6.0], atol=1e-9)
    np.testing.assert_allclose(pins["to3"][:, 0], W, atol=1e-9)


def test_cornerpin_matches_a_perspective_matrix() -> None:
    forward = np.array([[1.02, 0.03, 2.0], [-0.01, 0.98, -1.5], [1e-4, -2e-4, 1.0]])  # source -> output
    pins = cornerpin_knobs([np.linalg.inv(forward)], width=W, height=H)
    for i, (x, y) in enumerate([(-0.5, H - 0.5), (W - 0.5, H - 0.5), (W - 0.5, -0.5), (-0.5, -0.5)]):
        # Nuke's corner i is the pixel-index point (x, y): push it through the forward matrix
        p = forward @ np.array([x, y, 1.0])
        np.testing.assert_allclose(pins[f"to{i + 1}"][0], nuke_point(*(p[:2] / p[2])), atol=1e-9)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="frames"):
        nuke_snippet([1, 2], [np.eye(3)], width=W, height=H)
    with pytest.raises(ValueError, match="node"):
        nuke_snippet([1], [np.eye(3)], width=W, height=H, node="Grade")
