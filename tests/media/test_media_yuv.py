"""The integer RGB <-> YUV 4:2:0 conversion (docs/bitstream.md (part D), section 2)."""

from __future__ import annotations

import numpy as np
import pytest

from avfc.errors import MediaError
from avfc.media.yuv import rgb_to_yuv420, upsample_chroma, yuv420_to_rgb


def flat(rgb: tuple[int, int, int], size: int = 4) -> np.ndarray:
    return np.full((size, size, 3), rgb, dtype=np.uint8)


@pytest.mark.parametrize(
    "rgb, yuv, back",
    [
        ((0, 0, 0), (0, 128, 128), (0, 0, 0)),
        ((255, 255, 255), (255, 128, 128), (255, 255, 255)),
        ((128, 128, 128), (128, 128, 128), (128, 128, 128)),
        ((255, 0, 0), (76, 85, 255), (254, 0, 0)),
        ((0, 255, 0), (150, 44, 21), (0, 255, 1)),
        ((0, 0, 255), (29, 255, 107), (0, 0, 254)),
    ],
)
def test_known_values(rgb, yuv, back) -> None:
    y, u, v = rgb_to_yuv420(flat(rgb))
    assert (int(y[0, 0]), int(u[0, 0]), int(v[0, 0])) == yuv
    assert y.shape == (4, 4) and u.shape == v.shape == (2, 2)
    assert tuple(int(c) for c in yuv420_to_rgb(y, u, v)[1, 1]) == back


def test_luma_matches_the_float_formula() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    y, _, _ = rgb_to_yuv420(rgb)
    ref = np.round(rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(y.astype(int) - ref).max() <= 1


def test_chroma_is_the_rounded_mean_of_its_block() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (0, 0, 255)  # cb of blue = 128 + 127.5, of black = 128
    _, u, v = rgb_to_yuv420(rgb)
    expected_cb = 128 + 0.5 * 255 / 4
    expected_cr = 128 - 0.081312 * 255 / 4
    assert abs(int(u[0, 0]) - expected_cb) <= 0.5 and abs(int(v[0, 0]) - expected_cr) <= 0.5


def test_upsample_exact_values_and_constant_plane() -> None:
    out = upsample_chroma(np.array([[0, 16], [32, 48]], np.uint8))
    expected = [[0, 4, 12, 16], [8, 12, 20, 24], [24, 28, 36, 40], [32, 36, 44, 48]]
    np.testing.assert_array_equal(out, np.array(expected, np.uint8))
    np.testing.assert_array_equal(upsample_chroma(np.full((3, 5), 77, np.uint8)), np.full((6, 10), 77))


def test_flat_colours_round_trip_within_one_step() -> None:
    colours = np.random.default_rng(1).integers(0, 256, (500, 3))
    worst = 0
    for c in colours:
        back = yuv420_to_rgb(*rgb_to_yuv420(flat(tuple(c), 2)))
        worst = max(worst, int(np.abs(back.astype(int) - c).max()))
    assert worst <= 3  # rounding of Y, Cb, Cr (Cb/Cr clip only at the gamut corners)


def test_smooth_picture_round_trip_is_close() -> None:
    yy, xx = np.mgrid[0:64, 0:96]
    rgb = np.stack([2 * xx + 20, 3 * yy + 10, 255 - xx - yy], axis=-1).clip(0, 255).astype(np.uint8)
    back = yuv420_to_rgb(*rgb_to_yuv420(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 3


def test_conversion_is_deterministic() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    a = yuv420_to_rgb(*rgb_to_yuv420(rgb))
    b = yuv420_to_rgb(*rgb_to_yuv420(rgb.copy()))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "rgb", [np.zeros((3, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8)]
)
def test_bad_pictures(rgb: np.ndarray) -> None:
    with pytest.raises(MediaError):
        rgb_to_yuv420(rgb)


def test_bad_planes() -> None:
    y = np.zeros((4, 4), np.uint8)
    with pytest.raises(MediaError):
        yuv420_to_rgb(y, np.zeros((2, 3), np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(MediaError):
        yuv420_to_rgb(y.astype(np.int16), np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8))
