"""PrefetchReader and BackgroundWriter: order, error propagation, no hangs, threads joined."""

from __future__ import annotations

import threading
import time

import pytest

from daflow_vfx.errors import CorruptFileError
from daflow_vfx.io import BackgroundWriter, PrefetchReader


def _worker_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_prefetch_reads_in_order() -> None:
    with PrefetchReader(lambda f: f * 10, range(1001, 1011), depth=2) as reader:
        assert list(reader) == [(f, f * 10) for f in range(1001, 1011)]
    assert not _worker_threads("daflow-prefetch")


def test_prefetch_error_at_frame_3_reaches_the_caller() -> None:
    def read(frame: int) -> int:
        if frame == 3:
            raise CorruptFileError(f"plate.{frame:04d}.exr: frame {frame} is truncated")
        return frame

    got: list[int] = []
    reader = PrefetchReader(read, range(1, 10), depth=2)
    with pytest.raises(CorruptFileError, match="frame 3"):
        for frame, _value in reader:
            got.append(frame)
    assert got == [1, 2]                       # everything before the failure, in order
    assert reader._thread is not None and not reader._thread.is_alive()


def test_prefetch_consumer_stopping_early_joins_the_worker() -> None:
    reads: list[int] = []

    def read(frame: int) -> int:
        reads.append(frame)
        return frame

    start = time.monotonic()
    with PrefetchReader(read, range(10_000), depth=2) as reader:
        for frame, _ in reader:
            if frame == 2:
                break
    assert time.monotonic() - start < 2.0
    assert reader._thread is not None and not reader._thread.is_alive()
    assert len(reads) < 10                     # the bounded queue stopped the worker reading ahead
    assert not _worker_threads("daflow-prefetch")


def test_prefetch_abandoned_generator_and_close_without_iterating() -> None:
    reader = PrefetchReader(lambda f: f, range(1000), depth=1)
    iterator = iter(reader)
    assert next(iterator) == (0, 0)
    reader.close()                              # worker blocked on a full queue must still stop
    assert reader._thread is not None and not reader._thread.is_alive()
    PrefetchReader(lambda f: f, range(3)).close()   # never iterated: nothing to join, no error
    with pytest.raises(RuntimeError):
        iter(reader)


def test_prefetch_slow_reader_is_joined_on_close() -> None:
    started = threading.Event()

    def read(frame: int) -> int:
        started.set()
        time.sleep(0.2)
        return frame

    reader = PrefetchReader(read, range(100), depth=1)
    iterator = iter(reader)
    next(iterator)
    started.wait(1)
    reader.close()                              # waits for the read in progress, then the thread is gone
    assert reader._thread is not None and not reader._thread.is_alive()


def test_writer_runs_jobs_in_order() -> None:
    done: list[int] = []
    with BackgroundWriter(depth=2) as writer:
        for i in range(20):
            writer.submit(lambda i=i: done.append(i))
    assert done == list(range(20))
    assert not writer._thread.is_alive()


def test_writer_error_surfaces_on_close() -> None:
    writer = BackgroundWriter(depth=4)
    writer.submit(lambda: None)
    writer.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert not writer._thread.is_alive()
    writer.close()                              # the error is raised once; closing again is quiet


def test_writer_error_surfaces_on_submit_and_skips_later_jobs() -> None:
    done: list[int] = []
    failed = threading.Event()

    def bad() -> None:
        failed.set()
        raise ValueError("cannot write frame 1004")

    writer = BackgroundWriter(depth=1)
    writer.submit(bad)
    failed.wait(1)
    time.sleep(0.1)
    with pytest.raises(ValueError, match="frame 1004"):
        for i in range(100):
            writer.submit(lambda i=i: done.append(i))
    writer.close()                              # already reported: no second raise
    assert len(done) == 0
    assert not writer._thread.is_alive()


def test_writer_context_manager_keeps_the_first_exception() -> None:
    with pytest.raises(KeyError):
        with BackgroundWriter() as writer:
            writer.submit(lambda: (_ for _ in ()).throw(OSError("also broken")))
            raise KeyError("engine failed")
    assert not writer._thread.is_alive()
    with pytest.raises(RuntimeError):
        writer.submit(lambda: None)


def test_writer_cancel_after_an_interrupted_close_waits_for_the_running_job() -> None:
    # A farm's SIGTERM raises (through the CLI's handler) inside close() while a frame is being written.
    # CPython 3.11 then marks the worker as stopped if the exception hit Thread.join(); the writer must
    # still wait for that frame, or the process exits with its temp file on disk.
    import signal

    class Stop(Exception):
        pass

    def alarm(signum: int, frame: object) -> None:
        raise Stop

    done: list[str] = []
    writer = BackgroundWriter(depth=4)
    writer.submit(lambda: (time.sleep(0.3), done.append("first")))
    writer.submit(lambda: done.append("second"))
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Stop):
            writer.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    writer.cancel()
    assert done == ["first"]  # the running job finished whole, the queued one was dropped
    assert not _worker_threads("daflow-writer")
