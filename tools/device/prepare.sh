#!/usr/bin/env bash
# Run HERE (not on the device) before the prepared device run: fetch the wheels the device lacks.
# The device image has torch, torchvision, numpy, opencv, scikit-image, safetensors, pyyaml and tqdm,
# but not diffusers (the DiT blocks); PyAV, OpenImageIO and OpenEXR are not needed on the training
# path. The wheels go to .whl/ (ignored by git), which the device call carries.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
# The version this checkout's venv runs, so the device trains with the code the tests ran.
diffusers_version=$(.venv/bin/python -c 'import diffusers; print(diffusers.__version__)')
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d .whl "diffusers==${diffusers_version}" importlib_metadata
# The training path needs diffusers' model blocks only. Its pipelines are two thirds of the wheel, and
# the tree that travels (at most 64 MiB) must also hold every variant's committed weights, so the
# wheel is repacked without them (their package __init__ files stay; diffusers imports lazily).
python3 - <<'PY'
import glob, os, zipfile
src = glob.glob(".whl/diffusers-*.whl")[0]
tmp = src + ".slim"
drop = ("diffusers/pipelines/", "diffusers/modular_pipelines/")
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        if info.filename.startswith(drop) and not info.filename.endswith("/__init__.py"):
            continue
        zout.writestr(info, zin.read(info.filename))
os.replace(tmp, src)
PY
ls -l .whl
size=$( (git ls-files -z --cached --others --exclude-standard; find .whl -type f -print0) | du -cb --files0-from=- | tail -1 | cut -f1)
echo "tree that travels: $((size / 1048576)) MiB of at most 64 MiB"
if [ "$size" -gt $((60 * 1048576)) ]; then
    echo "warning: close to the device's 64 MiB limit; see DEVELOPERS.md (tree size)" >&2
fi
