"""Mouth-motion error on a synthetic talking 'face'."""

from __future__ import annotations

import numpy as np
import pytest

from avfc.errors import ConfigError, MediaError
from avfc.eval.mouth import mouth_box, mouth_motion_error


def talking_face(t: int = 50, size: int = 128, phase: float = 0.0, eyes_blink: bool = False) -> np.ndarray:
    """Skin-coloured frames with a dark elliptic mouth whose height follows a syllable rhythm."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((t, size, size, 3), np.uint8)
    for i in range(t):
        img = np.empty((size, size, 3), np.float64)
        img[:] = (200, 160, 140)
        opening = 2 + 10 * max(0.0, np.sin(2 * np.pi * i / 8.0 + phase))  # half-axis in px
        cy, cx = 0.82 * size, 0.5 * size
        mouth = ((xx - cx) / (0.12 * size)) ** 2 + ((yy - cy) / opening) ** 2 <= 1
        img[mouth] = (40, 20, 20)
        if eyes_blink and i % 3 == 0:  # motion outside the mouth box
            img[int(0.3 * size) : int(0.36 * size), int(0.25 * size) : int(0.75 * size)] = (90, 60, 50)
        frames[i] = img.astype(np.uint8)
    return frames


def test_perfect_decode():
    v = talking_face()
    r = mouth_motion_error(v, v)
    assert r.motion_corr == pytest.approx(1.0) and r.opening_corr == pytest.approx(1.0)
    assert r.motion_l1 == 0.0 and r.opening_l1 == 0.0
    assert r.source_motion.shape == (49,) and r.source_opening.shape == (50,)
    assert r.source_motion.max() > 0.01  # the mouth does move


def test_still_frame_is_exposed():
    v = talking_face()
    still = np.repeat(v[:1], len(v), axis=0)
    r = mouth_motion_error(v, still)
    assert r.motion_corr == 0.0 and r.opening_corr == 0.0  # constant decoded series
    assert r.motion_l1 == pytest.approx(r.source_motion.mean())  # all source motion is missed
    assert r.opening_l1 > 0.01


def test_out_of_phase_mouth_scores_low():
    v = talking_face()
    wrong = talking_face(phase=np.pi)  # opens when the source closes
    r = mouth_motion_error(v, wrong)
    assert r.opening_corr < -0.5
    assert r.opening_l1 > 0.01


def test_motion_outside_the_box_is_ignored():
    v = talking_face()
    blinking = talking_face(eyes_blink=True)
    r = mouth_motion_error(v, blinking)
    assert r.motion_corr == pytest.approx(1.0) and r.motion_l1 == 0.0


def test_box_and_errors():
    assert mouth_box(256, 256) == (171, 256, 85, 171)
    assert mouth_box(3, 3, (0.0, 0.1, 0.0, 0.1)) == (0, 1, 0, 1)  # at least one pixel
    with pytest.raises(ConfigError, match="mouth box"):
        mouth_box(256, 256, (0.8, 0.6, 0.3, 0.6))
    v = talking_face(t=5, size=64)
    with pytest.raises(MediaError, match="at least 3 frames"):
        mouth_motion_error(v[:2], v[:2])
    with pytest.raises(MediaError, match="differ in size"):
        mouth_motion_error(v, v[:4])
    with pytest.raises(ConfigError, match="dark_percentile"):
        mouth_motion_error(v, v, dark_percentile=0)
