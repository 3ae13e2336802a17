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


def quantize_track(values: np.ndarray, precision: int = DEFAULT_PRECISION, hysteresis: float = 0.0,
                   prev: np.ndarray | None = None) -> np.ndarray:
    """Quantize a trajectory ``(T, C)`` frame by frame with a dead zone around the last value.

    With ``hysteresis`` ``h`` (in grid steps, ``0 <= h < 2``) a channel keeps its previous
    integer ``q`` while ``|x * 2**precision - q| <= 0.5 + h`` and otherwise takes
    ``rint(x * 2**precision)``: detector jitter of less than a step no longer costs motion
    bits, and the error stays below ``0.5 + h`` steps. ``prev`` (``(C,)`` integers) is the
    value before the first frame (``None``: the first frame is rounded plainly). ``h = 0`` is
    :func:`quantize` exactly. This is an encoder choice only: decoders see integers either way.

    Raises:
        ConfigError: bad precision or hysteresis. EntropyError: bad values or ``prev``.
    """
    q = quantize(values, precision)
    if not isinstance(hysteresis, (int, float, np.floating)) or not 0.0 <= float(hysteresis) < 2.0:
        raise ConfigError(f"hysteresis must be a number in [0, 2), got {hysteresis!r}")
    if q.ndim != 2:
        raise EntropyError(f"a trajectory must be (T, C), got shape {q.shape}")
    if hysteresis == 0.0 or len(q) == 0:
        return q
    x = np.asarray(values, dtype=np.float64) * float(2**check_precision(precision))
    cur = None if prev is None else check_symbols(prev, "prev").astype(np.int64)
    if cur is not None and cur.shape != (q.shape[1],):
        raise EntropyError(f"prev must have shape ({q.shape[1]},), got {cur.shape}")
    out = np.empty_like(q)
    for t in range(len(q)):
        cur = q[t] if cur is None else np.where(np.abs(x[t] - cur) > 0.5 + float(hysteresis), q[t], cur)
        out[t] = cur
    return out


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
