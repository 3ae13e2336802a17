"""Bjontegaard delta rate and delta metric between two rate-distortion curves.

* :func:`bd_rate`: the average rate difference of curve B against curve A at equal
  quality, in percent (``-20`` means B needs 20 % fewer bits). Log-rate is modelled as
  a function of the metric on each curve, the two models are integrated over the
  metric interval both curves cover, and ``100 * (exp(mean log-rate difference) - 1)``
  is returned.
* :func:`bd_metric`: the average metric difference ``B - A`` at equal rate (BD-PSNR for
  PSNR), in the metric's units, over the log-rate interval both curves cover.

Two models (``method=``):

* ``"cubic"``: the original Bjontegaard method (VCEG-M33): a least-squares cubic
  polynomial through the points (exact through 4 points).
* ``"pchip"``: piecewise cubic Hermite interpolation (Fritsch-Carlson monotone slopes,
  as MATLAB's / SciPy's ``pchip``), the variant the JVET common test conditions use
  because it does not overshoot between points. It needs only 2 points.

Lower-is-better metrics (LPIPS, DISTS): the BD-rate needs no sign change, since it
compares rates at equal metric values whatever the metric's direction, and the
points are ordered by metric value internally. The BD-metric stays ``B - A``, so a
*negative* BD-LPIPS means B is better. Pass ``higher_is_better=False`` for such
metrics: each curve is then checked to improve (decrease) from its lowest to its
highest rate, which catches swapped arguments and mislabelled metrics.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from avfc.errors import ConfigError

__all__ = ["bd_rate", "bd_metric", "pchip_slopes", "pchip_integral"]

Method = Literal["cubic", "pchip"]
_MAX_POINTS = 1000


def _curve(rate: Sequence[float], metric: Sequence[float], name: str, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RD curve; return ``(log_rate, metric)`` as float64 arrays."""
    try:
        r = np.asarray(rate, dtype=np.float64)
        m = np.asarray(metric, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"curve {name}: rates and metric values must be numbers ({exc})") from exc
    if r.ndim != 1 or m.ndim != 1 or r.shape != m.shape:
        raise ConfigError(f"curve {name}: rate and metric must be 1-D and of equal length, got {r.shape} and {m.shape}")
    if not 2 <= r.size <= _MAX_POINTS:
        raise ConfigError(f"curve {name}: needs 2 to {_MAX_POINTS} points, got {r.size}")
    if not (np.isfinite(r).all() and np.isfinite(m).all()):
        raise ConfigError(f"curve {name}: rates and metric values must be finite")
    if (r <= 0).any():
        raise ConfigError(f"curve {name}: rates must be > 0")
    lo, hi = m[np.argmin(r)], m[np.argmax(r)]
    if (hi < lo) if higher_is_better else (hi > lo):
        word = "higher" if higher_is_better else "lower"
        raise ConfigError(
            f"curve {name}: quality at the highest rate ({hi:g}) is worse than at the lowest ({lo:g}) "
            f"for a {word}-is-better metric; check higher_is_better and the argument order"
        )
    return np.log(r), m


