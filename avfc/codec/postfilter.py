"""Output post-filter of the decoder: an optional unsharp mask (decoder behaviour, not in the stream).

At a few kbps the key picture is coarsely quantized and the generator warps it with bilinear
sampling, both of which soften texture. ``sharpen(frames, amount)`` returns
``clip(round(x + amount * (x - G(x))))`` with ``G`` a separable Gaussian blur (sigma 1, 7 taps,
edges replicated), per channel, on uint8 RGB frames. It trades a little PSNR for LPIPS and DISTS
(docs/results.md); the decoder applies it to every output frame only when asked
(``avfc decode --sharpen``), so streams decode as before by default.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avfc.errors import ConfigError

#: largest amount accepted
MAX_SHARPEN = 4.0
_TAPS = np.exp(-np.arange(-3, 4, dtype=np.float64) ** 2 / 2.0)
_KERNEL = torch.tensor(_TAPS / _TAPS.sum(), dtype=torch.float32)


def check_amount(amount: float) -> float:
    """``amount`` as a float in ``[0, MAX_SHARPEN]`` (ConfigError otherwise)."""
    try:
        a = float(amount)
    except (TypeError, ValueError):
        raise ConfigError(f"sharpen amount must be a number, got {amount!r}") from None
    if not 0.0 <= a <= MAX_SHARPEN:
        raise ConfigError(f"sharpen amount must be in 0..{MAX_SHARPEN:g}, got {amount!r}")
    return a


def sharpen(frames: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp-masked copy of uint8 frames ``(N, H, W, 3)`` (the frames themselves when ``amount`` is 0)."""
    a = check_amount(amount)
    if a == 0.0 or len(frames) == 0:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    k = _KERNEL
    blur = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).repeat(3, 1, 1, 1), groups=3)
    blur = F.conv2d(F.pad(blur, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).repeat(3, 1, 1, 1), groups=3)
    y = torch.round(x + a * (x - blur)).clamp(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().numpy()
