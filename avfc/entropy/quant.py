"""Uniform scalar quantization of keypoint values to integers.

``q = clip(rint(value * 2**precision), -QMAX, QMAX)`` computed in float64, where
``np.rint`` rounds half to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2). Multiplying by a
power of two is exact in float64, so the only rounding is the one of ``np.rint``.
``QMAX = 2**15 - 1``, so every quantized value fits an int16 and its negation does too.
Dequantization ``q / 2**precision`` is exact in float32 (``|q| < 2**24``).
"""

from __future__ import annotations

import numpy as np

from avfc.errors import ConfigError, EntropyError

QMAX = 2**15 - 1
"""Largest magnitude of a quantized value (symmetric range ``[-QMAX, QMAX]``)."""

DEFAULT_PRECISION = 7
"""Default number of fractional bits: a step of 1/128 on keypoints nominally in [-1, 1]."""

MAX_PRECISION = 16
"""Largest accepted precision (fractional bits)."""


def check_precision(precision: int) -> int:
    """Return ``precision`` as an int after checking ``0 <= precision <= MAX_PRECISION``.

    Raises:
        ConfigError: if ``precision`` is not an integer in range.
    """
    if isinstance(precision, (bool, np.bool_)) or not isinstance(precision, (int, np.integer)):
        raise ConfigError(f"precision must be an integer, got {type(precision).__name__}")
    if not 0 <= int(precision) <= MAX_PRECISION:
        raise ConfigError(f"precision must be in [0, {MAX_PRECISION}], got {int(precision)}")
    return int(precision)


def quantize(values: np.ndarray, precision: int = DEFAULT_PRECISION) -> np.ndarray:
    """Quantize real values to integers with ``precision`` fractional bits.

    Computes ``clip(np.rint(values * 2**precision), -QMAX, QMAX)`` in float64 (ties round
    to even) and returns it as int32 with the shape of ``values``.

    Raises:
        ConfigError: if ``precision`` is out of range.
        EntropyError: if ``values`` is not a real numeric array or holds NaN or infinity.
    """
    p = check_precision(precision)
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise EntropyError(f"values cannot be read as an array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise EntropyError(f"values must be a real numeric array, got dtype {arr.dtype}")
    x = arr.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise EntropyError("values must be finite (found NaN or infinity)")
    q = np.clip(np.rint(x * float(2**p)), -QMAX, QMAX)
    return q.astype(np.int32)


def dequantize(q: np.ndarray, precision: int = DEFAULT_PRECISION) -> np.ndarray:
    """Map quantized integers back to reals: ``q / 2**precision`` as float32 (exact).

    Raises:
        ConfigError: if ``precision`` is out of range.
        EntropyError: if ``q`` is not an integer array or a value exceeds ``QMAX``.
    """
    p = check_precision(precision)
    arr = check_symbols(q, "q")
    return (arr.astype(np.float64) / float(2**p)).astype(np.float32)


def check_symbols(q: object, name: str) -> np.ndarray:
    """Return ``q`` as an int64 array after checking it is integer and within ``[-QMAX, QMAX]``.

    Raises:
        EntropyError: if ``q`` is not an integer array or holds an out-of-range value.
    """
    try:
        arr = np.asarray(q)
    except (TypeError, ValueError) as exc:
        raise EntropyError(f"{name} cannot be read as an array: {exc}") from exc
    if arr.dtype.kind not in "iu":
        raise EntropyError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < -QMAX or int(arr.max()) > QMAX):
        raise EntropyError(f"{name} holds a value outside [-{QMAX}, {QMAX}]")
    return arr.astype(np.int64)
