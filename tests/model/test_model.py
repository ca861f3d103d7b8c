"""DA-Flow network: shapes, lifting, gradients, correlation paths, factories."""

import pytest
import torch

from daflow_vfx.model.corr import AllPairsCorr, LocalCorr
from daflow_vfx.model.daflow import daflow_compact, daflow_compact_cnn, daflow_full, neighbour_pairs
from daflow_vfx.model.dit import param_count
from daflow_vfx.model.update import confidence_from_info
from daflow_vfx.train.losses import flow_matching_loss, mixture_nll, sequence_loss

from .conftest import tiny_daflow


def test_forward_shapes_and_pairs(tiny):
    x = torch.rand(2, 3, 3, 32, 48) * 2 - 1
    out = tiny(x, iters=2, return_all=True)
    assert out.pairs == [(0, 1), (1, 2), (1, 0), (2, 1)] == neighbour_pairs(3)
    assert out.flow.shape == (2, 4, 2, 32, 48)
    assert out.info.shape == (2, 4, 3, 32, 48)
    assert len(out.iterations) == 2
    conf = confidence_from_info(out.info[0].detach())
    assert conf.shape == (4, 32, 48) and float(conf.min()) >= 0 and float(conf.max()) <= 1


def test_two_frame_window_and_custom_pairs(tiny):
    x = torch.rand(1, 2, 3, 32, 32)
    assert tiny(x, iters=1).flow.shape == (1, 2, 2, 32, 32)
    assert tiny(x, iters=1, pairs=[(1, 0)]).flow.shape == (1, 1, 2, 32, 32)


@pytest.mark.parametrize("size", [(33, 48), (32, 40)])
def test_sizes_not_multiple_of_stride_are_rejected(tiny, size):
    # The model never pads silently: the engine pads to `stride` and crops back.
    assert tiny.stride == 16
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny(torch.rand(1, 2, 3, *size), iters=1)


def _tap_frame0(model, x):
    return model.backbone_taps(x)[0].reshape(1, 3, *model.backbone_taps(x)[0].shape[1:])[0, 0]


@torch.no_grad()
def test_lifting_mixes_frames():
    torch.manual_seed(0)
    lifted = tiny_daflow(lift=True).eval()
    single = tiny_daflow(lift=False).eval()
    single.load_state_dict(lifted.state_dict())  # same weights, only the attention span differs
    x = torch.rand(1, 3, 3, 32, 32)
    y = x.clone()
    y[:, 1] = torch.rand(3, 32, 32)  # perturb frame 2 of the window (index 1)
    a, b = _tap_frame0(lifted, x), _tap_frame0(lifted, y)
    assert float((a - b).abs().max()) > 1e-4
    a, b = _tap_frame0(single, x), _tap_frame0(single, y)
    assert float((a - b).abs().max()) == 0.0


def test_gradients_reach_every_trainable_part():
    torch.manual_seed(0)
    model = tiny_daflow()
    x = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    # Stage 1 (restoration) and stage 2 (flow) together train every parameter.
    noise = torch.randn(1, 3, 3, 32, 32)
    t = torch.full((1,), 0.4)
    z = (1 - t.view(1, 1, 1, 1, 1)) * x + t.view(1, 1, 1, 1, 1) * noise
    restore = flow_matching_loss(model.backbone(z, x, t, return_velocity=True).velocity, x, noise)
    out = model(x, iters=2, return_all=True)
    gt = torch.randn(4, 2, 32, 32)
    its = [(f.flatten(0, 1), i.flatten(0, 1)) for f, i in out.iterations]
    flow = sequence_loss(its, gt, torch.ones(4, 32, 32), gamma=0.8)
    (restore + flow).backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert missing == []


def test_uncertainty_loss_does_not_reach_the_flow_path():
    # The mixture NLL trains only the uncertainty head: through the shared trunk its early, large
    # gradients blew up the flow in training (docs/training/README.md).
    torch.manual_seed(0)
    model = tiny_daflow()
    out = model(torch.rand(1, 2, 3, 32, 32) * 2 - 1, iters=2, return_all=True)
    its = [(f.flatten(0, 1), i.flatten(0, 1)) for f, i in out.iterations]
    gt = torch.randn(2, 2, 32, 32)
    nll = sum(mixture_nll(f.detach(), i, gt, torch.ones(2, 32, 32)) for f, i in its)
    nll.backward()
    ub = model.update_block
    assert ub.info_head.weight.grad is not None and ub.info_head.weight.grad.any()
    for name, p in model.named_parameters():
        if not name.startswith("update_block.info_head."):
            assert p.grad is None or not p.grad.any(), name


