"""Quantization of keypoint values: rounding rule, clipping, exactness, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfc.entropy import QMAX, dequantize, quantize
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
