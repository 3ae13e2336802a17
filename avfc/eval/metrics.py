"""Full-reference pixel metrics for decoded video: PSNR, SSIM and MS-SSIM.

Definitions (Wang et al. 2004 / 2003), as implemented by ``pytorch_msssim`` and
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``:

* images are scaled to ``[0, 1]`` (uint8 / 255), so the data range ``L`` is 1;
* SSIM: 11x11 Gaussian window, sigma 1.5 (separable, normalised), ``K1 = 0.01``,
  ``K2 = 0.03``, statistics over the *valid* part of the image (no padding), the SSIM
  map averaged over the image;
* MS-SSIM: 5 scales with weights ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``, contrast-
  structure terms at scales 1-4 and full SSIM at scale 5 (negative terms clipped to 0),
  2x2 average pooling between scales (an odd side is zero-padded by one sample, as
  ``pytorch_msssim`` does). The shorter side must exceed 160 pixels.

Colour convention (``color=``):

* ``"rgb"`` (default), the usual GFVC convention: SSIM / MS-SSIM are computed on each of
  R, G, B in ``[0, 1]`` and the three values averaged; PSNR uses the MSE over all
  three channels (``10 log10(1 / MSE)``).
* ``"y"``: on BT.709 full-range luma ``Y = 0.2126 R + 0.7152 G + 0.0722 B``, rounded
  to the 8-bit grid, which is what the JVET GFVC evaluation scripts report as
  ``PSNR_Y`` and MS-SSIM. Use it to compare with numbers computed that way.

Every function scores each frame and returns :class:`FrameScores` (per-frame values and
their mean; the mean over frames is what GFVC papers report). Inputs: numpy arrays
``(T, H, W, 3)`` or ``(H, W, 3)`` (uint8, or float in ``[0, 1]``), or torch tensors
``(T, 3, H, W)`` or ``(3, H, W)`` (uint8, or float in ``[0, 1]``). Frames are processed
in chunks of ``batch_size`` to bound memory; results do not depend on the chunking.
Computation is float64 on ``device`` (CPU by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal, Union

import numpy as np
import torch
import torch.nn.functional as F

from avfc.errors import ConfigError, MediaError

__all__ = [
    "FrameScores",
    "Frames",
    "MS_SSIM_WEIGHTS",
    "check_frames",
    "frame_batches",
    "psnr",
    "ssim",
    "ms_ssim",
]

Frames = Union[np.ndarray, torch.Tensor]
Color = Literal["rgb", "y"]

#: MS-SSIM scale weights (Wang, Simoncelli, Bovik 2003)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_K1, _K2 = 0.01, 0.03
_WIN_SIZE, _WIN_SIGMA = 11, 1.5
_BT709 = (0.2126, 0.7152, 0.0722)
_RANGE_TOL = 1e-4  # float inputs may overshoot [0, 1] by this much (rounding), no more


@dataclass(frozen=True)
class FrameScores:
    """Scores of one metric for every frame of a sequence."""

    per_frame: np.ndarray  # (T,) float64

    @property
    def mean(self) -> float:
        """Mean over frames (``inf`` if any frame is ``inf``, e.g. PSNR of identical frames)."""
        return float(np.mean(self.per_frame))

    def __len__(self) -> int:
        return int(self.per_frame.shape[0])


def _layout(x: Frames, name: str) -> tuple[int, int, int]:
    """Validate type/shape of one input; return ``(T, H, W)``."""
    if isinstance(x, np.ndarray):
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise MediaError(f"{name}: numpy frames must be (T, H, W, 3) or (H, W, 3), got shape {x.shape}")
        t, h, w = x.shape[:3]
        kind = x.dtype.kind
    elif isinstance(x, torch.Tensor):
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise MediaError(f"{name}: tensor frames must be (T, 3, H, W) or (3, H, W), got shape {tuple(x.shape)}")
        t, h, w = x.shape[0], x.shape[2], x.shape[3]
        kind = "u" if x.dtype == torch.uint8 else ("f" if x.dtype.is_floating_point else "i")
    else:
        raise MediaError(f"{name}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if kind == "u" and x.dtype not in (np.uint8, torch.uint8):
        raise MediaError(f"{name}: only 8-bit unsigned integer frames are supported, got {x.dtype}")
    if kind not in ("u", "f"):
        raise MediaError(f"{name}: frames must be uint8 or float, got {x.dtype}")
    if t == 0 or h == 0 or w == 0:
        raise MediaError(f"{name}: empty frames, shape {tuple(x.shape)}")
    return int(t), int(h), int(w)


def check_frames(ref: Frames, dist: Frames) -> tuple[int, int, int]:
    """Check that two inputs are valid and of equal size; return ``(T, H, W)``."""
    a = _layout(ref, "reference")
    b = _layout(dist, "distorted")
    if a != b:
        raise MediaError(f"reference and distorted differ in size: (T, H, W) = {a} vs {b}")
    return a


def _to_tensor(x: Frames, start: int, stop: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Frames ``start:stop`` of ``x`` as a ``(n, 3, H, W)`` tensor in ``[0, 1]``."""
    if isinstance(x, np.ndarray):
        arr = x[None] if x.ndim == 3 else x
        t = torch.from_numpy(np.ascontiguousarray(arr[start:stop])).permute(0, 3, 1, 2)
    else:
        t = (x[None] if x.ndim == 3 else x)[start:stop].detach()
    if t.dtype == torch.uint8:
        return t.to(device=device, dtype=dtype) / 255.0
    t = t.to(device=device, dtype=dtype)
    if not torch.isfinite(t).all():
        raise MediaError("frames contain NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise MediaError(f"float frames must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]; clamp first")
    return t.clamp(0.0, 1.0)


