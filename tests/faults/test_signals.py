"""Farm signals: SIGKILL, SIGTERM or SIGINT at a random frame, then the next run; nothing partial is ever
left, and the finished result equals an uninterrupted render pixel for pixel.

Each interrupted command runs with the suite's slow-down hook (``hooks/sitecustomize.py``): every rename
into place waits a little, so the signal lands while the next frame's finished temp file waits for its
rename, the moment a farm's cancel is most likely to leave debris.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.faults.conftest import (
    FAST,
    FRAMES,
    Result,
    assert_one_error,
    assert_same_outputs,
    run_cli,
    snapshot,
    start_cli,
    temp_files,
    vector_names,
)

SEED = int(os.environ.get("DAFLOW_FAULT_SEED", random.randrange(1 << 30)))
HOLD = 0.3  # seconds each finished temp file waits for its rename (the hook)
SLOW_RENAME = f"os.replace={HOLD}"


def interrupt_after(args: list[str], cwd: Path, *, frames_done: int, sig: int, slow: str, wait: float,
                    skip_ticks: int = 0) -> Result:
    """Start the command, wait until ``frames_done`` progress ticks (after ``skip_ticks``) have been
    printed and then ``wait`` seconds more (into the next frame's write), send ``sig`` and collect the
    rest; the run must not have finished on its own."""
    proc = start_cli(*args, cwd=cwd, slow=slow)
    seen: list[str] = []
    assert proc.stdout is not None
    try:
        ticks = 0
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Progress: ") and line.strip() != "Progress: 0%":
                ticks += 1
            if ticks >= skip_ticks + frames_done:
                time.sleep(wait)
                proc.send_signal(sig)
                break
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = Result(proc.returncode, "".join(seen) + rest, err)
    assert "Progress: 100%" not in result.stdout, f"the run finished before {sig!r} (seed {SEED})"
    return result


def finished_outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("v.*.exr"))


@pytest.mark.parametrize(("sig", "code", "resume"), [
    (signal.SIGKILL, -signal.SIGKILL, ["--skip-existing"]),
    (signal.SIGKILL, -signal.SIGKILL, []),  # the next run without --skip-existing also clears the debris
    (signal.SIGTERM, 128 + signal.SIGTERM, ["--skip-existing"]),
    (signal.SIGINT, 128 + signal.SIGINT, ["--skip-existing"]),
], ids=["kill-resume", "kill-rerun", "term-resume", "int-resume"])
def test_signal_at_a_random_frame_then_the_next_run(work, reference, sig, code, resume) -> None:
    rng = random.Random(f"{SEED}-{sig}-{resume}")
    at = rng.randrange(1, FRAMES - 3)  # leave frames to write, so the signal lands mid-render
    wait = rng.uniform(0.05, HOLD / 2)  # somewhere inside the next frame's write
    plates_before = snapshot(work)
    render = ["render", "exr/p.####.exr", "-o", "out/v.####.exr", *FAST]
    stopped = interrupt_after(render, work, frames_done=at, sig=sig, slow=SLOW_RENAME, wait=wait)
    context = f"signal {sig!r} {wait:.2f} s after frame {at} (seed {SEED}):\n{stopped.output}"
    assert stopped.code == code, context
    if sig == signal.SIGKILL:
        # killed while the next frame's finished temp waited for its rename: the debris a farm sees
        assert temp_files(work), context
    else:
        assert_one_error(stopped, code, f"interrupted by {signal.Signals(sig).name}")
        assert temp_files(work) == [], context  # cleaned up on the way out
    done = finished_outputs(work / "out")
    assert len(done) < FRAMES, context
    assert_same_outputs(work / "out", reference, done)  # whatever has its final name is whole and right

    again = run_cli(*render, *resume, cwd=work)
    assert again.code == 0, again.output
    assert temp_files(work) == [], "the next run must remove the temps a killed run left"
    assert finished_outputs(work / "out") == vector_names()
    assert_same_outputs(work / "out", reference, vector_names())
    if resume:
        assert f"skipped {len(done)} complete" in again.stdout or not done, again.output
    expected = {**plates_before, "out": "dir"}
    assert set(snapshot(work)) == set(expected) | {f"out/{n}" for n in vector_names()}


def decoded(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_sigterm_while_encoding_a_video_leaves_no_video_then_a_rerun_matches(work, tmp_path_factory) -> None:
    ref = tmp_path_factory.mktemp("video_reference")
    stabilize = ["stabilize", str(work / "png" / "p.####.png"), *FAST]
    whole = run_cli(*stabilize, "-o", ref / "s.mp4", cwd=ref)
    assert whole.code == 0, whole.output
    rng = random.Random(SEED)
    at, wait = rng.randrange(1, FRAMES - 3), rng.uniform(0.0, 0.2)
    before = snapshot(work)
    # stabilize ticks once per frame for the motions, then once per frame for the encode
    stopped = interrupt_after([*stabilize, "-o", "s.mp4"], work, frames_done=at, skip_ticks=FRAMES,
                              sig=signal.SIGTERM, slow="daflow_vfx.io.video._quantise=0.3", wait=wait)
    assert_one_error(stopped, 128 + signal.SIGTERM, "interrupted by SIGTERM")
    assert snapshot(work) == before, f"frame {at} (seed {SEED}): no video, no sidecar, no temp"
    again = run_cli(*stabilize, "-o", "s.mp4", cwd=work)
    assert again.code == 0, again.output
    assert np.array_equal(decoded(work / "s.mp4"), decoded(ref / "s.mp4"))
    assert set(snapshot(work)) == set(before) | {"s.mp4", "s.stabilize.json"}


def test_stale_temps_are_removed_only_when_their_writer_is_gone(work, reference) -> None:
    from daflow_vfx.io._atomic import STALE_AFTER_S, _host_tag, temp_path_for

    out = work / "out"
    out.mkdir()
    dead_pid = _dead_pid()
    assert _host_tag() != "00000000"  # the tag the two "other host" temps below carry
    ours = Path(temp_path_for(out / "v.0002.exr"))  # this test's pid: a live writer on this host
    dead = out / ours.name.replace(f"-{os.getpid()}-", f"-{dead_pid}-")
    dead = dead.with_name(dead.name.replace("v.0002", "v.0003"))
    other_host_old = out / f".v.0004.tmp-{os.getpid()}-00000000{'1' * 8}.exr"  # another host's tag
    other_host_new = out / f".v.0005.tmp-{os.getpid()}-00000000{'2' * 8}.exr"
    not_ours = out / f".w.0006.tmp-{dead_pid}-{'3' * 16}.exr"  # a temp of a file this job does not write
    for path in (ours, dead, other_host_old, other_host_new, not_ours):
        path.write_bytes(b"half a frame")
    old = os.stat(other_host_old).st_mtime - STALE_AFTER_S - 60
    os.utime(other_host_old, (old, old))
    result = run_cli("render", "exr/p.####.exr", "-o", "out/v.####.exr", *FAST, cwd=work)
    assert result.code == 0, result.output
    left = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert left == sorted([ours.name, other_host_new.name, not_ours.name])
    assert_same_outputs(out, reference, vector_names())


def _dead_pid() -> int:
    """The pid of a child that has exited and been reaped (not reused this quickly in practice)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
