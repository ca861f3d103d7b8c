"""A bounded prefetch reader and a background writer, each on one worker thread.

Both are built so a render never hangs: queues are bounded and every blocking wait uses a short timeout
while checking a stop flag, workers are always joined on close, and a worker's exception is re-raised in
the caller (the original exception object, so a CorruptFileError stays a CorruptFileError).
The workers are not daemon threads, so an interpreter exit waits for a clean stop; as a last resort they
also stop when the main thread has finished and nobody closed them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["PrefetchReader", "BackgroundWriter"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_POLL_S = 0.05   # how often blocked waits re-check the stop flag


def _main_thread_gone() -> bool:
    return not threading.main_thread().is_alive()


class PrefetchReader(Generic[T]):
    """Read ``read(frame)`` for each frame ahead of the consumer, at most ``depth`` results buffered.

    Iterate once to get ``(frame, result)`` in order. An exception raised by ``read`` is re-raised from
    the iteration at that frame. Leaving the loop early (break, error) stops and joins the worker.
    """

    def __init__(self, read: Callable[[int], T], frames: Iterable[int], *, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._read = read
        self._frames = list(frames)
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = threading.Event()  # set by the worker as it exits
        self._thread: threading.Thread | None = None
        self._iterated = False
        self._closed = False

    def _put(self, item: tuple[str, object]) -> bool:
        """Put into the bounded queue unless asked to stop; False when the item was dropped."""
        while not self._stop.is_set():
            if _main_thread_gone():
                return False
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for frame in self._frames:
                if self._stop.is_set():
                    return
                result = self._read(frame)
                if not self._put(("item", (frame, result))):
                    return
            self._put(("end", None))
        except Exception as exc:   # handed to the consumer, which re-raises it
            self._put(("error", exc))
        finally:
            self._finished.set()

    def __iter__(self) -> Iterator[tuple[int, T]]:
        if self._iterated or self._closed:
            raise RuntimeError("a PrefetchReader can be iterated only once")
        self._iterated = True
        self._thread = threading.Thread(target=self._work, name="daflow-prefetch")
        self._thread.start()
        return self._consume()

    def _consume(self) -> Iterator[tuple[int, T]]:
        try:
            while True:
                try:
                    kind, payload = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                        raise RuntimeError("prefetch worker stopped without a result") from None
                    continue
                if kind == "item":
                    yield payload  # type: ignore[misc]
                elif kind == "error":
                    assert isinstance(payload, BaseException)
                    raise payload
                else:
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker and join it (waits for a read already in progress to return)."""
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # the worker's own event rather than a bare join(): see BackgroundWriter.close
            while not self._finished.wait(_POLL_S):
                pass
            thread.join()
        # Drop buffered frames so their memory goes now, not when this object does.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __enter__(self) -> PrefetchReader[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


_STOP = object()


class BackgroundWriter:
    """Run submitted callables in order on one worker thread, at most ``depth`` waiting.

    After the first failure the remaining jobs are skipped; :meth:`submit` raises that error as soon as
    it is known and :meth:`close` drains, joins and raises it (once).
    """

    def __init__(self, *, depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._error_raised = False
        self._closed = False
        self._stop_queued = False
        self._cancelled = False
        self._finished = threading.Event()  # set by the worker as it exits
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="daflow-writer")
        self._thread.start()

    def _work(self) -> None:
        try:
            while True:
                try:
                    job = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    if _main_thread_gone():
                        return
                    continue
                if job is _STOP:
                    return
                if self._error is not None or self._cancelled:
                    continue   # skip the rest after a failure, but keep draining so submitters never block
                try:
                    job()  # type: ignore[operator]
                except Exception as exc:   # kept and re-raised in the caller
                    with self._lock:
                        self._error = exc
        finally:
            self._finished.set()

    def _raise_error(self) -> None:
        with self._lock:
            error = self._error
            if error is None or self._error_raised:
                return
            self._error_raised = True
        raise error

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn``; blocks while ``depth`` jobs wait. Raises the worker's first error if it failed."""
        if self._closed:
            raise RuntimeError("BackgroundWriter is closed")
        self._raise_error()
        while True:
            try:
                self._queue.put(fn, timeout=_POLL_S)
                return
            except queue.Full:
                self._raise_error()
                if not self._thread.is_alive():
                    raise RuntimeError("background writer thread is gone") from None

    def close(self) -> None:
        """Wait for queued jobs, join the worker, and raise its first error if not raised yet.

        Safe to call again after an exception interrupted it (a signal in the caller): the stop marker is
        queued exactly once, so the worker is never left waiting for it.
        """
        self._closed = True
        while not self._stop_queued and not self._finished.is_set():
            try:
                self._queue.put(_STOP, timeout=_POLL_S)
                self._stop_queued = True
            except queue.Full:
                continue
        # Wait on the worker's own event, not in Thread.join(): a signal handler that raises inside join()
        # (CPython 3.11, bpo-45274's fix) marks a running thread as stopped, so a second join() and the
        # interpreter's exit would no longer wait for the frame being written, and its temp file would stay.
        while not self._finished.wait(_POLL_S):
            pass
        self._thread.join()  # the worker has left its loop: this returns at once
        self._raise_error()

    def cancel(self) -> None:
        """Drop the queued jobs, let the one running finish, and join the worker; raises nothing.

        For a job stopped from outside (a farm's cancel): the frame being written still lands whole, the
        rest are abandoned, so the process can exit within one frame's write.
        """
        self._cancelled = True
        try:
            self.close()
        except Exception as exc:   # the caller is already on its way out with its own error
            logger.debug("background writer error while cancelling: %s", exc)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
            return
        # An error is already on its way out; do not mask it with the writer's, but do not lose that either.
        try:
            self.close()
        except Exception as writer_exc:
            if writer_exc is not exc:
                logger.error("background writer also failed: %s", writer_exc)
