"""Training losses: reconstruction, multi-scale VGG16 perceptual, keypoint equivariance,
keypoint separation, the MRDAC contrastive term, and the keypoint quantization noise of the
bitstream's grid."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfc.errors import ConfigError
from avfc.models.keypoints import coordinate_grid

#: ImageNet statistics that torchvision's VGG16 expects
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
#: indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's ``vgg16().features``
VGG16_RELU = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


class PerceptualLoss(nn.Module):
    """Multi-scale VGG16 perceptual loss (FOMM): mean ``|vgg(pred) - vgg(target)|`` summed over
    image-pyramid scales and ReLU layers.

    ``vgg`` is a ``nn.Sequential`` with torchvision's ``vgg16().features`` layout (for
    instance :func:`avfc.eval.backbones.vgg16_features`); it is truncated after the deepest
    layer used and frozen. ``layers`` are names of :data:`VGG16_RELU`.
    """

    mean: torch.Tensor  # buffers (register_buffer): typed here, as nn.Module's attribute lookup is not
    std: torch.Tensor

    def __init__(self, vgg: nn.Sequential, scales: Sequence[float] = (1.0, 0.5, 0.25),
                 layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 weights: Sequence[float] | None = None) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG16_RELU]
        if unknown or not layers:
            raise ConfigError(f"perceptual layers must be among {sorted(VGG16_RELU)}, got {list(layers)}")
        if not scales or any(not 0.0 < s <= 1.0 for s in scales):
            raise ConfigError(f"perceptual scales must be in (0, 1], got {list(scales)}")
        self.taps = sorted(VGG16_RELU[name] for name in layers)
        self.weights = [1.0] * len(self.taps) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.taps):
            raise ConfigError("one perceptual weight per layer is needed")
        if len(vgg) <= self.taps[-1]:
            raise ConfigError(f"the VGG network has {len(vgg)} modules, layer {self.taps[-1]} is needed")
        self.vgg = nn.Sequential(*list(vgg)[: self.taps[-1] + 1]).eval()
        for p in self.vgg.parameters():
            p.requires_grad_(False)
        self.scales = [float(s) for s in scales]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        """The backbone always stays in eval mode."""
        super().train(mode)
        self.vgg.eval()
        return self

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x - self.mean) / self.std
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss (a scalar); gradients flow to ``pred`` only."""
        total = pred.new_zeros(())
        for s in self.scales:
            p, t = pred, target
            if s != 1.0:
                size = (max(1, round(pred.shape[-2] * s)), max(1, round(pred.shape[-1] * s)))
                p = F.interpolate(pred, size=size, mode="bilinear", align_corners=False, antialias=True)
                t = F.interpolate(target, size=size, mode="bilinear", align_corners=False, antialias=True)
            with torch.no_grad():
                ft = self._features(t)
            for w, a, b in zip(self.weights, self._features(p), ft):
                total = total + w * (a - b).abs().mean()
        return total


class RandomTPS:
    """A random smooth warp ``T`` (affine plus thin-plate spline), one per batch row (FOMM).

    ``warp_coordinates`` maps points of the transformed picture to the original picture;
    ``transform_frames`` draws the transformed picture, ``out(p) = frame(T(p))``.
    """

    def __init__(self, batch: int, *, sigma_affine: float = 0.05, sigma_tps: float = 0.005,
                 points: int = 5, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> None:
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (torch.eye(2, 3).unsqueeze(0) + noise).to(device)  # (B, 2, 3)
        self.control = coordinate_grid(points, points).view(1, -1, 2).to(device)  # (1, P, 2)
        self.params = (torch.randn(batch, points * points, generator=generator) * sigma_tps).to(device)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """Map points ``(B, N, 2)`` of the transformed picture to the original picture."""
        theta = self.theta.to(coords.dtype)
        out = coords @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        dist = torch.cdist(coords, self.control.to(coords.dtype).expand(coords.shape[0], -1, -1))  # (B, N, P)
        radial = dist.pow(2) * torch.log(dist + 1e-6)
        return out + (radial * self.params.to(coords.dtype).unsqueeze(1)).sum(-1, keepdim=True)

    def transform_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The transformed pictures of ``frames (B, 3, H, W)``."""
        b, _, h, w = frames.shape
        grid = coordinate_grid(h, w, device=frames.device, dtype=frames.dtype).view(1, -1, 2).expand(b, -1, -1)
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(frames, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def equivariance_loss(kp: torch.Tensor, kp_transformed: torch.Tensor, tps: RandomTPS) -> torch.Tensor:
    """``mean |kp - T(kp_transformed)|``: keypoints must move with the picture (FOMM)."""
    return (kp - tps.warp_coordinates(kp_transformed)).abs().mean()


def separation_loss(kp: torch.Tensor, sigma: float = 0.15) -> torch.Tensor:
    """Mean over keypoint pairs of ``exp(-|k_i - k_j|^2 / (2 sigma^2))`` (``kp``: ``(B, K, 2)``).

    Without it a short training lets all keypoints collapse onto one spot (they then carry only
    the head's translation: measured on ``mrdac-cpu-v1``, whose 10 keypoints sit within 0.1 of
    each other). The term pushes them apart to about ``sigma`` so that they can describe the
    eyes, the jaw and the mouth separately. Zero for a single keypoint.
    """
    k = kp.shape[1]
    if k < 2:
        return kp.new_zeros(())
    d2 = (kp.unsqueeze(2) - kp.unsqueeze(1)).pow(2).sum(-1)  # (B, K, K)
    off = ~torch.eye(k, dtype=torch.bool, device=kp.device)
    return torch.exp(-d2[:, off] / (2.0 * sigma * sigma)).mean()


def contrastive_loss(feats_a: torch.Tensor, feats_b: torch.Tensor, temperature: float = 0.1,
                     grid: int = 8) -> torch.Tensor:
    """InfoNCE between two references' features warped to the same targets (MRDAC).

    ``feats_a``, ``feats_b``: ``(B, C, h, w)``; row ``i`` of both shows target ``i``. Each
    map is pooled to ``grid x grid`` cells and every cell's feature vector L2-normalised.
    Cell ``(i, y, x)`` of ``a`` and the same cell of ``b`` are a positive pair; every other
    cell of ``b`` (other places of the same target and all cells of the other batch items)
    is a negative. The loss is the symmetric cross-entropy of the cosine-similarity matrix
    over ``temperature``. Cells rather than whole pictures: with whole pictures the batch
    items (different faces) are told apart at once and the term stops teaching anything.
    """
    c = feats_a.shape[1]
    za = F.normalize(F.adaptive_avg_pool2d(feats_a, grid).permute(0, 2, 3, 1).reshape(-1, c), dim=1)
    zb = F.normalize(F.adaptive_avg_pool2d(feats_b, grid).permute(0, 2, 3, 1).reshape(-1, c), dim=1)
    logits = za @ zb.t() / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def quantization_noise(kp: torch.Tensor, precision: int = 7, generator: torch.Generator | None = None) -> torch.Tensor:
    """``kp`` plus uniform noise in ``+-0.5 / 2**precision``: the bitstream's rounding error."""
    noise = torch.rand(kp.shape, generator=generator, dtype=kp.dtype).to(kp.device) - 0.5
    return kp + noise / float(2 ** precision)
