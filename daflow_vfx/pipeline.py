"""The flows of a plate, overlapped: reading, the estimator and the caller's writing run at the same time.

:meth:`FlowEngine.flows <daflow_vfx.engine.FlowEngine.flows>` runs here. Three kinds of work overlap:

- a bounded prefetch thread (:class:`~daflow_vfx.io.threads.PrefetchReader`) decodes and converts the
  frames the next windows need, its errors re-raised in the caller;
- this thread stacks windows, up to the engine's ``batch_windows`` of the same size into one estimator
  call (:meth:`FlowEngine.launch_windows <daflow_vfx.engine.FlowEngine.launch_windows>`). On a GPU the
  call returns once the upload (pinned host memory, non-blocking), the network and the download are
  queued, so the next batch is read and queued while the device computes the previous one: one batch
  is kept in flight, and its results are collected after the next batch is queued;
- the caller consumes the yielded :class:`~daflow_vfx.engine.FrameFlows` (`render` hands each to its
  bounded writer thread, which encodes the EXR while the next window computes).

The windows, their anchors and the order of the yielded frames are those of the sequential loop, so a
chunk still computes exactly the windows an unchunked render would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from daflow_vfx.engine import FrameFlows, plan_windows
from daflow_vfx.errors import FrameSizeError, MissingFramesError, SequenceTooShortError
from daflow_vfx.estimators.base import WindowFlows

if TYPE_CHECKING:
    from daflow_vfx.engine import FlowEngine

__all__ = ["batch_groups", "flow_sequence"]


def batch_groups(windows: list[list[int]], size: int) -> list[list[list[int]]]:
    """Consecutive windows in groups of at most ``size``, each group of one frame count (the short
    window at a plate's end has fewer frames, and one estimator call takes windows of one shape)."""
    groups: list[list[list[int]]] = []
    for win in windows:
        if groups and len(groups[-1]) < size and len(groups[-1][0]) == len(win):
            groups[-1].append(win)
        else:
            groups.append([win])
    return groups


class _Collector:
    """Pair flows in, completed frames out, in the order asked for (a frame needs the window of its
    forward pair and the window of its backward pair)."""

    def __init__(self, wanted: list[int], *, first: int, last: int) -> None:
        self.wanted, self.first, self.last = wanted, first, last
        self.needed_pairs = {p for f in wanted for p in (f, f - 1) if first <= p < last}
        self.forward: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # n -> flow n -> n+1
        self.backward: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # n -> flow n+1 -> n
        self.next_out = 0

    def add(self, win: list[int], result: WindowFlows) -> None:
        for i, n in enumerate(win[:-1]):
            if n not in self.needed_pairs:
                continue
            self.forward[n] = (result.forward[i], _index(result.confidence_forward, i))
            self.backward[n] = (result.backward[i], _index(result.confidence_backward, i))

    def ready(self) -> Iterator[FrameFlows]:
        first, last = self.first, self.last
        while self.next_out < len(self.wanted):
            f = self.wanted[self.next_out]
            if (f < last and f not in self.forward) or (f > first and f - 1 not in self.backward):
                return  # a later window completes this frame
            fwd = self.forward.pop(f, None) if f < last else None
            bwd = self.backward.pop(f - 1, None) if f > first else None
            self.next_out += 1
            yield FrameFlows(
                frame=f,
                forward=None if fwd is None else fwd[0],
                backward=None if bwd is None else bwd[0],
                confidence_forward=None if fwd is None else fwd[1],
                confidence_backward=None if bwd is None else bwd[1],
            )


def _index(array: np.ndarray | None, i: int) -> np.ndarray | None:
    return None if array is None else array[i]


def _check_sizes(win: list[int], stack: list[np.ndarray]) -> None:
    for f, image in zip(win[1:], stack[1:], strict=True):
        if image.shape != stack[0].shape:
            raise FrameSizeError(f"frame {f} is {image.shape[1]}x{image.shape[0]} but frame "
                                 f"{win[0]} is {stack[0].shape[1]}x{stack[0].shape[0]}; "
                                 "every frame of a plate must have the same size")


def flow_sequence(
    engine: FlowEngine,
    read: Callable[[int], np.ndarray],
    frames: Iterable[int],
    *,
    first: int,
    last: int,
) -> Iterator[FrameFlows]:
    """:class:`FrameFlows` for ``frames`` (ascending) of a plate spanning ``first .. last``; see
    :meth:`FlowEngine.flows <daflow_vfx.engine.FlowEngine.flows>`."""
    from daflow_vfx.io.threads import PrefetchReader

    wanted = sorted(set(frames))
    if last <= first:
        raise SequenceTooShortError(f"the plate has one frame ({first}); flow needs at least two frames")
    outside = [f for f in wanted if not first <= f <= last]
    if outside:
        raise MissingFramesError(f"frames {outside[:5]} are outside the plate's range {first}-{last}; "
                                 "fix the frame list", missing=outside)
    if not wanted:
        return
    windows = plan_windows(wanted, first=first, last=last, window=engine.estimator.window)
    groups = batch_groups(windows, engine.batch_windows)
    read_order = sorted({f for win in windows for f in win})
    collector = _Collector(wanted, first=first, last=last)
    # a batch reads about two new frames per window: the reader keeps the next batch's frames coming
    depth = max(engine.prefetch, 2 * engine.batch_windows + 1)
    # On a device the estimator returns before its results are ready: keep one batch in flight, so the
    # next one is read and queued while the device works. On the CPU a call computes as it returns.
    in_flight = 1 if engine.asynchronous else 0
    pending: deque[tuple[list[list[int]], Callable[[], list[WindowFlows]]]] = deque()
    cache: dict[int, np.ndarray] = {}
    with PrefetchReader(read, read_order, depth=depth) as reader:
        stream = iter(reader)
        for group in groups:
            stacks = []
            for win in group:
                while any(f not in cache for f in win):
                    frame, image = next(stream)
                    cache[frame] = image
                stack = [cache[f] for f in win]
                _check_sizes(win, stack)
                stacks.append(np.stack(stack))  # [F, H, W, 3]
            labels = [f"frames {win[0]}-{win[-1]}" for win in group]
            pending.append((group, engine.launch_windows(stacks, labels=labels)))
            del stacks
            for f in [f for f in cache if f < group[-1][-1]]:
                del cache[f]  # later windows start at the group's last frame or after
            while len(pending) > in_flight:
                yield from _collect(collector, *pending.popleft())
        while pending:
            yield from _collect(collector, *pending.popleft())


def _collect(collector: _Collector, group: list[list[int]],
             finish: Callable[[], list[WindowFlows]]) -> Iterator[FrameFlows]:
    for win, result in zip(group, finish(), strict=True):
        collector.add(win, result)
    yield from collector.ready()
