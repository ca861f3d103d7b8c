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
ls -l .whl
du -sh --exclude=.git --exclude=.venv --exclude=.ci-venv . | sed 's/^/tree that travels (limit 64 MiB): /'
