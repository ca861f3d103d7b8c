"""A full disk: every kind of output fails with one ``Error:`` line and leaves nothing on the disk.

The disk is a real one where the test can make it: a 64 KiB tmpfs filled to the last byte, mounted
directly (root, as in CI) or inside a user namespace (``unshare -rm``). Where neither is allowed, the
command runs with a file-size limit of 0 bytes (``RLIMIT_FSIZE``), so every write fails in the kernel
through the same real write path (EFBIG instead of ENOSPC). ``DAFLOW_FAULT_DISK=mount|unshare|rlimit``
forces one way.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.faults.conftest import FAST, Result, assert_one_error, installed_command, run_cli, snapshot

SIZE = 64 * 1024
FILL_CAP = 1024 * 1024  # never write more than this, whatever the folder turns out to be


def _mount(folder: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def _fill(folder: Path) -> None:
    """Write zeros until the small file system refuses: no byte left for anyone. Refuses to run on a
    large file system, and stops at FILL_CAP in any case."""
    st = os.statvfs(folder)
    assert st.f_blocks * st.f_frsize <= 2 * SIZE, f"{folder} is not the small tmpfs; not filling it"
    with open(folder / "fill", "wb", buffering=0) as handle:
        try:
            for _ in range(FILL_CAP // 4096):
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        else:
            pytest.fail(f"{folder} took {FILL_CAP} bytes; it is not the {SIZE}-byte tmpfs")


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                          capture_output=True).returncode == 0


class FullDisk:
    """``disk/`` inside a workspace, on a file system with no free space; :meth:`run` runs the installed
    command there and reports what the disk holds afterwards (the filler aside)."""

    def __init__(self, work: Path, how: str) -> None:
        self.work, self.how, self.folder = work, how, work / "disk"
        self.folder.mkdir()
        if how == "mount":
            assert _mount(self.folder), "mounting the tmpfs failed"
            try:
                _fill(self.folder)
            except BaseException:
                self.close()
                raise

    @property
    def full_message(self) -> str:
        return "disk is full" if self.how in ("mount", "unshare") else ""

    def run(self, *args: str) -> tuple[Result, list[str]]:
        if self.how == "unshare":
            return self._run_unshared(args)
        popen: dict[str, object] = {}
        if self.how == "rlimit":
            popen["preexec_fn"] = _no_file_growth
        result = run_cli(*args, cwd=self.work, **popen)
        return result, sorted(n for n in os.listdir(self.folder) if n != "fill")

    def _run_unshared(self, args: tuple[str, ...]) -> tuple[Result, list[str]]:
        listing = self.work.parent / f"{self.work.name}-listing.txt"
        script = (f'mount -t tmpfs -o size={SIZE} tmpfs "$0" || exit 99; '
                  f'head -c {FILL_CAP} /dev/zero > "$0/fill" 2>/dev/null; '
                  '"$@"; rc=$?; ls -A "$0" > "$LISTING"; exit $rc')
        env = {**os.environ, "LISTING": str(listing)}
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(self.folder), installed_command(),
                               *args], cwd=self.work, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode != 99, f"mounting a tmpfs in a user namespace failed: {done.stderr}"
        names = listing.read_text().split() if listing.exists() else []
        return Result(done.returncode, done.stdout, done.stderr), sorted(n for n in names if n != "fill")

    def close(self) -> None:
        if self.how == "mount":
            subprocess.run(["umount", str(self.folder)], check=False)


def _no_file_growth() -> None:
    # in the child, before exec: any write that would grow a file fails with EFBIG instead of a signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


@pytest.fixture
def full_disk(work):
    how = os.environ.get("DAFLOW_FAULT_DISK") or None
    if how is None:
        probe = work / "mount-probe"
        probe.mkdir()
        mounted = _mount(probe)
        if mounted:
            subprocess.run(["umount", str(probe)], check=True)
        probe.rmdir()
        how = "mount" if mounted else "unshare" if _can_unshare() else "rlimit"
    disk = FullDisk(work, how)
    yield disk
    disk.close()


CASES = {
    "render EXR sequence": (["render", "exr/p.####.exr", "-o", "disk/v.####.exr", *FAST], "v.0001.exr"),
    "retime to mp4": (["retime", "ok.mp4", "-o", "disk/r.mp4", "--speed", "0.5", *FAST], "r.mp4"),
    "stabilize to mp4": (["stabilize", "ok.mp4", "-o", "disk/s.mp4", *FAST], "s.mp4"),
    "stabilize to PNG sequence": (["stabilize", "png/p.####.png", "-o", "disk/s.####.png", *FAST],
                                  "s.0001.png"),
    "flow to .flo": (["flow", "exr/p.0001.exr", "exr/p.0002.exr", "-o", "disk/f.flo", *FAST], "f.flo"),
    "flow to .exr": (["flow", "exr/p.0001.exr", "exr/p.0002.exr", "-o", "disk/f.exr", *FAST], "f.exr"),
    "degrade to PNG sequence": (["degrade", "png/p.####.png", "-o", "disk/d.####.png"], "d.0001.png"),
}


@pytest.mark.parametrize(("args", "file"), list(CASES.values()), ids=list(CASES))
def test_full_disk_is_one_error_and_leaves_nothing(work, full_disk, args, file) -> None:
    before = {k: v for k, v in snapshot(work).items() if not k.startswith("disk")}
    result, left = full_disk.run(*args)
    assert_one_error(result, 1, file, full_disk.full_message)
    assert left == [], f"{full_disk.how}: the disk holds {left}"
    assert {k: v for k, v in snapshot(work).items() if not k.startswith("disk")} == before


class _FailingClose:
    """A PyAV output container whose close() writes the trailer, then reports the disk full."""

    def __init__(self, container, path: str) -> None:
        self._container, self._path = container, path

    def __getattr__(self, name: str):
        return getattr(self._container, name)

    def close(self) -> None:
        import av

        self._container.close()
        raise av.error.OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)


def test_full_disk_while_finishing_a_video_in_process(work, monkeypatch) -> None:
    # Every frame encoded, then the trailer fails: PyAV raises from close(), after the encode loop.
    import av

    from daflow_vfx.cli import main
    from daflow_vfx.io import video

    class Av:
        def __getattr__(self, name: str):
            return getattr(av, name)

        @staticmethod
        def open(path, *args, **kwargs):
            container = av.open(path, *args, **kwargs)
            return _FailingClose(container, path) if kwargs.get("mode") == "w" else container

    monkeypatch.setattr(video, "_av", Av)
    monkeypatch.chdir(work)
    before = snapshot(work)
    outcome = CliRunner().invoke(main, ["retime", "ok.mp4", "-o", "r.mp4", "--speed", "0.5", *FAST])
    result = Result(outcome.exit_code, outcome.stdout, outcome.stderr)
    assert_one_error(result, 1, "r.mp4", "disk is full")
    assert snapshot(work) == before  # no video, no temp, no sidecar
