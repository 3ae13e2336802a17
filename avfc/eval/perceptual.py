"""LPIPS and DISTS, the perceptual metrics of the GFVC literature, without torchvision.

Both are ``nn.Module``s: ``metric(x, y)`` takes float tensors ``(B, 3, H, W)`` in
``[0, 1]`` on the module's device and returns a ``(B,)`` tensor (differentiable with
respect to the inputs, so either can serve as a loss). For evaluation use
``metric.score(ref, dist)``: it accepts every frame layout of :mod:`avfc.eval.metrics`
(uint8 numpy video, tensors), checks the value range, runs in chunks of ``batch_size``
frames without gradients, and returns :class:`~avfc.eval.metrics.FrameScores`.
Lower is better for both; identical images give 0.

LPIPS v0.1 (Zhang et al. 2018, the ``lpips`` package):
inputs mapped to ``[-1, 1]``, then the package's scaling layer
(shift ``(-.030, -.088, -.188)``, scale ``(.458, .448, .450)``); features after the ReLUs
that end the backbone slices (AlexNet ``features[0:2], [2:5], [5:8], [8:10], [10:12]``;
VGG16 ``[0:4], [4:9], [9:16], [16:23], [23:30]``); each unit-normalised over channels
(``x / (||x|| + 1e-10)``); squared difference; the learned 1x1 linear head (no bias);
spatial mean; sum over the five layers.

DISTS (Ding et al. 2020, the ``DISTS_pytorch`` package): VGG16 with its max-pools
(``features.4, 9, 16, 23``) replaced by L2 pooling (squared input, 3x3 Hann window
``[.5, 1, .5]^T [.5, 1, .5] / 4``, stride 2, padding 1, ``sqrt(. + 1e-12)``), ImageNet
normalisation, six feature sets (the *unnormalised* input and the outputs of stages
1-5, 1475 channels in all); per channel a texture term
``(2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c)`` and a structure term
``(2 cov_xy + c) / (var_x + var_y + c)`` with ``c = 1e-6``, weighted by alpha and beta
normalised by their joint sum; ``DISTS = 1 - sum``. Unlike the package's demo, images
are not resized (GFVC frames are 256x256 already).

Weights: see :mod:`avfc.eval.backbones` (argument ``weights_dir``, else
``$AVFC_WEIGHTS_DIR``; never downloaded). Frames must be at least 32x32 pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avfc.errors import ConfigError, MediaError
from avfc.eval.backbones import alexnet_features, find_weights, load_state_dict_file, vgg16_features
from avfc.eval.metrics import FrameScores, Frames, frame_batches

__all__ = ["LPIPS", "DISTS", "MIN_SIDE", "SEARCH_METRICS", "search_term"]

#: smallest frame side the backbones accept (AlexNet's fifth layer needs 31 px)
MIN_SIDE = 32

_LPIPS_SLICES = {
    "alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
    "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)),
}
_LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)

_DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point:
            raise MediaError(f"{name} must be a float tensor, got {getattr(t, 'dtype', type(t).__name__)}")
        if t.ndim != 4 or t.shape[1] != 3:
            raise MediaError(f"{name} must be (B, 3, H, W), got shape {tuple(t.shape)}")
    if x.shape != y.shape:
        raise MediaError(f"x and y differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[2], x.shape[3]) < MIN_SIDE:
        raise MediaError(f"frames must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {x.shape[2]}x{x.shape[3]}")


class _FrameMetric(nn.Module):
    """Shared evaluation loop: chunked, no gradients, range-checked, float32."""

    def score(self, ref: Frames, dist: Frames, batch_size: int = 8) -> FrameScores:
        """Score every frame of ``dist`` against ``ref`` (layouts as in :mod:`avfc.eval.metrics`)."""
        device = next(self.parameters()).device
        out: list[np.ndarray] = []
        with torch.no_grad():
            for a, b in frame_batches(ref, dist, batch_size, torch.float32, device):
                out.append(self(a, b).double().cpu().numpy())
        return FrameScores(np.concatenate(out))


class LPIPS(_FrameMetric):
    """LPIPS v0.1 with the AlexNet (``net="alex"``, the GFVC default) or VGG16 backbone.

    Args:
        net: ``"alex"`` or ``"vgg"``.
        weights_dir: directory with ``{alexnet,vgg16}_features.pth`` and
            ``lpips_v0.1_{alex,vgg}.pth``; ``None`` uses ``$AVFC_WEIGHTS_DIR``.
        device: where the network runs.

    Raises:
        ConfigError: unknown ``net``, or weights missing / malformed.
    """

    shift: torch.Tensor  # buffers (register_buffer): typed here, as nn.Module's attribute lookup is not
    scale: torch.Tensor

    def __init__(
        self,
        net: Literal["alex", "vgg"] = "alex",
        weights_dir: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if net not in _LPIPS_SLICES:
            raise ConfigError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        # (the layers as a list: torch types a Sequential's slice as Sequential | Module)
        features = list(alexnet_features(weights_dir) if net == "alex" else vgg16_features(weights_dir))
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in _LPIPS_SLICES[net])
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _LPIPS_CHANNELS[net])
        self._load_heads(find_weights(f"lpips_v0.1_{net}.pth", weights_dir))
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    def _load_heads(self, path: os.PathLike[str]) -> None:
        state = load_state_dict_file(path)
        for k, head in enumerate(self.heads):
            assert isinstance(head, nn.Conv2d)  # (the heads built in __init__)
            key = f"lin{k}.model.1.weight"
            w = state.get(key)
            if w is None or tuple(w.shape) != tuple(head.weight.shape) or not torch.isfinite(w).all():
                raise ConfigError(
                    f"LPIPS weights {str(path)!r}: {key!r} missing or not a finite tensor of shape "
                    f"{tuple(head.weight.shape)}"
                )
            head.weight.data.copy_(w.to(torch.float32))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image, shape ``(B,)``; inputs ``(B, 3, H, W)`` in ``[0, 1]``."""
        _check_pair(x, y)
        hx = ((2.0 * x - 1.0) - self.shift) / self.scale
        hy = ((2.0 * y - 1.0) - self.shift) / self.scale
        total = x.new_zeros(x.shape[0])
        for block, head in zip(self.slices, self.heads):
            hx, hy = block(hx), block(hy)
            nx = hx / (torch.sqrt((hx**2).sum(dim=1, keepdim=True)) + 1e-10)
            ny = hy / (torch.sqrt((hy**2).sum(dim=1, keepdim=True)) + 1e-10)
            total = total + head((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total


class _L2Pool(nn.Module):
    """DISTS' L2 pooling: sqrt of a Hann-weighted 3x3 mean of squares, stride 2."""

    filter: torch.Tensor  # a buffer (register_buffer): typed here, as nn.Module's attribute lookup is not

    def __init__(self, channels: int) -> None:
        super().__init__()
        a = torch.tensor([0.5, 1.0, 0.5])
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum()).expand(channels, 1, 3, 3).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return torch.sqrt(out + 1e-12)


class DISTS(_FrameMetric):
    """DISTS (structure and texture similarity on L2-pooled VGG16 features).

    Args:
        weights_dir: directory with ``vgg16_features.pth`` and ``dists_alpha_beta.pt``;
            ``None`` uses ``$AVFC_WEIGHTS_DIR``.
        device: where the network runs.

    Raises:
        ConfigError: weights missing or malformed.
    """

    alpha: torch.Tensor  # buffers (register_buffer): typed here, as nn.Module's attribute lookup is not
    beta: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__()
        vgg = list(vgg16_features(weights_dir))  # (a list: torch types a Sequential's slice as Sequential | Module)
        self.stages = nn.ModuleList(
            [
                nn.Sequential(*vgg[0:4]),
                nn.Sequential(_L2Pool(64), *vgg[5:9]),
                nn.Sequential(_L2Pool(128), *vgg[10:16]),
                nn.Sequential(_L2Pool(256), *vgg[17:23]),
                nn.Sequential(_L2Pool(512), *vgg[24:30]),
            ]
        )
        path = find_weights("dists_alpha_beta.pt", weights_dir)
        state = load_state_dict_file(path)
        shape = (1, sum(_DISTS_CHANNELS), 1, 1)
        for key in ("alpha", "beta"):
            w = state.get(key)
            if w is None or tuple(w.shape) != shape or not torch.isfinite(w).all():
                raise ConfigError(f"DISTS weights {str(path)!r}: {key!r} missing or not a finite tensor of shape {shape}")
        self.register_buffer("alpha", state["alpha"].to(torch.float32).clone())
        self.register_buffer("beta", state["beta"].to(torch.float32).clone())
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DISTS per image, shape ``(B,)``; inputs ``(B, 3, H, W)`` in ``[0, 1]``."""
        _check_pair(x, y)
        c1 = c2 = 1e-6
        w_sum = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w_sum, list(_DISTS_CHANNELS), dim=1)
        betas = torch.split(self.beta / w_sum, list(_DISTS_CHANNELS), dim=1)
        total = x.new_zeros(x.shape[0])
        for fx, fy, a, b in zip(self._features(x), self._features(y), alphas, betas):
            mx, my = fx.mean(dim=(2, 3), keepdim=True), fy.mean(dim=(2, 3), keepdim=True)
            texture = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            vx = ((fx - mx) ** 2).mean(dim=(2, 3), keepdim=True)
            vy = ((fy - my) ** 2).mean(dim=(2, 3), keepdim=True)
            cov = (fx * fy).mean(dim=(2, 3), keepdim=True) - mx * my
            structure = (2 * cov + c2) / (vx + vy + c2)
            total = total + (a * texture + b * structure).sum(dim=(1, 2, 3))
        return 1.0 - total


#: the perceptual distances :func:`search_term` builds for the encoder's motion search
SEARCH_METRICS = ("lpips-alex", "lpips-vgg", "dists")


def search_term(weights_dir: str | os.PathLike[str], metric: str = "lpips-alex",
                device: torch.device | str = "cpu") -> nn.Module:
    """A perceptual term for the encoder's motion search (:data:`avfc.codec.search.PerceptualTerm`):
    LPIPS (AlexNet or VGG16) or DISTS from the weights in ``weights_dir``, a directory given by path
    (the package ships none; ``$AVFC_WEIGHTS_DIR`` is not consulted: the choice is explicit).
    ``term(render, source)`` gives ``(B,)`` and is differentiable in ``render``.

    Raises:
        ConfigError: ``weights_dir`` is not a directory, lacks the metric's files or holds malformed
            ones, or ``metric`` is not one of :data:`SEARCH_METRICS`; before any encoding.
    """
    if metric not in SEARCH_METRICS:
        raise ConfigError(f"search metric must be one of {', '.join(SEARCH_METRICS)}, got {metric!r}")
    path = Path(weights_dir)
    if not path.is_dir():
        why = "does not exist" if not path.exists() else "is not a directory"
        raise ConfigError(f"search weights {str(path)!r} {why}: give the folder that holds the "
                          f"{metric} weights (e.g. ../shared/weights)")
    if metric == "dists":
        return DISTS(path, device)
    return LPIPS("alex" if metric == "lpips-alex" else "vgg", path, device)
