"""LPIPS and DISTS: plumbing with random weights, reference values with the real ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avfc.errors import ConfigError, MediaError
from avfc.eval.backbones import WEIGHTS_ENV
from avfc.eval.perceptual import DISTS, LPIPS

from ._synth import alex_state, synthetic_pair, vgg_state

# Reference values on synthetic_pair(t=2, h=96, w=80), computed with the reference
# implementations (lpips 0.1.4: LPIPS(net=...)(x, y, normalize=True); DISTS_pytorch 0.1:
# DISTS()(x, y) with its weights.pt), run in a scratch dir with the same ImageNet backbone
# weights as ../shared/weights served in place of torchvision. Our values agreed to 1e-8.
REF_LPIPS_ALEX = (0.09845439, 0.09961233)
REF_LPIPS_VGG = (0.14479049, 0.13753696)
REF_DISTS = (0.14317864, 0.14054322)


@pytest.fixture(scope="module")
def random_weights_dir(tmp_path_factory):
    """A weights directory with random tensors of the right layouts (no real weights needed)."""
    d = tmp_path_factory.mktemp("random_weights")
    torch.save(alex_state(), d / "alexnet_features.pth")
    torch.save(vgg_state(), d / "vgg16_features.pth")
    g = torch.Generator().manual_seed(3)
    chans = (64, 192, 384, 256, 256)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(chans)}, d / "lpips_v0.1_alex.pth")
    torch.save({"alpha": torch.rand(1, 1475, 1, 1, generator=g), "beta": torch.rand(1, 1475, 1, 1, generator=g)}, d / "dists_alpha_beta.pt")
    return d


@pytest.fixture(scope="module")
def real(weights_dir):
    return {"alex": LPIPS("alex", weights_dir), "vgg": LPIPS("vgg", weights_dir), "dists": DISTS(weights_dir)}


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def test_plumbing_with_random_weights(random_weights_dir):
    ref, dist = synthetic_pair(t=3, h=64, w=48)
    for metric in (LPIPS("alex", random_weights_dir), DISTS(random_weights_dir)):
        same = metric.score(ref, ref).per_frame
        np.testing.assert_allclose(same, 0.0, atol=1e-6)
        scores = metric.score(ref, dist, batch_size=2)
        assert scores.per_frame.shape == (3,) and (scores.per_frame > 1e-4).all()
        # chunking, layout and argument order do not matter
        np.testing.assert_allclose(metric.score(ref, dist, batch_size=1).per_frame, scores.per_frame, rtol=1e-5)
        direct = metric(_tensor(ref), _tensor(dist)).detach().numpy()
        np.testing.assert_allclose(direct, scores.per_frame, rtol=1e-5)
        swapped = metric(_tensor(dist), _tensor(ref)).detach().numpy()
        np.testing.assert_allclose(swapped, scores.per_frame, rtol=1e-5)


def test_weights_dir_from_environment(random_weights_dir, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(random_weights_dir))
    ref, dist = synthetic_pair(t=1, h=40, w=40)
    a = LPIPS("alex").score(ref, dist).per_frame
    b = LPIPS("alex", random_weights_dir).score(ref, dist).per_frame
    np.testing.assert_array_equal(a, b)


def test_gradient_flows_to_input(random_weights_dir):
    metric = LPIPS("alex", random_weights_dir)
    ref, dist = synthetic_pair(t=1, h=48, w=48)
    x = _tensor(dist).requires_grad_(True)
    metric(x, _tensor(ref)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in metric.parameters())


def test_config_and_input_errors(random_weights_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'alex' or 'vgg'"):
        LPIPS("squeeze", random_weights_dir)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError, match=WEIGHTS_ENV):
        DISTS()
    torch.save(alex_state(), tmp_path / "alexnet_features.pth")
    torch.save({"lin0.model.1.weight": torch.rand(1, 64, 1, 1)}, tmp_path / "lpips_v0.1_alex.pth")
    with pytest.raises(ConfigError, match="lin1"):
        LPIPS("alex", tmp_path)
    metric = LPIPS("alex", random_weights_dir)
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(MediaError, match="differ in shape"):
        metric(x, x[:1])
    with pytest.raises(MediaError, match="at least 32x32"):
        metric(x[..., :16, :16], x[..., :16, :16])
    with pytest.raises(MediaError, match=r"\(B, 3, H, W\)"):
        metric(x[:, :1], x[:, :1])
    with pytest.raises(MediaError, match="float tensor"):
        metric((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))
    with pytest.raises(MediaError, match=r"\[0, 1\]"):
        metric.score(x * 2, x)


def test_matches_reference_implementations(real):
    ref, dist = synthetic_pair(t=2, h=96, w=80)
    np.testing.assert_allclose(real["alex"].score(ref, dist).per_frame, REF_LPIPS_ALEX, rtol=1e-4)
    np.testing.assert_allclose(real["vgg"].score(ref, dist).per_frame, REF_LPIPS_VGG, rtol=1e-4)
    np.testing.assert_allclose(real["dists"].score(ref, dist).per_frame, REF_DISTS, rtol=1e-4)


def test_identical_is_zero_and_noise_is_monotone(real):
    ref, _ = synthetic_pair(t=1, h=64, w=64)
    x = _tensor(ref)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    for name, metric in real.items():
        with torch.no_grad():
            assert abs(float(metric(x, x))) < 1e-6, name
            values = [float(metric(x, (x + s * noise).clamp(0, 1))) for s in (0.01, 0.03, 0.1, 0.3)]
        assert all(a < b for a, b in zip(values, values[1:])), (name, values)


def test_known_relationships(real):
    """At equal MSE a 2-pixel shift is far less visible than white noise to every deep
    metric, and a 5x5 box blur (smaller MSE still) scores worse than that noise."""
    ref, _ = synthetic_pair(t=1, h=128, w=128)
    x = _tensor(ref)
    shifted = torch.roll(x, shifts=2, dims=3)
    mse = float(((shifted - x) ** 2).mean())
    g = torch.Generator().manual_seed(0)
    n = torch.randn(x.shape, generator=g)
    noisy = (x + n * (mse**0.5) / n.std()).clamp(0, 1)
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), torch.ones(3, 1, 5, 5) / 25, groups=3)
    assert float(((blurred - x) ** 2).mean()) < mse
    for name, metric in real.items():
        with torch.no_grad():
            d_shift, d_noise, d_blur = (float(metric(x, y)) for y in (shifted, noisy, blurred))
        assert d_shift < 0.7 * d_noise, (name, d_shift, d_noise)
        assert d_blur > d_noise, (name, d_blur, d_noise)
