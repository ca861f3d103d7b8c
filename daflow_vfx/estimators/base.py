"""The contract every flow estimator keeps with the engine.

An estimator sees one window of frames at a time and returns the forward and backward flow
between neighbours in that window. Padding to the estimator's stride, tiling, colour
conversion and file I/O all happen in the engine, so an estimator only does maths.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class WindowFlows:
    """Flows for one window of F frames, in pixels, +x right, +y down (``.flo`` convention)."""

    forward: np.ndarray  # [F-1, H, W, 2]: frame i -> i+1
    backward: np.ndarray  # [F-1, H, W, 2]: frame i+1 -> i
    confidence_forward: np.ndarray | None = None  # [F-1, H, W] in [0, 1]
    confidence_backward: np.ndarray | None = None  # [F-1, H, W] in [0, 1]


class FlowEstimator(abc.ABC):
    """Window of frames in, flows (and optionally confidence) out.

    Subclasses set the class attributes and implement :meth:`estimate`. ``frames`` are
    float32 RGB, display-referred, in [0, 1], with H and W multiples of :attr:`stride`.
    """

    name: str = ""
    version: str = ""
    window: int = 2  # frames per window; 2 for pairwise methods
    stride: int = 1  # the engine pads H and W to a multiple of this
    weights_sha256: str | None = None
    provides_confidence: bool = False

    @abc.abstractmethod
    def estimate(self, frames: np.ndarray) -> WindowFlows:
        """Flows between neighbours of ``frames`` ([F, H, W, 3], 2 <= F <= window)."""

    def launch(self, windows: np.ndarray) -> Callable[[], list[WindowFlows]]:
        """Start the flows of several windows of one size, ``windows`` ``[B, F, H, W, 3]``; returns a
        function that waits for them and returns one :class:`WindowFlows` per window.

        An estimator that can batch windows into one pass, or run them asynchronously on a device,
        overrides this; the default computes them now, one :meth:`estimate` at a time.
        """
        results = [self.estimate(frames) for frames in windows]
        return lambda: results

    def memory_estimate(self, *, frames: int, height: int, width: int) -> int | None:
        """Conservative peak bytes of one :meth:`estimate` call on ``frames`` frames of ``height`` x
        ``width`` pixels (already padded to :attr:`stride`), weights included; None when unknown.

        The engine uses it to pick a tile size under ``max_memory``. It counts the memory of the
        device the estimator computes on (GPU memory on CUDA, host memory on CPU).
        """
        return None

    def enable_compile(self) -> bool:
        """Compile the estimator's network (``torch.compile``) where it has one; False when there is
        nothing to compile (classical methods)."""
        return False

    def enable_refinement_compile(self) -> bool:
        """Compile an iterative estimator's refinement loop (CUDA graphs on CUDA) where it has one;
        False when there is none."""
        return False
