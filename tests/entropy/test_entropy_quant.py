"""Quantization of keypoint values: rounding rule, clipping, exactness, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfc.entropy import QMAX, dequantize, quantize, quantize_track
from avfc.errors import ConfigError, EntropyError


def test_rounds_half_to_even() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, -0.51]) / 128
    assert quantize(x, 7).tolist() == [0, 2, 2, 0, -2, -2, 0, -1]


def test_scale_and_dtype() -> None:
    q = quantize(np.array([[1.0, -1.0], [0.25, 0.0]], dtype=np.float32), 8)
    assert q.dtype == np.int32
    assert q.tolist() == [[256, -256], [64, 0]]


def test_clips_to_int16_symmetric_range() -> None:
    q = quantize(np.array([1e9, -1e9, 255.99]), 7)
    assert q.tolist() == [QMAX, -QMAX, QMAX]
    assert QMAX == 2**15 - 1


@given(st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=1, max_size=40),
       st.integers(0, 12))
@settings(max_examples=60, deadline=None)
def test_dequantize_is_exact_and_close(values: list[float], p: int) -> None:
    x = np.array(values)
    q = quantize(x, p)
    y = dequantize(q, p)
    assert y.dtype == np.float32
    assert np.array_equal(y.astype(np.float64) * 2**p, q.astype(np.float64))
    assert np.all(np.abs(y - x) <= 2.0 ** (-p - 1) + 1e-12)


@pytest.mark.parametrize("p", [-1, 17, 2.0, True, "7"])
def test_bad_precision_is_config_error(p: object) -> None:
    with pytest.raises(ConfigError):
        quantize(np.zeros(3), p)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        dequantize(np.zeros(3, dtype=np.int32), p)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.array([np.nan]), np.array([np.inf]), np.array(["a"]),
                                 np.array([1 + 1j])])
def test_bad_values_are_entropy_error(bad: np.ndarray) -> None:
    with pytest.raises(EntropyError):
        quantize(bad, 7)


@pytest.mark.parametrize("bad", [np.array([0.5]), np.array([QMAX + 1]),
                                 np.array([-(2**63)], dtype=np.int64),
                                 np.array([2**64 - 1], dtype=np.uint64)])
def test_dequantize_rejects_non_symbols(bad: np.ndarray) -> None:
    with pytest.raises(EntropyError):
        dequantize(bad, 7)


def test_quantize_track_holds_values_inside_the_dead_zone() -> None:
    x = np.array([[0.0], [0.7], [1.0], [1.7], [0.1], [-0.6]]) / 64  # in grid steps at precision 6
    assert quantize_track(x, 6, 0.0).tolist() == quantize(x, 6).tolist()  # h = 0: plain rounding
    # h = 0.3: move only when more than 0.8 steps away from the held value
    assert quantize_track(x, 6, 0.3)[:, 0].tolist() == [0, 0, 1, 1, 0, 0]
    assert quantize_track(x, 6, 0.3, prev=np.array([2]))[:, 0].tolist() == [0, 0, 1, 1, 0, 0]
    assert quantize_track(x[1:3], 6, 0.3, prev=np.array([1]))[:, 0].tolist() == [1, 1]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 1.5))
def test_quantize_track_error_is_bounded_and_it_never_changes_more_often(seed: int, h: float) -> None:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(0, 0.01, (40, 3)), axis=0)
    plain, held = quantize(x, 6), quantize_track(x, 6, h)
    assert np.all(np.abs(held - x * 64) <= 0.5 + h + 1e-9)
    assert np.count_nonzero(np.diff(held, axis=0)) <= np.count_nonzero(np.diff(plain, axis=0))


def test_quantize_track_checks_its_arguments() -> None:
    x = np.zeros((3, 2))
    with pytest.raises(ConfigError):
        quantize_track(x, 6, 2.0)
    with pytest.raises(ConfigError):
        quantize_track(x, 6, -0.1)
    with pytest.raises(EntropyError):
        quantize_track(np.zeros(3), 6, 0.3)
    with pytest.raises(EntropyError):
        quantize_track(x, 6, 0.3, prev=np.zeros(3, np.int32))
