"""The fault-injection suite's plumbing: the installed command run as a farm runs it, tiny plates, and the
checks every case makes (exit code, exactly one ``Error:`` line, no traceback, nothing left behind).

Every case runs ``daflow-vfx`` from this environment's ``bin`` folder in a subprocess with the ``dis``
model on plates of a few dozen pixels, so the whole suite stays well under a minute of work on two cores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import translated_frames, write_sequence

HOOKS = Path(__file__).resolve().parent / "hooks"
FRAMES = 8  # plate frames 1..8
SIZE = (24, 32)  # height, width: tiny, the suite is about files, not flow quality
FAST = ["--model", "dis", "--device", "cpu"]


def installed_command() -> str:
    """The ``daflow-vfx`` script installed next to this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("daflow-vfx")
    found = str(beside) if beside.is_file() else shutil.which("daflow-vfx")
    if found is None:
        pytest.fail("the daflow-vfx command is not installed; run `pip install -e .` first")
    return found


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("Error:")]


def command_env(slow: str | None = None) -> dict[str, str]:
    """The environment of a started command; ``slow`` turns on the hook in ``hooks/sitecustomize.py``."""
    env = dict(os.environ)
    env.pop("DAFLOW_FAULT_SLOW", None)
    if slow:
        env["PYTHONPATH"] = os.pathsep.join([str(HOOKS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["DAFLOW_FAULT_SLOW"] = slow
    return env


def run_cli(*args: str | os.PathLike, cwd: Path, timeout: float = 120, slow: str | None = None,
            **popen: object) -> Result:
    """Run the installed command to the end; stdout is a pipe, as on a farm (``Progress:`` lines)."""
    done = subprocess.run([installed_command(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=command_env(slow), **popen)
    return Result(done.returncode, done.stdout, done.stderr)


def start_cli(*args: str | os.PathLike, cwd: Path, slow: str | None = None) -> subprocess.Popen:
    """Start the installed command without waiting (for signals and concurrent runs)."""
    return subprocess.Popen([installed_command(), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=command_env(slow))


def assert_one_error(result: Result, code: int, *contains: str) -> str:
    """The failure every case expects: exit ``code``, exactly one ``Error:`` line (the last line of
    stderr), no traceback, no ``Aborted!``. Returns the Error line."""
    assert result.code == code, f"exit {result.code}, wanted {code}:\n{result.output}"
    assert "Traceback" not in result.output and "Aborted!" not in result.output, result.output
    errors = result.error_lines
    assert len(errors) == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == errors[0], result.output
    for text in contains:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    return errors[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: relative path -> content hash (``"dir"`` for folders)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        found[rel] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def temp_files(root: Path) -> list[str]:
    """Hidden temp files (``.name.tmp-...``) and write probes anywhere under ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*")
                  if ".tmp-" in p.name or p.name.startswith(".daflow-write-test-"))


def read_channels(path: Path) -> dict[str, np.ndarray]:
    """Every channel of an image by name, float32 [H, W]."""
    import OpenImageIO as oiio

    buf = oiio.ImageBuf(str(path))
    pixels = buf.get_pixels(oiio.FLOAT)
    assert not buf.has_error, buf.geterror()
    return {name: np.asarray(pixels[..., i]) for i, name in enumerate(buf.spec().channelnames)}


def assert_same_pixels(got: Path, want: Path) -> None:
    """Two image files hold the same channels with bit-identical pixels."""
    a, b = read_channels(got), read_channels(want)
    assert list(a) == list(b), (got, list(a), list(b))
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{got.name} {name} differs from {want}"


def assert_same_outputs(folder: Path, reference: Path, names: list[str]) -> None:
    for name in names:
        assert_same_pixels(folder / name, reference / name)


@pytest.fixture(scope="session")
def plates(tmp_path_factory) -> Path:
    """Source plates shared by the suite (copied into each case's workspace, never written):
    ``exr/p.####.exr`` and ``png/p.####.png`` (frames 1-8, 32x24), ``other/q.####.exr`` (another shot of
    the same size), ``big/p.####.exr`` (48x40) and ``ok.mp4`` (6 frames)."""
    from daflow_vfx.demo import encode_h264

    root = tmp_path_factory.mktemp("plates")
    frames = translated_frames(FRAMES, *SIZE, dx=1, dy=1, seed=1)
    write_sequence(root / "exr", frames, name="p", first=1, ext="exr")
    write_sequence(root / "png", frames, name="p", first=1, ext="png")
    write_sequence(root / "other", translated_frames(FRAMES, *SIZE, dx=-1, dy=0, seed=7), name="q", first=1,
                   ext="exr")
    write_sequence(root / "big", translated_frames(FRAMES, 40, 48, dx=1, dy=0, seed=3), name="p", first=1,
                   ext="exr")
    encode_h264(frames[:6], str(root / "ok.mp4"), crf=12)
    return root


@pytest.fixture
def work(plates, tmp_path) -> Path:
    """A fresh workspace holding a copy of every plate; commands run with it as the current folder."""
    for item in plates.iterdir():
        if item.is_dir():
            shutil.copytree(item, tmp_path / item.name)
        else:
            shutil.copy2(item, tmp_path / item.name)
    return tmp_path


@pytest.fixture(scope="session")
def reference(plates, tmp_path_factory) -> Path:
    """An uninterrupted render of ``exr/p.####.exr`` (nuke layout, dis): what every resumed or concurrent
    render must equal pixel for pixel. Rendered from the session plates, so the header's source path
    differs from a workspace's; pixels are what is compared."""
    root = tmp_path_factory.mktemp("reference")
    result = run_cli("render", plates / "exr" / "p.####.exr", "-o", root / "v.####.exr", *FAST, cwd=root)
    assert result.code == 0, result.output
    return root


def vector_names(frames: range | list[int] = range(1, FRAMES + 1)) -> list[str]:
    return [f"v.{f:04d}.exr" for f in frames]
