"""Make the README's propagate picture: a clean-up patch painted once, carried through the demo plate.

    python docs/make_propagate_picture.py [--model daflow-compact] [--work out/pictures]

It writes a 60-frame demo plate (the quick start's plate, longer so frame +48 exists), paints a flat grey
patch on the background of frame 1001 (where the demo's disc passes later), runs `daflow-vfx propagate
--comp` through the click CLI, and lays out frames 1001, +12, +24 and +48 before and after as
docs/images/propagate.jpg. Nothing is drawn by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from daflow_vfx.cli import main
from daflow_vfx.color import to_display
from daflow_vfx.demo import write_demo_plate
from daflow_vfx.io import open_plate, write_image
from daflow_vfx.vfx.contact import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
OFFSETS = (0, 12, 24, 48)


def run(args: list[str]) -> str:
    from click.testing import CliRunner

    res = CliRunner().invoke(main, args, catch_exceptions=False)
    if res.exit_code != 0:
        raise SystemExit(f"daflow-vfx {' '.join(args)} failed:\n{res.output}")
    return res.output


def read(pattern: str, frame: int) -> np.ndarray:
    # propagate wrote only the frames shown, so the sequence has gaps by design
    with open_plate(pattern, allow_gaps=True) as plate:
        return to_display(plate.read(frame), "srgb")


def main_(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--work", default=str(ROOT / "out" / "pictures"))
    a = ap.parse_args(argv)
    work = Path(a.work) / "propagate"
    plate, _, _ = write_demo_plate(str(work / "demo60"), frames=60)
    h, w = 192, 320
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # a patch on the background, where the disc crosses around frame +29
    alpha = np.clip(14.5 - np.hypot(xs - 230.0, ys - 70.0), 0.0, 1.0)
    paint = np.dstack([0.55 * alpha, 0.55 * alpha, 0.55 * alpha, alpha])  # premultiplied flat grey
    write_image(work / "paint.png", paint)
    frames = ",".join(str(1001 + k) for k in OFFSETS)
    out = run(["propagate", plate, "--paint", str(work / "paint.png"), "--at", "1001", "--frames", frames,
               "-o", str(work / "comp" / "comp.####.png"), "--comp", "--model", a.model])
    print(out.strip().splitlines()[-1])
    before = [read(plate, 1001 + k) for k in OFFSETS]
    after = [read(str(work / "comp" / "comp.####.png"), 1001 + k) for k in OFFSETS]
    labels = ["painted 1001"] + [f"+{k}" for k in OFFSETS[1:]]
    target = ROOT / "docs" / "images" / "propagate.jpg"
    contact_sheet([before, after], [[f"plate {lab}" for lab in labels], labels], target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main_()
