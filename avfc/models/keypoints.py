"""Learned keypoints: coordinate helpers, a narrow hourglass, and the keypoint detector.

Coordinates follow ``grid_sample`` with ``align_corners=True``: ``x`` and ``y`` lie in
``[-1, 1]``, ``(-1, -1)`` is the centre of the top-left pixel and ``(1, 1)`` the centre of the
bottom-right one. A keypoint tensor is ``(B, K, 2)`` with ``[..., 0] = x`` and ``[..., 1] = y``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def coordinate_grid(height: int, width: int, *, device: torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``(height, width, 2)`` grid of pixel-centre coordinates, ``x`` first, in ``[-1, 1]``."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)


def keypoint_gaussians(kp: torch.Tensor, size: int, variance: float) -> torch.Tensor:
    """Isotropic gaussian bumps ``exp(-|p - kp|^2 / (2 variance))`` of keypoints ``(B, K, 2)``.

    Returns ``(B, K, size, size)``.
    """
    grid = coordinate_grid(size, size, device=kp.device, dtype=kp.dtype)
    diff = grid[None, None] - kp[:, :, None, None, :]
    return torch.exp(-0.5 * (diff * diff).sum(-1) / variance)


class ConvBNReLU(nn.Sequential):
    """``k x k`` convolution (optionally strided or depthwise), batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Hourglass(nn.Module):
    """A narrow U-Net in the FOMM style: conv + pool down, nearest upsample + conv up, skips.

    ``channels[i]`` is the width after the ``i``-th down block (resolution ``/2**(i+1)``).
    The output has ``out_channels + in_channels`` channels at the input resolution (the
    input is concatenated, as in FOMM). The input side must be divisible by ``2**len(channels)``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans:
            self.down.append(ConvBNReLU(cin, c))
            cin = c
        self.up = nn.ModuleList()
        widths = chans[::-1][1:] + [out_channels]  # output width of each up block
        cin = chans[-1]
        for i, c in enumerate(widths):
            self.up.append(ConvBNReLU(cin, c))
            skip = chans[::-1][i + 1] if i + 1 < len(chans) else in_channels
            cin = c + skip
        self.out_channels = out_channels + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            x = F.avg_pool2d(block(x), 2)
            skips.append(x)
        skips.pop()  # the deepest map is x itself
        for block in self.up:
            x = block(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = torch.cat((x, skips.pop()), dim=1)
        return x


class KeypointDetector(nn.Module):
    """Learned keypoints ``(B, K, 2)`` in ``[-1, 1]`` of frames ``(B, 3, H, W)`` in ``[0, 1]``.

    FOMM-style: the frame is downscaled (antialiased) to ``in_size``, a narrow hourglass
    predicts one heatmap per keypoint, a spatial softmax with ``temperature`` turns each into
    a distribution, and the keypoint is its mean position (soft-argmax), so it always lies
    inside ``[-1, 1]``.

    There are no Jacobians (``kp_dim = 2``): FOMM sends a 2x2 Jacobian with every keypoint,
    4 more numbers per keypoint (60 instead of 20 values per frame for 10 keypoints), tripling
    the motion rate for a modest gain that the dense-motion network largely recovers from
    the keypoints' relative positions (DAC shows zero-order motion is enough at these rates).
    """

    grid: torch.Tensor  # a buffer (register_buffer): typed here, as nn.Module's attribute lookup is not

    def __init__(self, num_kp: int = 10, in_size: int = 64, channels: Sequence[int] = (16, 32, 64, 128),
                 out_channels: int = 16, temperature: float = 0.1) -> None:
        super().__init__()
        self.num_kp = int(num_kp)
        self.in_size = int(in_size)
        self.temperature = float(temperature)
        self.hourglass = Hourglass(3, channels, out_channels)
        self.head = nn.Conv2d(self.hourglass.out_channels, self.num_kp, 5, padding=2)
        self.register_buffer("grid", coordinate_grid(self.in_size, self.in_size).view(1, 1, -1, 2), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(B, K, 2)`` of ``frames``; differentiable."""
        x = frames
        if x.shape[-1] != self.in_size or x.shape[-2] != self.in_size:
            x = F.interpolate(x, size=(self.in_size, self.in_size), mode="bilinear",
                              align_corners=False, antialias=True)
        logits = self.head(self.hourglass(x))  # (B, K, s, s)
        prob = torch.softmax(logits.flatten(2) / self.temperature, dim=-1)  # (B, K, s*s)
        return (prob.unsqueeze(-1) * self.grid).sum(2)
