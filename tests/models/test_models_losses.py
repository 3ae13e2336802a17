"""Training losses: perceptual (stand-in and real VGG16), TPS equivariance, contrastive, noise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avfc.errors import ConfigError
from avfc.models.keypoints import coordinate_grid
from avfc.train.losses import (
    PerceptualLoss,
    RandomTPS,
    contrastive_loss,
    equivariance_loss,
    l1_loss,
    quantization_noise,
    separation_loss,
)


def _mini_vgg() -> nn.Sequential:
    """A randomly initialised network with VGG16's module layout up to relu2_2 (index 8)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
    )


def test_perceptual_loss_is_zero_on_equal_pictures_and_grows_with_distortion() -> None:
    loss = PerceptualLoss(_mini_vgg(), scales=(1.0, 0.5), layers=("relu1_2", "relu2_2"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert float(loss(x, x)) == 0.0
    small = loss((x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1), x)
    large = loss((x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1), x)
    assert 0 < float(small) < float(large)


def test_perceptual_loss_trains_the_prediction_not_the_backbone() -> None:
    loss = PerceptualLoss(_mini_vgg(), layers=("relu2_2",))
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss(pred, torch.rand(1, 3, 32, 32)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.vgg.parameters())
    loss.train()
    assert not loss.vgg.training


def test_perceptual_loss_checks_its_settings() -> None:
    with pytest.raises(ConfigError):
        PerceptualLoss(_mini_vgg(), layers=("relu9_9",))
    with pytest.raises(ConfigError):
        PerceptualLoss(_mini_vgg(), layers=("relu3_3",))  # deeper than the network
    with pytest.raises(ConfigError):
        PerceptualLoss(_mini_vgg(), layers=("relu1_2",), scales=(0.0,))


def test_perceptual_loss_with_the_real_vgg16(shared_dir) -> None:
    weights = shared_dir / "weights" / "vgg16_features.pth"
    if not weights.is_file():
        pytest.skip("VGG16 weights not available")
    from avfc.eval.backbones import vgg16_features

    loss = PerceptualLoss(vgg16_features(weights), scales=(1.0,), layers=("relu1_2", "relu2_2"))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(loss(x, x)) == 0.0
    assert float(loss(x.flip(-1), x)) > 0.0


def _blob(centres: torch.Tensor, size: int = 64) -> torch.Tensor:
    """One sharp gaussian blob per row at ``centres (B, 2)`` in [-1, 1] coordinates."""
    grid = coordinate_grid(size, size)
    d2 = ((grid[None] - centres[:, None, None, :]) ** 2).sum(-1)
    return torch.exp(-d2 / 0.002).unsqueeze(1).expand(-1, 3, -1, -1)


def _soft_argmax(img: torch.Tensor) -> torch.Tensor:
    prob = img[:, 0].flatten(1) ** 4
    prob = prob / prob.sum(1, keepdim=True)
    return prob @ coordinate_grid(img.shape[-2], img.shape[-1]).view(-1, 2)


def test_tps_warp_of_points_matches_the_warp_of_pictures() -> None:
    g = torch.Generator().manual_seed(3)
    tps = RandomTPS(4, sigma_affine=0.08, sigma_tps=0.01, generator=g)
    centres = torch.tensor([[0.1, -0.2], [-0.3, 0.25], [0.2, 0.3], [0.0, 0.0]])
    moved = _soft_argmax(tps.transform_frames(_blob(centres)))  # where each blob lands
    # a picture point q shows the original at T(q): T(moved) is where the blob was
    back = tps.warp_coordinates(moved.unsqueeze(1)).squeeze(1)
    assert torch.allclose(back, centres, atol=0.03)
    assert not torch.allclose(moved, centres, atol=0.03)  # the warp did move them
    assert float(equivariance_loss(centres.unsqueeze(1), moved.unsqueeze(1), tps)) < 0.02


def test_zero_sigma_tps_is_the_identity() -> None:
    tps = RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0)
    pts = torch.rand(2, 5, 2) * 2 - 1
    assert torch.allclose(tps.warp_coordinates(pts), pts, atol=1e-6)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(tps.transform_frames(x), x, atol=1e-5)


def test_contrastive_loss_prefers_matching_features() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 16, 16, 16, generator=g)
    matched = contrastive_loss(a, a + 0.05 * torch.randn(a.shape, generator=g))
    shuffled = contrastive_loss(a, a[[1, 2, 0]])
    assert float(matched) < 0.5 and float(shuffled) > 5.0
    # a batch of one still has negatives (the other cells)
    single = contrastive_loss(a[:1], a[:1].flip(-1))
    assert float(single) > float(contrastive_loss(a[:1], a[:1]))


def test_contrastive_loss_has_gradients_for_both_sides() -> None:
    a = torch.randn(2, 8, 8, 8, requires_grad=True)
    b = torch.randn(2, 8, 8, 8, requires_grad=True)
    contrastive_loss(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_quantization_noise_stays_within_half_a_step() -> None:
    kp = torch.zeros(64, 10, 2)
    noisy = quantization_noise(kp, precision=7, generator=torch.Generator().manual_seed(0))
    step = 1.0 / 2 ** 7
    assert noisy.abs().max() <= 0.5 * step
    assert noisy.abs().max() > 0.4 * step  # it is spread over the whole half step
    assert torch.equal(torch.round(noisy / step), torch.zeros_like(noisy))


def test_l1_loss() -> None:
    assert float(l1_loss(torch.zeros(2, 3), torch.full((2, 3), 0.5))) == 0.5


def test_separation_loss_is_high_for_collapsed_keypoints_and_pushes_them_apart() -> None:
    collapsed = torch.zeros(2, 5, 2) + torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(0)) * 0.01
    spread = coordinate_grid(3, 3).view(1, 9, 2)[:, :5].expand(2, -1, -1) * 0.8
    assert separation_loss(collapsed, 0.15) > 0.95
    assert separation_loss(spread, 0.15) < 0.05
    assert float(separation_loss(torch.zeros(3, 1, 2))) == 0.0  # one keypoint: nothing to separate
    kp = collapsed.clone().requires_grad_(True)
    separation_loss(kp, 0.15).backward()
    moved = kp.detach() - 0.1 * kp.grad
    spread_before = torch.cdist(collapsed, collapsed).mean()
    assert torch.cdist(moved, moved).mean() > spread_before  # a descent step moves them apart
