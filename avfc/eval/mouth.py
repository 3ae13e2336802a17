"""A landmark-free mouth-motion error between source and decoded talking-face video.

What it measures, honestly: two simple signals inside a fixed *mouth box* of an aligned
face crop (by default rows 2/3..1 and columns 1/3..2/3 of the frame, the lower-middle
part where the mouth of a GFVC-style 256x256 face crop lies), on BT.709 luma in [0, 1]:

* **motion energy** ``E[t] = mean |Y[t] - Y[t-1]|`` over the box: how much the mouth
  region changes between frames (lips, jaw, and anything else moving in the box);
* **opening proxy** ``O[t]``: the fraction of box pixels at or below a luma threshold fixed
  from the *source* (the ``dark_percentile``-th percentile of all source box pixels),
  applied unchanged to both videos. An open mouth shows a dark cavity, so ``O`` rises as
  it opens; teeth, beards, shadows and lighting changes disturb it.

Source and decoded sequences of each signal are compared by Pearson correlation (does
the decoded mouth move *when* the source mouth moves?) and mean absolute difference
(does it move *as much*?). A decoder that holds a still frame gets motion energy near 0,
correlation 0 and a large motion L1: exactly the failure these numbers are meant to
expose, which LPIPS and DISTS miss. It is no lip-reading or landmark metric: it assumes
the face is aligned and roughly still in the crop (head motion inside the box counts as
mouth motion), and it says nothing about the *shape* of the lips. Correlations are
defined as 0 when either sequence is constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avfc.errors import ConfigError, MediaError
from avfc.eval.metrics import Frames, check_frames, frame_batches

__all__ = ["DEFAULT_MOUTH_BOX", "MouthMotion", "mouth_box", "mouth_motion_error"]

#: (top, bottom, left, right) of the mouth box as fractions of the frame height / width
DEFAULT_MOUTH_BOX = (2.0 / 3.0, 1.0, 1.0 / 3.0, 2.0 / 3.0)
_BT709 = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class MouthMotion:
    """Mouth-motion comparison of a decoded video against its source."""

    motion_corr: float  # Pearson r of the motion energies (1 = moves in step)
    motion_l1: float  # mean |E_src - E_dec|, in luma units (0..1)
    opening_corr: float  # Pearson r of the opening proxies
    opening_l1: float  # mean |O_src - O_dec|, fraction of box pixels (0..1)
    source_motion: np.ndarray  # (T-1,)
    decoded_motion: np.ndarray  # (T-1,)
    source_opening: np.ndarray  # (T,)
    decoded_opening: np.ndarray  # (T,)


def mouth_box(height: int, width: int, box: tuple[float, float, float, float] = DEFAULT_MOUTH_BOX) -> tuple[int, int, int, int]:
    """Pixel bounds ``(y0, y1, x0, x1)`` of a fractional box; each side at least 1 pixel."""
    top, bottom, left, right = (float(v) for v in box)
    if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
        raise ConfigError(f"mouth box must satisfy 0 <= top < bottom <= 1 and 0 <= left < right <= 1, got {box}")
    y0, x0 = int(round(top * height)), int(round(left * width))
    y1, x1 = max(y0 + 1, int(round(bottom * height))), max(x0 + 1, int(round(right * width)))
    return min(y0, height - 1), min(y1, height), min(x0, width - 1), min(x1, width)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 1e-12 else 0.0


def mouth_motion_error(
    source: Frames,
    decoded: Frames,
    box: tuple[float, float, float, float] = DEFAULT_MOUTH_BOX,
    dark_percentile: float = 10.0,
    batch_size: int = 32,
) -> MouthMotion:
    """Compare mouth motion of ``decoded`` with ``source`` (same layouts as :mod:`avfc.eval.metrics`).

    Args:
        source: original face-crop video, at least 3 frames.
        decoded: decoded video of the same size and length.
        box: mouth box as fractions ``(top, bottom, left, right)``.
        dark_percentile: percentile of source box luma that defines "dark" (0 < p < 100).
        batch_size: frames converted at a time.

    Raises:
        MediaError: inputs differ in size or are too short.
        ConfigError: bad box or percentile.
    """
    t, h, w = check_frames(source, decoded)
    if t < 3:
        raise MediaError(f"mouth motion needs at least 3 frames, got {t}")
    if not 0.0 < float(dark_percentile) < 100.0:
        raise ConfigError(f"dark_percentile must lie in (0, 100), got {dark_percentile}")
    y0, y1, x0, x1 = mouth_box(h, w, box)
    coef = torch.tensor(_BT709, dtype=torch.float32).view(1, 3, 1, 1)
    src_parts, dec_parts = [], []
    for a, b in frame_batches(source, decoded, batch_size, torch.float32, "cpu"):
        src_parts.append((a[:, :, y0:y1, x0:x1] * coef).sum(dim=1).numpy())
        dec_parts.append((b[:, :, y0:y1, x0:x1] * coef).sum(dim=1).numpy())
    src, dec = np.concatenate(src_parts), np.concatenate(dec_parts)  # (T, bh, bw)

    src_motion = np.abs(np.diff(src, axis=0)).mean(axis=(1, 2)).astype(np.float64)
    dec_motion = np.abs(np.diff(dec, axis=0)).mean(axis=(1, 2)).astype(np.float64)
    threshold = float(np.percentile(src, float(dark_percentile)))
    src_open = (src <= threshold).mean(axis=(1, 2)).astype(np.float64)
    dec_open = (dec <= threshold).mean(axis=(1, 2)).astype(np.float64)
    return MouthMotion(
        motion_corr=_pearson(src_motion, dec_motion),
        motion_l1=float(np.abs(src_motion - dec_motion).mean()),
        opening_corr=_pearson(src_open, dec_open),
        opening_l1=float(np.abs(src_open - dec_open).mean()),
        source_motion=src_motion,
        decoded_motion=dec_motion,
        source_opening=src_open,
        decoded_opening=dec_open,
    )
