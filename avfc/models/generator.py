"""Reference encoder, feature warping and fusion, and the frame decoder.

The reference picture is encoded once into a three-level pyramid: the picture itself at full
size ``S``, ``c1`` channels at ``S/2`` and ``c2`` channels at ``S/4``. For every output frame
each level of each reference is warped by that reference's dense flow, the references are
fused with per-pixel weights ``w_r * occlusion_r`` (``w_r`` the temporal weights), and a
narrow decoder (inverted residual blocks at ``S/4``, PixelShuffle upsampling, the fused
finer levels as skips) draws the RGB frame, blended per pixel with the warped pictures.
Nothing runs at full size but two cheap layers.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfc.models.keypoints import ConvBNReLU

#: fusion denominator floor: where no reference is visible the fused features go to zero
FUSION_EPS = 1e-3
#: initial blend logit: an untrained decoder shows mostly the warped references (sigmoid(3) = 0.95)
BLEND_INIT = 3.0


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, identity skip."""

    def __init__(self, channels: int, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            ConvBNReLU(channels, hidden, kernel=1),
            ConvBNReLU(hidden, hidden, kernel=3, groups=hidden),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FeatureEncoder(nn.Module):
    """Picture ``(B, 3, S, S)`` -> pyramid ``[picture, (B, c1, S/2, S/2), (B, c2, S/4, S/4)]``."""

    def __init__(self, channels: Sequence[int] = (32, 64)) -> None:
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.level1 = nn.Sequential(ConvBNReLU(3, c1, stride=2), InvertedResidual(c1))
        self.level2 = nn.Sequential(ConvBNReLU(c1, c2, stride=2), InvertedResidual(c2), InvertedResidual(c2))

    def forward(self, frame: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.level1(frame)
        return [frame, f1, self.level2(f1)]


def resize_flow(flow: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly resample a sampling grid ``(B, m, m, 2)`` to ``(B, size, size, 2)``."""
    if flow.shape[1] == size:
        return flow
    grid = F.interpolate(flow.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=True)
    return grid.permute(0, 2, 3, 1)


def resize_map(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly resample a map ``(B, C, m, m)`` to ``(B, C, size, size)``."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


#: interpolation kernels :func:`warp` takes
WARP_MODES = ("bilinear", "bicubic")


def warp(features: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward-warp ``features (B, C, s, s)`` with a sampling grid (resized to ``s`` if needed).

    ``mode``: one of :data:`WARP_MODES`. Bicubic keeps more of a picture's fine texture than
    bilinear (which low-passes at every sub-pixel position) but can overshoot its range.
    """
    grid = resize_flow(flow, features.shape[-1])
    return F.grid_sample(features, grid, mode=mode, padding_mode="border", align_corners=True)


def fuse(warped: Sequence[torch.Tensor], occlusions: Sequence[torch.Tensor],
         weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse one pyramid level of several warped references.

    ``warped[r]``: ``(B, C, s, s)``; ``occlusions[r]``: ``(B, 1, m, m)`` (resized to ``s``);
    ``weights``: ``(B, R)`` temporal weights summing to 1 per row. Each reference is
    multiplied by its occlusion map and its weight, summed, and normalised by the summed
    visibility ``v = sum_r w_r * occ_r``, so a region seen by only one reference keeps its
    full strength. Returns ``(fused, v)``; with one reference ``fused * v`` is (up to the
    floor ``FUSION_EPS``) FOMM's occlusion-masked feature map.
    """
    size = warped[0].shape[-1]
    wos = [weights[:, r].view(-1, 1, 1, 1) * resize_map(occ, size) for r, occ in enumerate(occlusions)]
    num, vis = wos[0] * warped[0], wos[0]
    for wo, feat in zip(wos[1:], warped[1:]):
        num, vis = num + wo * feat, vis + wo
    return num / (vis + FUSION_EPS), vis


class FrameDecoder(nn.Module):
    """Fused pyramid (each level with its visibility map) -> RGB frame ``(B, 3, S, S)`` in [0, 1].

    The last layer predicts a generated picture and a per-pixel blend ``m``; the output is
    ``m * warped references + (1 - m) * generated``. Pixels the references show are copied
    sharp, the rest (occlusions, the inside of the mouth) is drawn; and training starts from
    a model that already warps (``m`` starts near 1), which matters on a CPU budget.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64), num_blocks: int = 4) -> None:
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.inp = ConvBNReLU(c2 + 1, c2, kernel=1)
        self.blocks = nn.Sequential(*[InvertedResidual(c2) for _ in range(num_blocks)])
        self.up1 = nn.Sequential(nn.Conv2d(c2, 4 * c1, 1), nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.mix1 = nn.Sequential(
            ConvBNReLU(2 * c1 + 1, 2 * c1 + 1, kernel=3, groups=2 * c1 + 1),
            ConvBNReLU(2 * c1 + 1, c1, kernel=1),
            InvertedResidual(c1),
        )
        self.up0 = nn.Sequential(nn.Conv2d(c1, 4 * c0, 1), nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.mix0 = nn.Sequential(nn.Conv2d(c0 + 4, c0, 1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(c0, 4, 3, padding=1)  # RGB logits and a blend logit
        with torch.no_grad():
            bias = self.out.bias
            assert bias is not None  # (nn.Conv2d's default bias=True)
            bias[3].fill_(BLEND_INIT)

    def forward(self, fused: Sequence[torch.Tensor], vis: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.blocks(self.inp(torch.cat((fused[2], vis[2]), dim=1)))
        x = self.mix1(torch.cat((self.up1(x), fused[1], vis[1]), dim=1))
        x = self.mix0(torch.cat((self.up0(x), fused[0], vis[0]), dim=1))
        y = self.out(x)
        blend = torch.sigmoid(y[:, 3:])
        return blend * fused[0] + (1.0 - blend) * torch.sigmoid(y[:, :3])
