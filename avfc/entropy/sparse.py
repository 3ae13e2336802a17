"""Sparse motion (format 1.2): keypoints of every ``stride``-th frame, the frames between interpolated.

A MOTION_SPARSE packet of ``n`` frames codes the keypoints of the frames at
:func:`sparse_positions` (``0, s, 2s, ...`` and always the last frame ``n - 1``) as an ordinary
motion packet (part B of docs/bitstream.md); the decoder fills the frames between two coded ones
with :func:`interpolate_track`, integer linear interpolation rounded half up. Integers only: the
filled keypoints are identical on every machine, and since the last frame of a packet is always
coded, the next packet's predictor (``prev``) is a coded frame.
"""

from __future__ import annotations

import numpy as np

from avfc.errors import FormatError


def sparse_positions(num_frames: int, stride: int) -> list[int]:
    """The frames (0-based within the packet) whose keypoints a sparse packet codes.

    ``range(0, num_frames, stride)`` and, if it is not among them, the last frame ``num_frames - 1``.
    """
    if num_frames < 0 or stride < 1:
        raise FormatError(f"sparse motion needs num_frames >= 0 and stride >= 1, got {num_frames}, {stride}")
    pos = list(range(0, num_frames, stride))
    if num_frames and pos[-1] != num_frames - 1:
        pos.append(num_frames - 1)
    return pos


def interpolate_track(samples: np.ndarray, num_frames: int, stride: int) -> np.ndarray:
    """Every frame ``(num_frames, C)`` int32 from the coded ones ``(len(sparse_positions), C)``.

    Frame ``j`` between the coded frames ``a < j < b`` (values ``qa``, ``qb``) gets
    ``qa + floor(((qb - qa) * (j - a) * 2 + (b - a)) / (2 * (b - a)))`` per channel: the linear
    interpolation rounded to the nearest integer, halves up. Coded frames keep their values.
    """
    pos = sparse_positions(num_frames, stride)
    samples = np.asarray(samples)
    if samples.ndim != 2 or samples.shape[0] != len(pos):
        raise FormatError(f"sparse motion of {num_frames} frames at stride {stride} has {len(pos)} coded "
                          f"frames, got {samples.shape[0] if samples.ndim == 2 else samples.shape}")
    q = samples.astype(np.int64)
    out = np.empty((num_frames, q.shape[1]), dtype=np.int64)
    for k, a in enumerate(pos):
        out[a] = q[k]
        if k + 1 < len(pos):
            b = pos[k + 1]
            j = np.arange(1, b - a, dtype=np.int64)[:, None]  # offsets of the frames between
            out[a + 1:b] = q[k] + np.floor_divide((q[k + 1] - q[k]) * j * 2 + (b - a), 2 * (b - a))
    return out.astype(np.int32)
