"""Encode a flow data set (``pairs.csv`` + images + ``.flo``, e.g. ../shared/data/flow-dev) into a camera
or working colour space with OCIO, for the colour-boundary measurement in the README's conventions.

    .venv/bin/python tools/encode_flow_dev.py ../shared/data/flow-dev /tmp/flow-dev-logc3 \\
        --colorspace "ARRI LogC3 (EI800)"
    .venv/bin/python tools/encode_flow_dev.py ../shared/data/flow-dev /tmp/flow-dev-acescg --colorspace ACEScg

The images are sRGB; they are decoded to linear Rec.709 and encoded into ``--colorspace`` through
daflow_vfx.color (OCIO). Log and display encodings go to 16-bit TIFF (a camera's log code values),
scene-linear ones to half EXR tagged with a ``colorspace`` attribute. The ground truth is linked, not
copied; write the output outside the repository.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with pairs.csv")
    parser.add_argument("output", type=Path, help="new folder (outside the repository)")
    parser.add_argument("--colorspace", required=True, help="OCIO colour space to encode into")
    args = parser.parse_args(argv)

    from daflow_vfx.bench.accuracy import load_pairs
    from daflow_vfx.color import convert_colorspace, resolve_colorspace
    from daflow_vfx.io import open_plate, write_image
    from daflow_vfx.io.images import write_oiio_image

    space = resolve_colorspace(args.colorspace)
    linear = space.kind == "linear"
    ext = ".exr" if linear else ".tif"
    rows = []
    for pair in load_pairs(args.source):
        names = []
        for image in (pair.img1, pair.img2):
            with open_plate(image) as plate:
                pixels = plate.read(plate.info.frames[0])   # [H, W, 3] sRGB-encoded
            encoded = convert_colorspace(pixels, "srgb", args.colorspace)   # [H, W, 3]
            rel = Path(pair.name) / (image.stem + ext)
            target = args.output / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if linear:
                write_oiio_image(target, encoded, channel_names=("R", "G", "B"), pixel_type="half",
                                 attributes={"colorspace": space.ocio, "compression": "zip"})
            else:
                write_image(target, encoded, bits=16)
            names.append(str(rel))
        flow = args.output / pair.name / pair.flow.name
        if not flow.exists():
            os.symlink(pair.flow.resolve(), flow)
        rows.append({"name": pair.name, "img1": names[0], "img2": names[1],
                     "flow": str(Path(pair.name) / pair.flow.name)})
    with (args.output / "pairs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["name", "img1", "img2", "flow"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} pairs encoded as {space.ocio} into {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
