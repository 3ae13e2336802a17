"""Dense motion from keypoints: sparse motions, a small hourglass, softmax masks, occlusion.

For one reference and one target, every keypoint ``k`` proposes a translation that moves
the target's keypoint onto the reference's (zero-order motion, no Jacobians); a background
proposal is the identity. A small hourglass sees the heatmap differences and the reference
warped by each proposal, and predicts a softmax mask over the ``K + 1`` proposals; their
mask-weighted sum is the dense backward flow (for every target pixel, where to sample the
reference). A second head predicts an occlusion map in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfc.models.keypoints import Hourglass, coordinate_grid, keypoint_gaussians


class DenseMotion(nn.Module):
    """Dense flow ``(B, m, m, 2)`` and occlusion ``(B, 1, m, m)`` at motion resolution ``m``.

    ``size`` is ``m``; it must be divisible by ``2**len(channels)``. The reference picture is
    passed already downscaled to ``m`` (the generator caches it per reference).
    """

    grid: torch.Tensor  # a buffer (register_buffer): typed here, as nn.Module's attribute lookup is not

    def __init__(self, num_kp: int, size: int, channels: Sequence[int] = (16, 32, 64, 128),
                 out_channels: int = 16, kp_variance: float = 0.01) -> None:
        super().__init__()
        self.num_kp = int(num_kp)
        self.size = int(size)
        self.kp_variance = float(kp_variance)
        n = self.num_kp + 1
        self.hourglass = Hourglass(4 * n, channels, out_channels)
        self.mask = nn.Conv2d(self.hourglass.out_channels, n, 3, padding=1)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels, 1, 3, padding=1)
        self.register_buffer("grid", coordinate_grid(self.size, self.size), persistent=False)

    def gaussians(self, kp: torch.Tensor) -> torch.Tensor:
        """Heatmaps ``(B, K, m, m)`` of keypoints ``(B, K, 2)`` (cacheable for a reference)."""
        return keypoint_gaussians(kp, self.size, self.kp_variance)

    def forward(self, ref_small: torch.Tensor, kp_ref: torch.Tensor, kp_target: torch.Tensor,
                ref_gaussians: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow and occlusion for drawing the target from the reference.

        ``ref_small``: reference ``(B, 3, m, m)``; ``kp_ref``, ``kp_target``: ``(B, K, 2)``;
        ``ref_gaussians``: ``self.gaussians(kp_ref)`` if already computed.
        """
        b, k, m = kp_target.shape[0], self.num_kp, self.size
        if ref_gaussians is None:
            ref_gaussians = self.gaussians(kp_ref)
        heat = self.gaussians(kp_target) - ref_gaussians
        heat = torch.cat((heat.new_zeros(b, 1, m, m), heat), dim=1)  # background first
        # sparse motions: target coordinate -> reference coordinate, per keypoint
        shift = (kp_ref - kp_target)[:, :, None, None, :]  # (B, K, 1, 1, 2)
        grid = self.grid.expand(b, 1, m, m, 2)
        sparse = torch.cat((grid, grid + shift), dim=1)  # (B, K+1, m, m, 2)
        ref_rep = ref_small.unsqueeze(1).expand(b, k + 1, 3, m, m).reshape(b * (k + 1), 3, m, m)
        deformed = F.grid_sample(ref_rep, sparse.reshape(b * (k + 1), m, m, 2), mode="bilinear",
                                 padding_mode="zeros", align_corners=True).view(b, (k + 1) * 3, m, m)
        feats = self.hourglass(torch.cat((heat, deformed), dim=1).contiguous(memory_format=torch.channels_last))
        mask = torch.softmax(self.mask(feats), dim=1)  # (B, K+1, m, m)
        flow = (mask.unsqueeze(-1) * sparse).sum(1)  # (B, m, m, 2)
        occlusion = torch.sigmoid(self.occlusion(feats))
        return flow, occlusion