def frame_batches(
    ref: Frames,
    dist: Frames,
    batch_size: int = 16,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield aligned chunks ``(ref, dist)`` of shape ``(n, 3, H, W)`` in ``[0, 1]``.

    Accepts every input layout described in the module docs; checks sizes first.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    t, _, _ = check_frames(ref, dist)
    for start in range(0, t, int(batch_size)):
        stop = min(t, start + int(batch_size))
        yield _to_tensor(ref, start, stop, dtype, device), _to_tensor(dist, start, stop, dtype, device)


def _color(x: torch.Tensor, color: Color) -> torch.Tensor:
    if color == "rgb":
        return x
    r, g, b = _BT709
    y = r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]
    return torch.round(y.clamp(0.0, 1.0) * 255.0) / 255.0


def _check_color(color: str) -> None:
    if color not in ("rgb", "y"):
        raise ConfigError(f"color must be 'rgb' or 'y', got {color!r}")


def psnr(
    ref: Frames,
    dist: Frames,
    color: Color = "rgb",
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> FrameScores:
    """PSNR in dB per frame, peak 1 on ``[0, 1]`` data (same as peak 255 on uint8).

    ``10 * log10(1 / MSE)``, the MSE taken over all samples of the frame (all three
    channels for ``color="rgb"``). Identical frames give ``inf``.
    """
    _check_color(color)
    out: list[np.ndarray] = []
    for a, b in frame_batches(ref, dist, batch_size, torch.float64, device):
        mse = ((_color(a, color) - _color(b, color)) ** 2).mean(dim=(1, 2, 3)).cpu().numpy()
        with np.errstate(divide="ignore"):
            out.append(np.where(mse > 0, -10.0 * np.log10(np.maximum(mse, 1e-300)), np.inf))
    return FrameScores(np.concatenate(out))


def _gauss_window(device: torch.device | str) -> torch.Tensor:
    coords = torch.arange(_WIN_SIZE, dtype=torch.float64, device=device) - (_WIN_SIZE // 2)
    g = torch.exp(-(coords**2) / (2.0 * _WIN_SIGMA**2))
    return g / g.sum()


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, 'valid' region only, each channel on its own."""
    c = x.shape[1]
    x = F.conv2d(x, win.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, win.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, shape ``(B, C)``."""
    c1, c2 = _K1**2, _K2**2
    mu_x, mu_y = _blur(x, win), _blur(y, win)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = _blur(x * x, win) - mu_xx
    s_yy = _blur(y * y, win) - mu_yy
    s_xy = _blur(x * y, win) - mu_xy
    cs_map = (2.0 * s_xy + c2) / (s_xx + s_yy + c2)
    ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ssim(
    ref: Frames,
    dist: Frames,
    color: Color = "rgb",
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> FrameScores:
    """SSIM per frame (see module docs for the exact definition). Frames need sides >= 11."""
    _check_color(color)
    _, h, w = check_frames(ref, dist)
    if min(h, w) < _WIN_SIZE:
        raise MediaError(f"SSIM needs frames of at least {_WIN_SIZE}x{_WIN_SIZE} pixels, got {h}x{w}")
    win = _gauss_window(device)
    out: list[np.ndarray] = []
    for a, b in frame_batches(ref, dist, batch_size, torch.float64, device):
        s, _ = _ssim_cs(_color(a, color), _color(b, color), win)
        out.append(s.mean(dim=1).cpu().numpy())
    return FrameScores(np.concatenate(out))


def ms_ssim(
    ref: Frames,
    dist: Frames,
    color: Color = "rgb",
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> FrameScores:
    """MS-SSIM per frame (5 scales, see module docs). The shorter side must exceed 160 px."""
    _check_color(color)
    _, h, w = check_frames(ref, dist)
    min_side = (_WIN_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1)
    if min(h, w) <= min_side:
        raise MediaError(f"MS-SSIM needs frames whose shorter side exceeds {min_side} pixels, got {h}x{w}")
    win = _gauss_window(device)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64, device=device).view(-1, 1, 1)
    out: list[np.ndarray] = []
    for a, b in frame_batches(ref, dist, batch_size, torch.float64, device):
        x, y = _color(a, color), _color(b, color)
        terms: list[torch.Tensor] = []
        for level in range(len(MS_SSIM_WEIGHTS)):
            s, cs = _ssim_cs(x, y, win)
            if level == len(MS_SSIM_WEIGHTS) - 1:
                terms.append(torch.relu(s))
            else:
                terms.append(torch.relu(cs))
                pad = (x.shape[2] % 2, x.shape[3] % 2)
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        per_channel = torch.prod(torch.stack(terms, dim=0) ** weights, dim=0)  # (B, C)
        out.append(per_channel.mean(dim=1).cpu().numpy())
    return FrameScores(np.concatenate(out))
