"""Moving small values between the host and the training device without making either wait.

Host to device (``upload``): the on-device data generator draws its per-window scalars (motions,
kernel sizes, codec settings) on the host and sends them over: about a thousand small copies per
call. A copy from ordinary (pageable) host memory makes the host wait until the device has run
everything queued before it (``torch.as_tensor(a, device=...)`` waits explicitly; CUDA's pageable
``cudaMemcpyAsync`` may stage it the same way), so each of those copies drained the GPU's queue and
the generator ran in lock-step with it: 23 windows/s with the GPU busy a fifth of the time in the
first device run. From pinned memory a copy is queued like a kernel; PyTorch's pinned-memory cache
keeps the staging block until the copy has run.

Device to host (``Readback``): the training loop logs each step's loss. ``float(loss)`` queues its
copy behind everything already launched and waits for all of it, so reading step k's loss after
launching step k+1 would still wait for step k+1. A ``Readback`` queues the copy into pinned memory
right after its step and records an event; reading it later waits for that step only, while the
device goes on with the next.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["Readback", "upload"]


def upload(a, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Tensor:
    """``a`` (a numpy array, list or number) as a ``dtype`` tensor on ``device``, without a host wait."""
    device = torch.device(device)
    host = torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)
    if device.type == "cpu":
        return host
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


class Readback:
    """Scalars of one step (0-d tensors on one device, or None), copied to the host in the background.

    ``values()`` returns them as floats (None stays None), waiting only for the step that made them.
    """

    def __init__(self, *scalars: Tensor | None) -> None:
        self._none = [s is None for s in scalars]
        present = [s.detach().float().reshape(()) for s in scalars if s is not None]
        self._event: torch.cuda.Event | None = None
        if not present:
            self._host = torch.empty(0)
            return
        stacked = torch.stack(present)  # [N]
        if stacked.device.type == "cuda":
            self._host = torch.empty(stacked.shape, dtype=torch.float32, pin_memory=True)
            self._host.copy_(stacked, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = stacked.cpu()

    def values(self) -> list[float | None]:
        if self._event is not None:
            self._event.synchronize()
        it = iter(self._host.tolist())
        return [None if none else next(it) for none in self._none]