def test_dpt_features_share_the_cnn_scale(tiny):
    # The DPT half of the matching features is instance-normalised, so at initialisation it is not
    # ~20x smaller than the CNN half (which would make the correlation ignore it).
    with torch.no_grad():
        q = tiny.extract(torch.rand(1, 2, 3, 32, 32) * 2 - 1).query
    dpt = q[:, :, 16:]  # the tiny CNN encoder gives 16 channels, the DPT head the rest
    assert dpt.shape[2] > 0
    assert 0.9 < float(dpt.std()) < 1.1


@pytest.mark.parametrize("cell", ["gru", "convnext"])
def test_update_cells(cell):
    model = tiny_daflow(cell=cell)
    assert model(torch.rand(1, 2, 3, 32, 32), iters=2).flow.shape == (1, 2, 2, 32, 32)


def test_cnn_only_ablation_has_no_backbone():
    model = tiny_daflow(backbone=False)
    assert model.backbone is None and model.stride == 8
    assert model(torch.rand(1, 2, 3, 24, 40), iters=1).flow.shape == (1, 2, 2, 24, 40)


@torch.no_grad()
def test_warm_start_changes_the_starting_point(tiny):
    x = torch.rand(1, 2, 3, 32, 32)
    cold = tiny(x, iters=1)
    warm = tiny(x, iters=1, flow_init=torch.full((1, 2, 2, 32, 32), 8.0))
    assert not torch.allclose(cold.flow, warm.flow)