def _check_distinct(x: np.ndarray, what: str, name: str) -> None:
    if np.unique(x).size != x.size:
        raise ConfigError(f"curve {name}: {what} values must be distinct")


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the monotone piecewise cubic Hermite interpolant.

    Same rule as MATLAB's ``pchip`` and ``scipy.interpolate.PchipInterpolator``:
    weighted harmonic mean of the neighbouring secant slopes (0 at a local extremum),
    non-centred three-point formula at the ends, limited to keep monotonicity.
    ``x`` must be strictly increasing with at least 2 points.
    """
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.size
    if n == 2:
        return np.array([delta[0], delta[0]])
    d = np.zeros(n)
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    d[0] = _edge_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _edge_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _edge_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return float(d)


def pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` (inside ``[x[0], x[-1]]``) of the pchip interpolant of ``(x, y)``."""
    d = pchip_slopes(x, y)

    def antiderivative(v: float) -> float:
        k = int(np.clip(np.searchsorted(x, v, side="right") - 1, 0, x.size - 2))
        full = 0.0
        for j in range(k):  # whole intervals before k
            hj = x[j + 1] - x[j]
            full += hj * (y[j] + y[j + 1]) / 2 + hj * hj * (d[j] - d[j + 1]) / 12
        hk = x[k + 1] - x[k]
        t = (v - x[k]) / hk
        # integrals from 0 to t of the Hermite basis functions h00, h10, h01, h11
        i00 = t**4 / 2 - t**3 + t
        i10 = t**4 / 4 - 2 * t**3 / 3 + t**2 / 2
        i01 = -(t**4) / 2 + t**3
        i11 = t**4 / 4 - t**3 / 3
        part = hk * (y[k] * i00 + hk * d[k] * i10 + y[k + 1] * i01 + hk * d[k + 1] * i11)
        return full + part

    return antiderivative(hi) - antiderivative(lo)


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over ``[lo, hi]`` of the least-squares cubic through ``(x, y)`` (fit on centred x)."""
    centre, scale = float(np.mean(x)), float(np.ptp(x))
    coeffs = np.polyfit((x - centre) / scale, y, 3)
    prim = np.polyint(coeffs)
    return scale * float(np.polyval(prim, (hi - centre) / scale) - np.polyval(prim, (lo - centre) / scale))


def _mean_difference(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, method: str, what: str) -> float:
    """Mean of ``f_b - f_a`` over the common x interval, ``f`` the chosen model of y(x)."""
    if method not in ("cubic", "pchip"):
        raise ConfigError(f"method must be 'cubic' or 'pchip', got {method!r}")
    for name, x in (("A", xa), ("B", xb)):
        _check_distinct(x, what, name)
        if method == "cubic" and x.size < 4:
            raise ConfigError(f"curve {name}: the cubic method needs at least 4 points, got {x.size}")
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if not hi > lo:
        raise ConfigError(f"the two curves do not overlap in {what}: nothing to compare")
    if method == "cubic":
        ia, ib = _cubic_integral(xa, ya, lo, hi), _cubic_integral(xb, yb, lo, hi)
    else:
        oa, ob = np.argsort(xa), np.argsort(xb)
        ia = pchip_integral(xa[oa], ya[oa], lo, hi)
        ib = pchip_integral(xb[ob], yb[ob], lo, hi)
    return (ib - ia) / (hi - lo)


def bd_rate(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    method: Method = "pchip",
    higher_is_better: bool = True,
) -> float:
    """BD-rate of curve B against anchor A, in percent (negative: B saves bits).

    Args:
        rate_a, metric_a: anchor curve (any rate unit, same for both curves).
        rate_b, metric_b: tested curve.
        method: ``"pchip"`` (JVET) or ``"cubic"`` (VCEG-M33).
        higher_is_better: ``False`` for LPIPS / DISTS (used to check the curves).

    Raises:
        ConfigError: malformed curves, too few points, duplicate metric values, no
            overlapping quality range, or curves that trend against ``higher_is_better``.
    """
    la, ma = _curve(rate_a, metric_a, "A", higher_is_better)
    lb, mb = _curve(rate_b, metric_b, "B", higher_is_better)
    return 100.0 * float(np.expm1(_mean_difference(ma, la, mb, lb, method, "metric")))


def bd_metric(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    method: Method = "pchip",
    higher_is_better: bool = True,
) -> float:
    """BD-metric: mean ``metric_B - metric_A`` at equal rate, in the metric's units.

    Positive means B is better for higher-is-better metrics (BD-PSNR), negative means B
    is better for lower-is-better ones (LPIPS, DISTS). Arguments and errors as in
    :func:`bd_rate` (duplicate *rates* are rejected here).
    """
    la, ma = _curve(rate_a, metric_a, "A", higher_is_better)
    lb, mb = _curve(rate_b, metric_b, "B", higher_is_better)
    return _mean_difference(la, ma, lb, mb, method, "log-rate")
