"""A tiny, training-free animation model used to test the codec end to end.

``TinyWarp`` has a small convolutional keypoint detector (a few hundred weights,
seeded, shipped in the zoo as ``tiny-test``) and renders by sparse keypoint
warping: each target pixel is pulled from the reference at the position given by
a Gaussian-weighted mix of keypoint displacements (the "sparse motion" of FOMM,
without the learned dense-motion network). It is deterministic, fast, and not
meant to look good; it exists so that the codec, the bitstream and the tests do
not depend on a trained model.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avfc.models.base import AdaptTerm, AnimationModel, Reference, temporal_weights


def _identity_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    ys = torch.linspace(-1.0, 1.0, h, device=device)
    xs = torch.linspace(-1.0, 1.0, w, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)  # (h, w, 2), x first as grid_sample expects


class TinyWarp(AnimationModel):
    """Seeded keypoint detector + Gaussian sparse-motion warping (see module docstring)."""

    arch = "tiny-warp"
    out_gain: torch.Tensor  # buffers (register_buffer): typed here, as nn.Module's attribute lookup is not
    out_bias: torch.Tensor

    def __init__(self, num_kp: int = 10, kp_dim: int = 2, size: int = 256, det_size: int = 32,
                 sigma: float = 0.2, motion_size: int = 64) -> None:
        if kp_dim != 2:
            raise ValueError("TinyWarp transmits (x, y) per keypoint: kp_dim must be 2")
        super().__init__(num_kp=num_kp, kp_dim=kp_dim, size=size)
        self.det_size = int(det_size)
        self.sigma = float(sigma)
        self.motion_size = int(motion_size)
        self.det = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, num_kp, 3, padding=1),
        )
        # the adaptable set (DECODER_PARAMS): a gain and an offset per output colour, zero in the zoo's
        # model; not in the weights file (non-persistent)
        self.register_buffer("out_gain", torch.zeros(3), persistent=False)
        self.register_buffer("out_bias", torch.zeros(3), persistent=False)

    def adaptable(self) -> tuple[AdaptTerm, ...]:
        """Set 1 (docs/bitstream.md A.15.2): the output is ``clamp(warped * (1 + out_gain) + out_bias)``
        per colour channel; 6 values, both zero in the zoo's model."""
        return (AdaptTerm("out_gain", "add", 3), AdaptTerm("out_bias", "add", 3))

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), "det_size": self.det_size, "sigma": self.sigma,
                "motion_size": self.motion_size}

    def detect(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(frames, size=(self.det_size, self.det_size), mode="bilinear",
                          align_corners=False, antialias=True)
        heat = self.det(x * 2.0 - 1.0)  # (B, K, s, s)
        b, k, h, w = heat.shape
        prob = torch.softmax(heat.reshape(b, k, -1) / 0.1, dim=-1).reshape(b, k, h, w)
        grid = _identity_grid(h, w, frames.device)  # (h, w, 2)
        kp = (prob.unsqueeze(-1) * grid).sum(dim=(2, 3))  # (B, K, 2)
        return kp.reshape(b, k * 2)

    def _flow(self, kp_ref: torch.Tensor, kp_tgt: torch.Tensor) -> torch.Tensor:
        """Sampling grid (B, H, W, 2) into the reference for every target pixel."""
        b = kp_tgt.shape[0]
        s = self.motion_size
        grid = _identity_grid(s, s, kp_tgt.device)  # (s, s, 2)
        kt = kp_tgt.reshape(b, self.num_kp, 1, 1, 2)
        kr = kp_ref.reshape(-1, self.num_kp, 1, 1, 2).expand(b, -1, -1, -1, -1)
        d2 = ((grid.unsqueeze(0).unsqueeze(0) - kt) ** 2).sum(-1)  # (B, K, s, s)
        w = torch.exp(-d2 / (2 * self.sigma ** 2))
        w_bg = torch.full_like(w[:, :1], 0.05)  # background keeps still
        w_all = torch.cat([w_bg, w], dim=1)
        w_all = w_all / w_all.sum(dim=1, keepdim=True)
        disp = torch.cat([torch.zeros_like(kr[:, :1]).expand(-1, -1, s, s, -1),
                          (kr - kt).expand(-1, -1, s, s, -1)], dim=1)  # (B, K+1, s, s, 2)
        flow = grid.unsqueeze(0) + (w_all.unsqueeze(-1) * disp).sum(dim=1)  # (B, s, s, 2)
        return flow

    def render(self, refs: Sequence[Reference], kp_target: torch.Tensor, target_index: int) -> torch.Tensor:
        weights = temporal_weights([r.frame_index for r in refs], target_index)
        out = None
        for wgt, ref in zip(weights.tolist(), refs):
            flow = self._flow(ref.keypoints, kp_target)
            h, w = ref.frame.shape[-2:]
            if flow.shape[1] != h or flow.shape[2] != w:
                flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                     align_corners=True).permute(0, 2, 3, 1)
            src = ref.frame.expand(kp_target.shape[0], -1, -1, -1)
            warped = F.grid_sample(src, flow, mode="bilinear", padding_mode="border", align_corners=True)
            out = warped * wgt if out is None else out + warped * wgt
        assert out is not None
        out = out * (1.0 + self.out_gain.view(1, 3, 1, 1)) + self.out_bias.view(1, 3, 1, 1)
        return out.clamp(0.0, 1.0)
