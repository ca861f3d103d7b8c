"""daflow-compact behind the engine: padding, windows, chunking, registry."""

import numpy as np
import pytest
import torch

from daflow_vfx.engine import FlowEngine
from daflow_vfx.errors import ModelError, WeightsError
from daflow_vfx.estimators import load_estimator
from daflow_vfx.estimators.daflow import DAFlowEstimator
from daflow_vfx.model.weights import REGISTRY

from ..model.conftest import tiny_daflow


@pytest.fixture(scope="module")
def tiny_estimator():
    torch.manual_seed(0)
    return DAFlowEstimator(
        model=tiny_daflow(),
        transform=REGISTRY["daflow-compact"].transform,
        name="daflow-tiny",
        weights_sha256=None,
        iters=2,
    )


def _frames(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, h, w, 3), dtype=np.float32)


def test_window_of_three_gives_forward_backward_and_confidence(tiny_estimator):
    out = FlowEngine(tiny_estimator).estimate_window(_frames(3, 37, 53))  # odd size: the engine pads to 16
    assert out.forward.shape == out.backward.shape == (2, 37, 53, 2)
    assert out.confidence_forward.shape == (2, 37, 53)
    assert np.isfinite(out.forward).all()
    assert 0 <= out.confidence_forward.min() and out.confidence_forward.max() <= 1


def test_pair_and_dtype(tiny_estimator):
    flow = FlowEngine(tiny_estimator).estimate_pair(*_frames(2, 20, 30))
    assert flow.shape == (20, 30, 2) and flow.dtype == np.float32


def test_the_same_window_gives_the_same_flow(tiny_estimator):
    # Fixed-seed feature noise: chunks of a farm render see identical numbers for the same window.
    frames = _frames(3, 32, 32, seed=3)
    a = tiny_estimator.estimate(frames)
    b = tiny_estimator.estimate(frames)
    np.testing.assert_array_equal(a.forward, b.forward)


def test_random_weights_only_when_asked():
    missing = [n for n, e in REGISTRY.items() if e.file is not None and not e.weights_present()]
    if not missing:
        pytest.skip("every shipped variant has trained weights")
    with pytest.raises(WeightsError, match="no trained weights.*dis"):
        load_estimator(missing[0])
    est = load_estimator(missing[0], allow_random=True, iters=1)
    assert est.window == 3 and est.weights_sha256 is None


