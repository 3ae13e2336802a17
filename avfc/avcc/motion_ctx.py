"""Motion context of the audio tokens: an integer level per audio frame from the decoded motion.

A study for the "motion helps audio" part of AVCC (issue 21; docs/experiments/
2026-12-06-motion-conditioned-audio.md): the Codec2 700C context model
(:class:`~avfc.avcc.audio_ctx.AudioContextModel`) can be conditioned on a per-frame level ``m`` in
``0..M-1`` (its contexts become ``c * M + m``). This module computes ``m`` from what a decoder has:
the quantized keypoints ``Q`` (integers on the stream's grid) of the video frames that the audio
frames pair with (audio frame ``k`` goes with video frame ``k``, 25 fps, docs/bitstream.md F.1).

Definition, for one audio packet covering frames ``[a, b)`` whose motion rows ``Q[a..b-1]`` are all
known (``C`` channels each); everything is integer arithmetic on those rows:

* ``d[j] = sum_c |Q[j][c] - Q[j-1][c]|`` for ``a < j < b`` (the keypoint displacement of frame
  ``j``, L1 on the grid), and ``d[a] = 0``: the packet reads no motion from before ``a``, so a lost
  earlier motion unit never costs this packet;
* ``s[k] = d[k-1] + d[k] + d[k+1]`` over the terms with ``a <= j < b`` (a window of three frames;
  the frame after ``k`` is in the same packet, whose motion the audio follows);
* ``m[k] = 1 + #{i : thresholds[i] <= s[k]}``, so ``m`` is ``1..M-1`` with ``M = len(thresholds) + 2``.

Level 0 is reserved for "no motion": a packet whose motion is not known (past the video's end, or
lost) is coded with ``m = 0`` for every frame, the unconditioned tables.

Measured on av-eval with ``mrdac-cpu-v3`` keypoints (the detector of ``mrdac-cpu-v2``, frozen since):
the levels carry no information about the speech tokens that the tables can use (conditioned tables
code 0.04-0.10 bit per frame *worse* than the same refit without motion; the displacement correlates
with the frame energy at about 0.1). So no bundle with ``M > 1`` is shipped, the encoder and decoder
do not use this, and the format keeps ``M = 1`` (docs/bitstream.md F.3.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avfc.avcc.audio_ctx import MAX_MOTION_LEVELS
from avfc.errors import ConfigError

#: most keypoint channels a motion row may have (as the MOTION_PRED predictor's ``C``)
MAX_CHANNELS = 1024


def check_thresholds(thresholds: Sequence[int]) -> tuple[int, ...]:
    """``thresholds`` as a tuple of strictly increasing non-negative ints giving at most
    ``MAX_MOTION_LEVELS`` levels (ConfigError otherwise)."""
    out = []
    for t in thresholds:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or int(t) < 0:
            raise ConfigError(f"motion thresholds must be non-negative integers, got {t!r}")
        out.append(int(t))
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ConfigError(f"motion thresholds must increase strictly, got {out}")
    if len(out) + 2 > MAX_MOTION_LEVELS:
        raise ConfigError(f"{len(out)} motion thresholds make {len(out) + 2} levels, more than "
                          f"{MAX_MOTION_LEVELS}")
    return tuple(out)


def motion_activity(rows: np.ndarray) -> np.ndarray:
    """``s[k]`` of the module doc for one packet's motion rows ``(n, C)`` (integers): ``(n,)`` int64.

    Raises:
        ConfigError: rows that are not a 2-D integer array with 1..MAX_CHANNELS channels.
    """
    q = np.asarray(rows)
    if q.ndim != 2 or q.dtype.kind not in "iu" or not 1 <= q.shape[1] <= MAX_CHANNELS:
        raise ConfigError(f"motion rows must be an (n, C) integer array with 1..{MAX_CHANNELS} channels, "
                          f"got shape {q.shape} of {q.dtype}")
    q = q.astype(np.int64)
    n = len(q)
    d = np.zeros(n + 2, dtype=np.int64)  # d[j + 1] = displacement of frame j; 0 outside the packet
    if n > 1:
        d[2:n + 1] = np.abs(np.diff(q, axis=0)).sum(axis=1)
    return d[:n] + d[1:n + 1] + d[2:n + 2]


def motion_levels(rows: np.ndarray, thresholds: Sequence[int]) -> list[int]:
    """The level ``m[k]`` in ``1..len(thresholds)+1`` of every frame of one packet's motion rows."""
    th = np.asarray(check_thresholds(thresholds), dtype=np.int64)
    s = motion_activity(rows)
    return [1 + int(x) for x in np.searchsorted(th, s, side="right")]


def packet_levels(motion: np.ndarray, first: int, count: int, thresholds: Sequence[int]) -> list[int]:
    """Levels of the audio packet of frames ``[first, first + count)`` given the motion rows of the
    whole stream ``(N, C)``: those of :func:`motion_levels` when the packet's frames all have motion
    (``first + count <= N``), else ``0`` for every frame (no motion: the unconditioned tables)."""
    if first < 0 or count < 0:
        raise ConfigError(f"bad packet [{first}, {first + count})")
    if first + count > len(motion):
        return [0] * count
    return motion_levels(motion[first:first + count], thresholds)
