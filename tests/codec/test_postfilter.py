"""The decoder's opt-in output sharpening."""

from __future__ import annotations

import numpy as np
import pytest

import avfc
from avfc.codec.postfilter import MAX_SHARPEN, sharpen
from avfc.errors import ConfigError
from synthetic import speech_like, talking_face


def test_sharpen_leaves_flat_areas_and_steepens_edges():
    img = np.full((1, 32, 32, 3), 100, np.uint8)
    img[:, :, 16:] = 160
    out = sharpen(img, 1.0)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out[:, :, :10], img[:, :, :10])  # far from the edge: unchanged
    np.testing.assert_array_equal(out[:, :, 22:], img[:, :, 22:])
    assert out[0, 5, 15, 0] < 100 and out[0, 5, 16, 0] > 160  # overshoot on both sides of the edge
    assert (sharpen(img, 2.0)[0, 5, 16] >= out[0, 5, 16]).all()  # more amount, more overshoot
    np.testing.assert_array_equal(sharpen(np.full((2, 8, 8, 3), 255, np.uint8), 3.0), 255)  # clipped
    assert sharpen(img, 0.0) is img
    for bad in (-0.1, MAX_SHARPEN + 1, "x", None):
        with pytest.raises(ConfigError):
            sharpen(img, bad)


def test_decode_with_sharpen_is_the_filter_applied_to_the_plain_decode():
    res = avfc.encode(talking_face(12, 64, 64, seed=2), pcm=speech_like(12 / 25, seed=2), model="tiny-test", size=64,
                      key_qp=40)
    plain = avfc.decode(res.data)
    sharp = avfc.decode(res.data, sharpen=0.5)
    np.testing.assert_array_equal(sharp.frames, sharpen(plain.frames, 0.5))
    assert not np.array_equal(sharp.frames, plain.frames)
    np.testing.assert_array_equal(sharp.motion, plain.motion)
    with pytest.raises(ConfigError):
        avfc.decode(res.data, sharpen=-1)
