"""Training objectives for the two stages."""

from __future__ import annotations

import math

import torch

from ..model.update import mixture_params

# Ground truth beyond this many pixels is ignored, as in RAFT / SEA-RAFT.
MAX_FLOW = 400.0


def flow_matching_loss(velocity: torch.Tensor, clean: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Rectified flow: with x_t = (1 - t) x_0 + t * noise the target velocity is noise - x_0."""
    return torch.mean((velocity.float() - (noise - clean).float()) ** 2)


def mixture_nll(
    flow: torch.Tensor, info: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """SEA-RAFT's mixture-of-Laplace negative log-likelihood, averaged over valid pixels.

    flow, gt: [N, 2, H, W]; info: [N, 3, H, W]; valid: [N, H, W].
    """
    log_weight, log_b = mixture_params(info.float())  # [N, 2, H, W] each
    err = (flow.float() - gt).abs().sum(dim=1, keepdim=True)  # |e_u| + |e_v|: [N, 1, H, W]
    # log p_k = log w_k - 2 log(2 b_k) - (|e_u| + |e_v|) / b_k
    log_p = log_weight - 2.0 * (math.log(2.0) + log_b) - err / torch.exp(log_b)
    nll = -torch.logsumexp(log_p, dim=1)  # [N, H, W]
    mask = valid * (gt.norm(dim=1) < MAX_FLOW)
    return (nll * mask).sum() / mask.sum().clamp_min(1.0)


def l1_flow(flow: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """RAFT's L1: mean of |e_u| + |e_v| over valid pixels."""
    mask = valid * (gt.norm(dim=1) < MAX_FLOW)
    return ((flow.float() - gt).abs().sum(dim=1) * mask).sum() / mask.sum().clamp_min(1.0)


def sequence_loss(
    iterations: list[tuple[torch.Tensor, torch.Tensor]],
    gt: torch.Tensor,
    valid: torch.Tensor,
    *,
    gamma: float,
) -> torch.Tensor:
    """gamma-weighted sum over refinement iterations (later iterations weigh more).

    The flow is driven by RAFT's L1; the mixture-of-Laplace NLL trains only the uncertainty
    (on detached flow). Training the flow through the NLL alone collapsed: the wide component
    took most of the weight (b ~ 8 px), so the flow's gradient shrank to ~1/b and a 1,300-step
    CPU run ended predicting near-zero flow (its EPE equalled the zero-flow EPE).
    """
    n = len(iterations)
    total = gt.new_zeros(())
    for i, (flow, info) in enumerate(iterations):
        w = gamma ** (n - i - 1)
        total = total + w * (l1_flow(flow, gt, valid) + mixture_nll(flow.detach(), info, gt, valid))
    return total


def epe(flow: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean end-point error (px) over valid pixels."""
    mask = valid * (gt.norm(dim=1) < MAX_FLOW)
    return ((flow.float() - gt).norm(dim=1) * mask).sum() / mask.sum().clamp_min(1.0)
