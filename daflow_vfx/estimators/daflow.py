"""DA-Flow behind the engine's estimator contract.

The estimator owns the model on one device; each call converts a window of display-referred
frames with the weights' input transform, runs the network and hands back numpy flows. Padding
and tiling are the engine's job (frames arrive at a multiple of :attr:`stride`).

On CUDA the estimator takes the fast path: the CNN parts (encoders, DPT heads, update block) in
channels_last memory format, frames copied host-to-device from pinned memory without blocking,
and flows copied back the same way; ``compile=True`` adds ``torch.compile``. The joint attention
of the lifted MM-DiT already runs through ``scaled_dot_product_attention`` (diffusers'
``JointAttnProcessor2_0``), so flash or memory-efficient kernels are used where the GPU has them.

:meth:`DAFlowEstimator.launch` runs several windows in one forward pass and, on CUDA, returns as soon
as the work is queued, so the engine can read and queue the next windows while the device computes.
:func:`working_memory_bytes` (in :mod:`.daflow_memory`) is the memory model the engine's ``max_memory``
budget relies on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from typing import Any

import numpy as np

from ..errors import ModelError
from ..numerics import native_bfloat16
from .base import FlowEstimator, WindowFlows
from .daflow_memory import working_memory_bytes

__all__ = ["DAFlowEstimator", "make_daflow", "use_channels_last", "working_memory_bytes"]

DEFAULT_ITERS = 12
# Whether CUDA runs compute the DIS prior on the device (model.dis) rather than with OpenCV on the host.
# Off until a GPU run shows it faster than the host prior (tools/device/speed.sh times both): its
# accuracy through daflow-compact is within 2 % of OpenCV's (docs/benchmarks.md), its speed unmeasured.
PRIOR_ON_DEVICE_BY_DEFAULT = False
_DTYPES = ("float32", "float16", "bfloat16")

# The CNN parts of a DAFlow model that run in channels_last on CUDA (the VAE frontend of daflow-full
# is left as diffusers runs it). Every view DAFlow takes of their outputs only splits or merges
# dimensions that channels_last strides allow (the convex-upsampling mask splits C into 9 x 8 x 8).
_CNN_PARTS = ("feature_encoder", "context_encoder", "dpt_query", "dpt_key", "dpt_context", "update_block")
# The parts torch.compile wraps: each is called with the same shapes for a whole frame size (the
# update block once per iteration), while the correlation look-up and the iteration loop stay eager
# (unrolling 12 iterations of a chunked look-up would make one enormous graph).
_COMPILE_PARTS = ("feature_encoder", "context_encoder", "dpt_query", "dpt_key", "dpt_context",
                  "update_block", "backbone")


# --------------------------------------------------------------------------------------------------
# the estimator


def use_channels_last(model: Any) -> None:
    """Put the CNN parts of ``model`` (encoders, DPT heads, update block) in channels_last format.

    Conv weights become NHWC, so the convolutions run NHWC end to end (tensor-core friendly on CUDA);
    results are the same as NCHW up to summation order.
    """
    import torch

    for name in _CNN_PARTS:
        part = getattr(model, name, None)
        if part is not None:
            part.to(memory_format=torch.channels_last)


class DAFlowEstimator(FlowEstimator):
    """A DA-Flow model (any variant) as a 3-frame window estimator with confidence.

    ``compile`` wraps the CNN parts, the update block and the backbone with ``torch.compile`` (the
    first window of each new frame or tile size is slow while kernels compile). ``channels_last``
    None means on for CUDA, off elsewhere. ``prior_on_device`` (weights that refine a DIS prior):
    compute that prior with :func:`daflow_vfx.model.dis.dis_flow` on the model's device instead of
    OpenCV on the host; None follows ``PRIOR_ON_DEVICE_BY_DEFAULT`` on CUDA and is off elsewhere.
    """

    window = 3
    provides_confidence = True

    def __init__(
        self,
        *,
        model,
        transform,
        name: str,
        weights_sha256: str | None,
        device: str = "cpu",
        dtype: str = "float32",
        iters: int = DEFAULT_ITERS,
        corr_impl: str = "auto",
        compile: bool = False,
        channels_last: bool | None = None,
        flow_init: str | None = None,
        overlap_prior: bool = False,
        prior_on_device: bool | None = None,
    ) -> None:
        import torch

        from .. import __version__

        if dtype not in _DTYPES:
            raise ModelError(f"dtype {dtype!r} is not supported; use one of {', '.join(_DTYPES)}")
        self.name = name
        self.version = __version__
        self.weights_sha256 = weights_sha256
        self.dtype = getattr(torch, dtype)
        self.iters = iters
        self.corr_impl = corr_impl
        self.transform = transform
        # "dis": the weights refine OpenCV DIS's flow, computed here at the boundary on the same frames
        self.flow_init = flow_init
        self._prior = None
        self.device = torch.device(device)
        if prior_on_device is None:
            prior_on_device = self.device.type == "cuda" and PRIOR_ON_DEVICE_BY_DEFAULT
        # the DIS prior computed by model.dis on the device, from the frames already uploaded, instead of
        # by OpenCV on the host (no host work beyond queuing kernels)
        self.prior_on_device = flow_init == "dis" and bool(prior_on_device)
        self.overlap_prior = flow_init == "dis" and not self.prior_on_device and bool(overlap_prior)
        if flow_init == "dis" and not self.prior_on_device:
            from .classical import DISEstimator

            # Built once (OpenCV's DIS objects are reused for every window). overlap_prior: the
            # window's DIS solves run on host threads, concurrently with each other and with the
            # device's feature pass (see _launch). Off by default: on an H100 with 16 host cores and 8
            # DIS threads, 1080p went from 3.04 to 2.34 pairs/s (docs/benchmarks.md, CUDA section).
            workers = max(1, min(os.cpu_count() or 1, 8)) if self.overlap_prior else 1
            self._prior = DISEstimator(workers=workers)
        self.model = model.to(self.device).eval()
        # a batch of windows (launch) gets, window by window, the backbone noise one window gets alone
        self.model.window_noise = True
        self.stride = model.stride
        if channels_last is None:
            # On the CPU only with native bf16: oneDNN's bf16 convolutions are fastest in channels_last
            # (a 32-channel 3x3 at 1/2 of 1080p: 44 ms against 190 ms in NCHW), while float32 gained
            # nothing over a whole window (2 cores).
            channels_last = self.device.type == "cuda" or (
                self.dtype == torch.bfloat16 and native_bfloat16(str(self.device)))
        self.channels_last = bool(channels_last)
        if self.channels_last:
            use_channels_last(self.model)
        self.compiled = False
        if compile:
            self.enable_compile()

    def enable_compile(self, *, backend: str = "inductor") -> bool:
        """``torch.compile`` the encoders, DPT heads, update block and backbone, in place (same modules,
        same state_dict keys); each compiles on its first call, once per input shape."""
        if self.compiled:
            return True
        for name in _COMPILE_PARTS:
            part = getattr(self.model, name, None)
            if part is not None:
                part.compile(backend=backend)
        self.compiled = True
        return True

    def enable_refinement_compile(self, *, backend: str = "inductor") -> bool:
        """Compile one refinement iteration, the correlation look-up and the update block together
        (:meth:`DAFlow.refine_step`), replayed for every iteration but the last (which adds the
        upsampling heads). On CUDA with ``mode="reduce-overhead"``: CUDA graphs, so an iteration is one
        graph launch instead of dozens of kernel launches. Opt-in: its speed is not measured yet."""
        import torch

        if self.model.compiled_step is None:
            # `mode` belongs to inductor; other backends (tests: "eager", "aot_eager") take none
            mode = "reduce-overhead" if self.device.type == "cuda" and backend == "inductor" else None
            self.model.compiled_step = torch.compile(self.model.refine_step, backend=backend, mode=mode,
                                                     dynamic=False)
        return True

    def memory_estimate(self, *, frames: int, height: int, width: int) -> int:
        import torch

        return working_memory_bytes(
            self.model, frames=frames, height=height, width=width, corr_impl=self.corr_impl,
            low_precision=self.dtype != torch.float32, cuda=self.device.type == "cuda",
            flow_init=self.flow_init, prior_on_device=self.prior_on_device,
        )

    def estimate(self, frames: np.ndarray) -> WindowFlows:
        return self._run(frames, self.dtype)

    def launch(self, windows: np.ndarray) -> Callable[[], list[WindowFlows]]:
        """All of ``windows`` ``[B, F, H, W, 3]`` in one forward pass (the batch dimension of the model).

        On CUDA this returns once the upload, the network and the download are queued; the function it
        returns waits for the download and hands back one :class:`WindowFlows` per window. Every window
        gets the flow it gets alone, up to float32 summation order in the batched kernels.
        """
        return self._launch(windows, self.dtype)

    def estimate_as(self, frames: np.ndarray, *, dtype: str) -> WindowFlows:
        """:meth:`estimate` with another compute dtype (for numerics checks against float32)."""
        import torch

        if dtype not in _DTYPES:
            raise ModelError(f"dtype {dtype!r} is not supported; use one of {', '.join(_DTYPES)}")
        return self._run(frames, getattr(torch, dtype))

    def _run(self, frames: np.ndarray, dtype) -> WindowFlows:
        return self._launch(frames[None], dtype)()[0]

    def _launch(self, windows: np.ndarray, dtype) -> Callable[[], list[WindowFlows]]:
        import torch

        from ..model.update import confidence_from_info

        b, f = windows.shape[:2]
        cuda = self.device.type == "cuda"
        host = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))  # [B, F, H, W, 3]
        if cuda:
            # pinned staging, so the copy is a DMA that does not block the host
            host = host.pin_memory()
        # [B, F, H, W, 3] -> x: [B, F, 3, H, W]; the permute keeps NHWC memory, which the encoders'
        # channels_last convolutions read without a copy
        display = host.to(self.device, non_blocking=cuda).permute(0, 1, 4, 2, 3)
        x = self.transform(display)
        low = dtype != torch.float32
        # Reduced precision through autocast (weights stay float32), so numerics-sensitive parts
        # such as the correlation look-up and softmax stay in float32.
        ctx = torch.autocast(self.device.type, dtype=dtype) if low else nullcontext()

        def prior():  # [B, P, 2, H, W]
            return torch.cat([self._prior_flow(w) for w in windows])

        with ExitStack() as stack:
            init = None
            if self.prior_on_device:
                with torch.inference_mode():
                    init = device_prior(display)
            elif self._prior is not None:
                if self.overlap_prior:
                    # The DIS solves run on a host thread while this thread queues the device's
                    # feature pass; the model asks for the prior only when refinement starts.
                    pool = stack.enter_context(ThreadPoolExecutor(max_workers=1))
                    init = pool.submit(prior).result
                else:
                    init = prior()
            with torch.inference_mode(), ctx:
                out = self.model(x, iters=self.iters, corr_impl=self.corr_impl, flow_init=init)
                flow_dev = out.flow.flatten(0, 1).float().permute(0, 2, 3, 1)  # [B*P, H, W, 2]
                conf_dev = confidence_from_info(out.info.flatten(0, 1).float())  # [B*P, H, W]
                download = _download(flow_dev, conf_dev, cuda=cuda)
        p = f - 1

        def finish() -> list[WindowFlows]:
            flow, conf = download()
            flow = flow.reshape(b, 2 * p, *flow.shape[1:])  # [B, P, H, W, 2]
            conf = conf.reshape(b, 2 * p, *conf.shape[1:])  # [B, P, H, W]
            return [WindowFlows(forward=flow[i, :p], backward=flow[i, p:], confidence_forward=conf[i, :p],
                                confidence_backward=conf[i, p:]) for i in range(b)]

        return finish

    def _prior_flow(self, frames: np.ndarray):
        """The prior's forward and backward flows on the device: [1, P, 2, H, W] in the model's pair order."""
        import torch

        assert self._prior is not None
        prior = self._prior.estimate(frames)  # forward, backward: [F-1, H, W, 2] each
        host = torch.from_numpy(np.concatenate([prior.forward, prior.backward]))  # [P, H, W, 2]
        cuda = self.device.type == "cuda"
        if cuda:
            host = host.pin_memory()
        return host.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2)[None]


def device_prior(x) -> Any:
    """DIS's forward and backward flows of display-referred windows ``x`` [B, F, 3, H, W], computed on
    their device by :func:`daflow_vfx.model.dis.dis_flow`: [B, P, 2, H, W] in the model's pair order
    (every forward pair, then every backward pair)."""
    import torch

    from ..model.dis import dis_flow, gray_u8

    b, f = x.shape[:2]
    gray = gray_u8(x)  # [B, F, H, W]
    first = torch.cat([gray[:, :-1], gray[:, 1:]], dim=1)  # [B, P, H, W]: forward pairs, then backward
    second = torch.cat([gray[:, 1:], gray[:, :-1]], dim=1)
    flow = dis_flow(first.flatten(0, 1), second.flatten(0, 1))  # [B*P, 2, H, W]
    return flow.reshape(b, 2 * (f - 1), *flow.shape[1:])


def _download(*tensors, cuda: bool) -> Callable[[], list[np.ndarray]]:
    """Device tensors to numpy, as a function that waits for them. On CUDA each is copied into pinned
    host memory without blocking and an event marks the end of the copies: the host is free to queue
    more work until the function is called, which waits for that event only (not for later work)."""
    import torch

    if not cuda:
        arrays = [t.cpu().numpy() for t in tensors]
        return lambda: arrays
    hosts = []
    for t in tensors:
        t = t.contiguous()
        pinned = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        pinned.copy_(t, non_blocking=True)
        hosts.append(pinned)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(tensors[0].device))

    def wait() -> list[np.ndarray]:
        done.synchronize()
        return [h.numpy() for h in hosts]

    return wait


def make_daflow(
    *,
    name: str,
    device: str = "cpu",
    dtype: str = "float32",
    weights: str | None = None,
    iters: int | None = None,
    allow_random: bool = False,
    compile: bool = False,
    prior_on_device: bool | None = None,
) -> DAFlowEstimator:
    """The registry's factory for every DA-Flow variant: its network with its weights (see
    :func:`~daflow_vfx.model.weights.build_model`), behind the estimator contract."""
    from ..engine import resolve_device
    from ..model.weights import build_model, flow_init_of

    model, entry, digest = build_model(name, weights=weights, allow_random=allow_random)
    return DAFlowEstimator(
        model=model,
        transform=entry.transform,
        name=name,
        weights_sha256=digest,
        flow_init=flow_init_of(entry, weights),
        device=resolve_device(device),
        dtype=dtype,
        iters=iters or entry.iters,
        compile=compile,
        prior_on_device=prior_on_device,
    )