@torch.no_grad()
def test_flow_init_may_be_deferred_until_the_features_exist(tiny):
    # The estimator passes a function when the prior (DIS) is computed on a host thread: it must be
    # called once, after extraction, and give exactly what the tensor itself gives.
    x = torch.rand(1, 2, 3, 32, 32)
    init = torch.randn(1, 2, 2, 32, 32)
    calls = []

    def deferred() -> torch.Tensor:
        calls.append(1)
        return init

    want = tiny(x, iters=2, flow_init=init)
    got = tiny(x, iters=2, flow_init=deferred)
    assert calls == [1]
    torch.testing.assert_close(got.flow, want.flow, rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("hw", [(7, 9), (12, 20), (1, 3)])
@pytest.mark.parametrize("max_volume", [0, 12 * 20 * 30, 10**9])  # none, the coarse levels, all precomputed
def test_local_correlation_matches_all_pairs(hw, max_volume):
    torch.manual_seed(0)
    h, w = hw
    f1, f2 = torch.randn(2, 24, h, w), torch.randn(2, 24, h, w)
    coords = torch.rand(2, 2, h, w) * torch.tensor([w, h]).view(1, 2, 1, 1) * 1.5 - 2
    a = AllPairsCorr(f1, f2, levels=4, radius=3)(coords)
    b = LocalCorr(f1, f2, levels=4, radius=3, chunk=13, max_volume=max_volume)(coords)
    assert a.shape == b.shape == (2, 4 * 49, h, w)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("tile", [0, 3, 8])
@pytest.mark.parametrize("hw", [(13, 22), (5, 4)])
def test_block_correlation_matches_all_pairs(tile, hw):
    """Smooth motion (the block path), a motion boundary (blocks fall back to the gather) and
    off-frame positions, with a grid that is not a whole number of blocks."""
    torch.manual_seed(1)
    h, w = hw
    f1, f2 = torch.randn(2, 16, h, w), torch.randn(2, 16, h, w)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    coords = torch.stack([xs, ys])[None].repeat(2, 1, 1, 1) + torch.tensor([2.3, -1.6]).view(1, 2, 1, 1)
    coords = coords + 0.4 * torch.randn(2, 2, h, w)
    coords[1, 0, :, w // 2:] += 11.0  # a boundary: blocks across it span more than max_spread
    corr = LocalCorr(f1, f2, levels=3, radius=2, chunk=7, tile=tile, max_spread=4)
    a = AllPairsCorr(f1, f2, levels=3, radius=2)(coords)
    torch.testing.assert_close(corr(coords), a, atol=1e-5, rtol=1e-5)
    if tile:
        r = corr.radius
        base = torch.floor(coords).long()
        _, todo = corr._blocks(corr.tables[0][1], base[:, 0], base[:, 1], h, w,
                               torch.arange(-r, r + 2).repeat(2 * r + 2),
                               torch.arange(-r, r + 2).repeat_interleave(2 * r + 2))
        assert not todo[0].any()  # smooth motion: every block took the matrix product
        if w // 2 >= tile:
            assert todo[1].any()  # the boundary's blocks fell back to the per-pixel gather


@torch.no_grad()
def test_model_correlation_paths_agree(tiny):
    x = torch.rand(1, 2, 3, 32, 48)
    a = tiny(x, iters=3, corr_impl="all_pairs").flow
    b = tiny(x, iters=3, corr_impl="local").flow
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


@torch.no_grad()
def test_backbone_token_budget_keeps_the_grid():
    torch.manual_seed(0)
    model = tiny_daflow(max_tokens=4)  # 64x64 has 16 tokens per frame: downscaled to 2x2, upsampled back
    taps = model.backbone_taps(torch.rand(1, 2, 3, 64, 64))
    assert taps[0].shape == (2, 32, 4, 4)


def test_factories_build_explicit_variants():
    compact = daflow_compact()
    assert 5e6 <= param_count(compact) <= 20e6
    assert compact.stride == 16 and compact.backbone.taps == (1, 3, 4, 5)
    assert daflow_compact_cnn().backbone is None


def test_full_variant_on_meta_device():
    with torch.device("meta"):
        full = daflow_full()
    n = param_count(full.backbone)
    assert 2.1e9 <= n <= 2.35e9, n  # DiT4SR / SD3.5-medium transformer: about 2.2 B
    assert full.backbone.taps == (3, 13, 16, 17) and full.backbone.depth == 24
    assert sum(b.use_dual_attention for b in full.backbone.transformer_blocks) == 13
    assert full.stride == 16


def _convex_reference(x: torch.Tensor, mask: torch.Tensor, factor: int, scale: float) -> torch.Tensor:
    # Output pixel (y*f + i, x*f + j) = sum over the 3x3 neighbours k of softmax_k(mask) * value_k,
    # written out pixel-block by pixel-block.
    n, c, h, w = x.shape
    m = torch.softmax(mask.view(n, 9, factor, factor, h, w).double(), dim=1)
    pad = torch.nn.functional.pad(scale * x.double(), (1, 1, 1, 1))
    out = torch.zeros(n, c, h * factor, w * factor, dtype=torch.float64)
    for k in range(9):
        dy, dx = divmod(k, 3)
        nb = pad[:, :, dy : dy + h, dx : dx + w]  # [N, C, h, w]
        for i in range(factor):
            for j in range(factor):
                out[:, :, i::factor, j::factor] += m[:, k, i, j][:, None] * nb
    return out


@pytest.mark.parametrize("factor", [2, 8])
def test_convex_upsample_matches_its_definition(factor):
    from daflow_vfx.model.update import convex_upsample, convex_weights

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, generator=g)
    mask = torch.randn(2, 9 * factor * factor, 5, 7, generator=g)
    up = convex_upsample(x, convex_weights(mask, factor=factor), scale=8.0)
    assert up.shape == (2, 3, 5 * factor, 7 * factor)
    torch.testing.assert_close(up.double(), _convex_reference(x, mask, factor, 8.0), atol=1e-5, rtol=1e-5)
    # gradients reach both the values and the mask through the in-place accumulation
    x.requires_grad_(True)
    mask.requires_grad_(True)
    convex_upsample(x, convex_weights(mask, factor=factor)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert mask.grad is not None and mask.grad.abs().sum() > 0


@pytest.mark.parametrize("max_volume", [0, 10**9], ids=["on-demand", "precomputed"])
def test_correlation_volumes_stay_float32_under_bf16_autocast(max_volume):
    """A volume is made once and sampled every iteration: under autocast it is kept in float32, so
    the look-up (float32 under autocast) never converts it again, and it matches the float32 one."""
    torch.manual_seed(0)
    f1, f2 = torch.randn(1, 16, 12, 16), torch.randn(1, 16, 12, 16)
    coords = torch.rand(1, 2, 12, 16) * torch.tensor([15.0, 11.0]).view(1, 2, 1, 1)
    ref_all = AllPairsCorr(f1, f2, levels=3, radius=2)(coords)
    ref_local = LocalCorr(f1, f2, levels=3, radius=2, max_volume=max_volume)(coords)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        all_pairs = AllPairsCorr(f1, f2, levels=3, radius=2)
        local = LocalCorr(f1, f2, levels=3, radius=2, max_volume=max_volume)
        assert all(level.dtype == torch.float32 for level in all_pairs.pyramid)
        assert all(t.dtype == torch.float32 for kind, t, *_ in local.tables if kind == "volume")
        got_all, got_local = all_pairs(coords), local(coords)
    torch.testing.assert_close(got_all.float(), ref_all, atol=0.1, rtol=0.02)
    torch.testing.assert_close(got_local.float(), ref_local, atol=0.1, rtol=0.02)


def test_correlation_volume_is_the_same_in_chunks(monkeypatch):
    """The volume is made in chunks of query rows (so a half-type copy never spans it all): any chunk
    size gives the one matrix product."""
    import daflow_vfx.model.corr as corr

    torch.manual_seed(0)
    q, k = torch.randn(2, 37, 8), torch.randn(2, 8, 11)
    ref = torch.bmm(q, k)
    for chunk in (1, 22 * 5, 22 * 37, 1 << 24):  # 1 row, 5 rows, all rows, the default
        monkeypatch.setattr(corr, "_VOLUME_CHUNK", chunk)
        out = corr._volume(q, k)
        assert out.dtype == torch.float32 and out.shape == (2, 37, 11)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-5)
