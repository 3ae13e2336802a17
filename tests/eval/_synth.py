"""Synthetic inputs for the eval tests: media from integer formulas (no RNG, no files) and
random backbone weights in torchvision's layout (so the pipelines run without real weights)."""

from __future__ import annotations

import numpy as np
import torch


def synthetic_pair(t: int = 2, h: int = 177, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A textured uint8 reference video ``(t, h, w, 3)`` and a distorted copy of it.

    The distortion is a fixed pseudo-noise pattern plus a horizontal banding, so that
    PSNR, SSIM and MS-SSIM all land in an informative range.
    """
    tt, yy, xx, cc = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    ref = 128 + 70 * np.sin(xx / 9.0 + cc + tt) * np.cos(yy / 13.0) + 3 * ((xx * 7 + yy * 5 * (cc + 1) + tt * 11) % 13 - 6)
    noise = ((xx * 31 + yy * 17 + cc * 7 + tt * 3) % 23 - 11) * 2
    dist = ref + noise + 10 * np.sin(yy / 5.0)
    return np.clip(np.round(ref), 0, 255).astype(np.uint8), np.clip(np.round(dist), 0, 255).astype(np.uint8)


def speech_like(sr: int = 16000, seconds: float = 3.0) -> np.ndarray:
    """A voiced, syllable-paced harmonic signal (float64, peak 0.3) standing in for speech."""
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum((1.0 / k) * np.sin(k * phase) * (1 + 0.5 * np.sin(2 * np.pi * (6.0 * k / (k + 1)) * t)) for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
    x = x * envelope
    return 0.3 * x / np.max(np.abs(x))


VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG_POOLS = (4, 9, 16, 23, 30)
ALEX_CONVS = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
ALEX_POOLS = (2, 5, 12)


def alex_state(prefix: str = "features.", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random AlexNet ``features`` weights in torchvision's key layout."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, shape in ALEX_CONVS.items():
        sd[f"{prefix}{i}.weight"] = torch.randn(shape, generator=g) * 0.05
        sd[f"{prefix}{i}.bias"] = torch.randn(shape[0], generator=g) * 0.01
    return sd


def vgg_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random VGG16 ``features`` weights in torchvision's key layout."""
    g = torch.Generator().manual_seed(seed)
    widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    sd, cin = {}, 3
    for i, cout in zip(VGG_CONVS, widths):
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"features.{i}.bias"] = torch.zeros(cout)
        cin = cout
    return sd
