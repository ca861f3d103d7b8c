"""Make the README's retime and stabilize pictures from the demo plate.

    python docs/make_pictures.py [--model dis] [--work out/pictures]

It runs the same commands the README shows (in-process, through the click CLI), on the demo
plate and on a shaken copy of it (deterministic jitter), and writes contact sheets to
docs/images/. Every picture is made by this script; nothing is drawn by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from daflow_vfx.cli import main
from daflow_vfx.color import to_display
from daflow_vfx.io import open_plate, write_image
from daflow_vfx.vfx.contact import contact_sheet

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> None:
    from click.testing import CliRunner

    res = CliRunner().invoke(main, args, catch_exceptions=False)
    if res.exit_code != 0:
        raise SystemExit(f"daflow-vfx {' '.join(args)} failed:\n{res.output}")


def read(pattern: str, frame: int) -> np.ndarray:
    with open_plate(pattern) as plate:
        return to_display(plate.read(frame), "srgb")


def shake_plate(src: str, dst_dir: Path, *, seed: int = 7) -> str:
    """A shaken copy of the plate: per-frame random translation (+-4 px) and rotation (+-1 deg)."""
    import cv2

    rng = np.random.default_rng(seed)
    dst_dir.mkdir(parents=True, exist_ok=True)
    with open_plate(src) as plate:
        for f in plate.info.frames:
            img = plate.read(f)
            h, w = img.shape[:2]
            m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-1, 1), 1.0)
            m[:, 2] += rng.uniform(-4, 4, size=2)
            out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            write_image(dst_dir / f"shaky.{f:04d}.png", out)
    return str(dst_dir / "shaky.####.png")


def main_(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="dis")
    ap.add_argument("--work", default=str(ROOT / "out" / "pictures"))
    a = ap.parse_args(argv)
    work = Path(a.work)
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)

    run(["demo", "-o", str(work / "demo"), "--model", a.model])
    plate = str(work / "demo" / "plate" / "demo.####.png")

    # Retime: 4x slow motion with motion interpolation, and the same with a plain frame blend.
    run(
        [
            "retime",
            plate,
            "-o",
            str(work / "slowmo" / "slowmo.####.png"),
            "--speed",
            "0.25",
            "--model",
            a.model,
        ]
    )
    run(
        [
            "retime",
            plate,
            "-o",
            str(work / "blend" / "blend.####.png"),
            "--speed",
            "0.25",
            "--method",
            "blend",
        ]
    )
    sidecar = json.loads((work / "slowmo" / "slowmo.retime.json").read_text())
    frames = sidecar["frames"]
    # Output frames whose source times fall between plate frames 1010 and 1011.
    picks = [e for e in frames if 1010 < float(e["source"]) < 1011][:4]
    top = [read(plate, 1010)] + [read(str(work / "slowmo" / "slowmo.####.png"), e["frame"]) for e in picks]
    top += [read(plate, 1011)]
    bottom = [read(plate, 1010)] + [read(str(work / "blend" / "blend.####.png"), e["frame"]) for e in picks]
    bottom += [read(plate, 1011)]
    labels_top = ["1010"] + [f"t={float(e['source']):.3f}" for e in picks] + ["1011"]
    labels_bottom = ["1010"] + ["blend"] * len(picks) + ["1011"]
    contact_sheet([top, bottom], [labels_top, labels_bottom], images / "retime.jpg")

    # Stabilize: a shaken copy of the demo plate, before and after.
    shaky = shake_plate(plate, work / "shaky")
    run(
        [
            "stabilize",
            shaky,
            "-o",
            str(work / "stable" / "stable.####.png"),
            "--model",
            a.model,
            "--smooth",
            "1",
            "--crop",
            "auto",
            "--nk",
            str(work / "stable" / "stable.nk"),
        ]
    )
    pick = [1004, 1008, 1012, 1016, 1020]
    before = [read(shaky, f) for f in pick]
    after = [read(str(work / "stable" / "stable.####.png"), f) for f in pick]
    # A fixed crosshair makes the remaining motion visible.
    for img in before + after:
        h, w = img.shape[:2]
        img[h // 2, :, :] = (1.0, 0.2, 0.2)
        img[:, w // 2, :] = (1.0, 0.2, 0.2)
    # Locked-off camera: the mean of every frame is sharp where the shaken plate's mean is smeared.
    run(
        [
            "stabilize",
            shaky,
            "-o",
            str(work / "locked" / "locked.####.png"),
            "--model",
            a.model,
            "--lock",
            "--crop",
            "auto",
        ]
    )
    with open_plate(shaky) as p:
        frames_all = p.info.frames
    mean_shaky = np.mean([read(shaky, f) for f in frames_all], axis=0)
    mean_locked = np.mean([read(str(work / "locked" / "locked.####.png"), f) for f in frames_all], axis=0)
    contact_sheet(
        [before, after, [mean_shaky, mean_locked]],
        [
            [f"shaky {f}" for f in pick],
            [f"stabilized {f}" for f in pick],
            ["mean of all shaky frames", "mean of all frames, --lock"],
        ],
        images / "stabilize.jpg",
    )
    print(f"wrote {images / 'retime.jpg'} and {images / 'stabilize.jpg'}")


if __name__ == "__main__":
    main_()
