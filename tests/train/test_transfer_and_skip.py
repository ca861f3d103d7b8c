"""Training without host waits: uploads, read-backs, and skipping a non-finite update on the device."""

import numpy as np
import pytest
import torch

from daflow_vfx.train.steps import load_optimizer_state, skip_nonfinite_step
from daflow_vfx.train.transfer import Readback, upload


def _net_and_opt(*, fused: bool | None, device: str = "cpu"):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)
    return net, opt


def _step(net, opt, *, poison: bool) -> torch.Tensor:
    x = torch.randn(5, 4, device=next(net.parameters()).device)
    loss = net(x).square().mean()
    if poison:
        loss = loss * float("nan")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    skip_nonfinite_step(opt, norm)
    return norm


def _snapshot(net, opt):
    params = [p.detach().clone() for p in net.parameters()]
    state = [{k: v.clone() for k, v in opt.state[p].items()} for p in net.parameters()]
    return params, state


@pytest.mark.parametrize("fused", [True, None], ids=["fused", "plain"])
def test_a_non_finite_gradient_leaves_weights_and_moments_alone(device, fused):
    if fused is None and device == "cuda":
        pytest.skip("the plain optimiser is only the fallback for optimisers built elsewhere")
    net, opt = _net_and_opt(fused=fused, device=device)
    _step(net, opt, poison=False)  # the moments and the step count exist from here on
    params, state = _snapshot(net, opt)
    norm = _step(net, opt, poison=True)
    assert not torch.isfinite(norm)
    for p, before in zip(net.parameters(), params, strict=True):
        assert torch.equal(p.detach(), before)
    for p, before in zip(net.parameters(), state, strict=True):
        for k, v in opt.state[p].items():
            assert torch.equal(v, before[k]), k  # the step count was put back too
    assert not hasattr(opt, "found_inf")
    # A finite step after it trains as usual.
    _step(net, opt, poison=False)
    assert not all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), params, strict=True))
    assert all(float(opt.state[p]["step"]) == 2 for p in net.parameters())


def test_a_finite_step_is_the_plain_adamw_step():
    fused_net, fused_opt = _net_and_opt(fused=True)
    plain_net, plain_opt = _net_and_opt(fused=None)
    torch.manual_seed(1)
    _step(fused_net, fused_opt, poison=False)
    torch.manual_seed(1)
    _step(plain_net, plain_opt, poison=False)
    for a, b in zip(fused_net.parameters(), plain_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_a_plain_optimiser_resumes_fused():
    net, plain = _net_and_opt(fused=None)
    _step(net, plain, poison=False)
    fused = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    load_optimizer_state(fused, plain.state_dict())
    assert all(g["fused"] for g in fused.param_groups)
    params, _ = _snapshot(net, fused)
    _step(net, fused, poison=True)  # the device-side skip needs the fused kernel: it runs, and skips
    assert all(torch.equal(p.detach(), b) for p, b in zip(net.parameters(), params, strict=True))


def test_readback_gives_floats_and_keeps_none(device):
    loss = torch.tensor(0.25, device=device)
    epe = torch.tensor([1.5], device=device, dtype=torch.bfloat16).reshape(())
    assert Readback(loss, None).values() == [0.25, None]
    assert Readback(loss, epe).values() == [0.25, 1.5]
    assert Readback(None).values() == [None]
    # The copy is taken when the read-back is made: later changes to the tensor do not show.
    rb = Readback(loss)
    loss.add_(1.0)
    assert rb.values() == [0.25]


def test_upload_converts_without_a_fixed_dtype(device):
    a = np.array([[1.5, 2.0]], dtype=np.float64)
    t = upload(a, device)
    assert t.dtype == torch.float32 and t.device.type == device and t.tolist() == [[1.5, 2.0]]
    idx = upload([3, 1], device, torch.long)
    assert idx.dtype == torch.long and idx.tolist() == [3, 1]
    assert upload(np.arange(6).reshape(2, 3)[:, ::2], device).tolist() == [[0.0, 2.0], [3.0, 5.0]]


@pytest.mark.gpu
@pytest.mark.parametrize("stage", [1, 2])
def test_the_generator_and_the_step_never_wait_for_the_device(stage):
    """On CUDA neither a data call nor a training step makes the host wait (the GPU's queue stays full)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from daflow_vfx.bench.train_speed import count_host_waits
    from daflow_vfx.model.weights import build_model, get_entry
    from daflow_vfx.train.config import TrainConfig
    from daflow_vfx.train.steps import make_optimizer, train_step
    from daflow_vfx.train.synth_torch import DeviceWindowGenerator

    device = torch.device("cuda")
    model = "daflow-compact-noprior"
    make = DeviceWindowGenerator(size=(64, 96), batch_size=4, device=device, seed=0, degrade="random")
    net, _, _ = build_model(model, allow_random=True)
    net.to(device).train()
    net.backbone.requires_grad_(True)
    cfg = TrainConfig(model=model, crop=(64, 96), batch_size=4, iters=2, autocast="bfloat16", data="device",
                      device="cuda")
    opt = make_optimizer(net, cfg, stage)
    host = torch.Generator().manual_seed(0)
    noise = torch.Generator(device).manual_seed(0)

    def step(k: int) -> None:
        loss, epe = train_step(net, opt, make(k), stage=stage, transform=get_entry(model).transform, cfg=cfg,
                               nframes=3, host_gen=host, noise_gen=noise)
        Readback(loss, epe)

    for k in range(2):  # first calls: lazy initialisation (cuBLAS handles, allocator pools) may wait
        step(k)
    assert count_host_waits(make, 5, device) == 0
    assert count_host_waits(step, 6, device) == 0