def test_shipped_compact_weights_track_a_known_motion():
    # The shipped weights are real: on a textured frame moved by a known sub-pixel translation the
    # flow is right to well under a pixel (away from the borders the motion uncovers).
    import cv2

    if not REGISTRY["daflow-compact"].weights_present():
        pytest.skip("no shipped daflow-compact weights")
    est = load_estimator("daflow-compact")
    assert est.weights_sha256 == REGISTRY["daflow-compact"].sha256 and est.flow_init == "dis"
    # The iterations the weights were evaluated with, unless the caller says otherwise.
    assert est.iters == REGISTRY["daflow-compact"].iters
    assert load_estimator("daflow-compact", iters=7).iters == 7
    rng = np.random.default_rng(7)
    big = cv2.GaussianBlur(rng.random((160, 200, 3), dtype=np.float32), (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min())
    shift = np.float32([[1, 0, 3.5], [0, 1, -2.25]])
    moved = cv2.warpAffine(big, shift, (200, 160), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    flow = FlowEngine(est).estimate_pair(big[16:-16, 16:-16], moved[16:-16, 16:-16])  # [H, W, 2]
    inner = flow[12:-12, 12:-12]
    err = np.linalg.norm(inner - np.float32([3.5, -2.25]), axis=-1)
    assert float(err.mean()) < 0.5


def test_unknown_dtype_is_a_clean_error():
    with pytest.raises(ModelError, match="dtype"):
        DAFlowEstimator(
            model=tiny_daflow(),
            transform=REGISTRY["daflow-compact"].transform,
            name="x",
            weights_sha256=None,
            dtype="int8",
        )


def _silenced(model):
    # An update block that never moves the flow: the model's output is then its initial flow.
    with torch.no_grad():
        model.update_block.flow_head.weight.zero_()
        model.update_block.flow_head.bias.zero_()
    return model


def test_dis_prior_is_refined_at_full_resolution():
    from daflow_vfx.estimators.classical import DISEstimator

    torch.manual_seed(0)
    est = DAFlowEstimator(
        model=_silenced(tiny_daflow()),
        transform=REGISTRY["daflow-compact"].transform,
        name="daflow-tiny",
        weights_sha256=None,
        iters=2,
        flow_init="dis",
    )
    frames = _frames(3, 48, 64, seed=3)
    got = est.estimate(frames)
    want = DISEstimator().estimate(frames)
    # Residual formulation: with no correction the DIS flow comes back exactly, fine detail included.
    np.testing.assert_allclose(got.forward, want.forward, atol=1e-4)
    np.testing.assert_allclose(got.backward, want.backward, atol=1e-4)


def test_prior_overlapped_on_a_thread_gives_the_same_flow():
    # The opt-in overlap (DIS on host threads while the features are computed), run here on the
    # CPU: the result must not depend on it.
    def build(overlap: bool) -> DAFlowEstimator:
        torch.manual_seed(0)
        return DAFlowEstimator(
            model=tiny_daflow(), transform=REGISTRY["daflow-compact"].transform, name="daflow-tiny",
            weights_sha256=None, iters=2, flow_init="dis", overlap_prior=overlap,
        )

    frames = _frames(3, 48, 64, seed=4)
    serial, overlapped = build(False), build(True)
    assert overlapped.overlap_prior and overlapped._prior.workers >= 1 and serial._prior.workers == 1
    want, got = serial.estimate(frames), overlapped.estimate(frames)
    np.testing.assert_allclose(got.forward, want.forward, atol=1e-5)
    np.testing.assert_allclose(got.backward, want.backward, atol=1e-5)


@pytest.mark.parametrize("workers", [2, 4])
def test_dis_on_threads_matches_dis_on_one(workers):
    from daflow_vfx.estimators.classical import DISEstimator

    frames = _frames(4, 40, 56, seed=5)
    want = DISEstimator().estimate(frames)
    got = DISEstimator(workers=workers).estimate(frames)
    # same pairs, same order, bit-identical: each thread has its own OpenCV DIS object
    np.testing.assert_array_equal(got.forward, want.forward)
    np.testing.assert_array_equal(got.backward, want.backward)
    with pytest.raises(ModelError, match="workers must be at least 1"):
        DISEstimator(workers=0)


def test_flow_init_comes_from_the_weights_metadata(tmp_path):
    from daflow_vfx.model.weights import flow_init_of, save_weights

    entry = REGISTRY["daflow-compact-cnn"]
    path = tmp_path / "w.safetensors"
    save_weights(tiny_daflow(backbone=False), path, metadata={"flow_init": "dis"})
    assert flow_init_of(entry, path) == "dis"
    save_weights(tiny_daflow(backbone=False), path, metadata={})
    assert flow_init_of(entry, path) is None
    save_weights(tiny_daflow(backbone=False), path, metadata={"flow_init": "magic"})
    with pytest.raises(WeightsError, match="unknown flow_init 'magic'"):
        flow_init_of(entry, path)


def test_prior_on_the_device_is_refined_like_the_host_prior():
    # prior_on_device: model.dis computes the prior from the uploaded frames instead of OpenCV on the
    # host. With an update block that never moves the flow, the output is that prior, which follows
    # OpenCV's closely; on the CPU the host prior stays the default.
    from daflow_vfx.estimators.classical import DISEstimator
    from daflow_vfx.model.dis import dis_flow, gray_u8

    def build(on_device):
        torch.manual_seed(0)
        return DAFlowEstimator(model=_silenced(tiny_daflow()), transform=REGISTRY["daflow-compact"].transform,
                               name="daflow-tiny", weights_sha256=None, iters=2, flow_init="dis",
                               prior_on_device=on_device)

    assert not build(None).prior_on_device and build(None)._prior is not None
    est = build(True)
    assert est.prior_on_device and est._prior is None
    frames = _frames(3, 48, 64, seed=3) * 0.2 + np.linspace(0, 0.8, 64, dtype=np.float32)[:, None]
    got = est.estimate(frames)
    gray = gray_u8(torch.from_numpy(frames).permute(0, 3, 1, 2))  # [3, H, W]
    want_fwd = dis_flow(gray[:2], gray[1:]).permute(0, 2, 3, 1).numpy()
    want_bwd = dis_flow(gray[1:], gray[:2]).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got.forward, want_fwd, atol=1e-4)
    np.testing.assert_allclose(got.backward, want_bwd, atol=1e-4)
    host = DISEstimator().estimate(frames)
    assert np.abs(got.forward - host.forward).mean() < 0.2
