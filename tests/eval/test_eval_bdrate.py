"""Bjontegaard deltas on synthetic curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from avfc.errors import ConfigError
from avfc.eval.bdrate import bd_metric, bd_rate, pchip_integral, pchip_slopes

RATES = np.array([1.6, 2.5, 3.6, 5.2])  # kbps
PSNR = np.array([21.5, 22.3, 22.9, 23.4])
LPIPS = np.array([0.44, 0.33, 0.27, 0.22])  # lower is better


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_scaled_rate_gives_exact_percentage(method):
    assert bd_rate(RATES, PSNR, RATES * 0.8, PSNR, method=method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, RATES * 1.5, PSNR, method=method) == pytest.approx(50.0, abs=1e-9)
    # lower-is-better metric: same answer, no sign flip
    assert bd_rate(RATES, LPIPS, RATES * 0.8, LPIPS, method=method, higher_is_better=False) == pytest.approx(-20.0, abs=1e-9)
    # swapping the curves inverts the ratio: 1/0.8 - 1 = +25 %
    assert bd_rate(RATES * 0.8, PSNR, RATES, PSNR, method=method) == pytest.approx(25.0, abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_shifted_metric_gives_exact_delta(method):
    assert bd_metric(RATES, PSNR, RATES, PSNR + 0.7, method=method) == pytest.approx(0.7, abs=1e-9)
    delta = bd_metric(RATES, LPIPS, RATES, LPIPS - 0.03, method=method, higher_is_better=False)
    assert delta == pytest.approx(-0.03, abs=1e-9)  # negative BD-LPIPS: B is better


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_log_linear_curve(method):
    # PSNR = 20 + 3 ln(R): +1 dB at equal rate is a rate factor exp(-1/3) at equal PSNR
    r = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    got = bd_rate(r, 20 + 3 * np.log(r), r, 21 + 3 * np.log(r), method=method)
    assert got == pytest.approx(100 * (np.exp(-1 / 3) - 1), abs=1e-9)
    # B reaches A's quality at half the rate: +3 ln 2 dB at equal rate, and -50 % rate
    assert bd_metric(r, 20 + 3 * np.log(r), r * 0.5, 20 + 3 * np.log(r), method=method) == pytest.approx(
        3 * np.log(2), abs=1e-9
    )


def test_only_overlap_counts():
    # log-rate linear in quality: pchip reproduces the line exactly, and B's extra points
    # far outside A's quality range (one of them off the line) do not change the result
    ma = np.array([20.0, 21.0, 22.0, 23.0])
    mb = np.arange(17.0, 25.0)
    rate_a = np.exp(0.5 * ma - 10)
    rate_b = 0.8 * np.exp(0.5 * mb - 10)
    rate_b[0] *= 3.0  # at quality 17, far outside A's [20, 23]
    assert bd_rate(rate_a, ma, rate_b, mb, method="pchip") == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(rate_a, ma, rate_b[1:], mb[1:], method="cubic") == pytest.approx(-20.0, abs=1e-9)


def test_methods_differ_on_curved_data():
    # non-polynomial curve: both are estimates, close to each other but not identical
    r = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    a = 30 * (1 - np.exp(-0.4 * r))
    b = 30 * (1 - np.exp(-0.55 * r))
    cubic, pchip = bd_rate(r, a, r, b, method="cubic"), bd_rate(r, a, r, b, method="pchip")
    assert cubic < 0 and pchip < 0
    assert cubic != pytest.approx(pchip, abs=1e-6)
    assert abs(cubic - pchip) < 5.0


def test_pchip_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 6, 9):
        x = np.sort(rng.uniform(0, 10, n))
        y = rng.normal(size=n)
        p = interpolate.PchipInterpolator(x, y)
        np.testing.assert_allclose(pchip_slopes(x, y), p.derivative()(x), atol=1e-12)
        lo, hi = x[0] + 0.1 * (x[-1] - x[0]), x[-1] - 0.2 * (x[-1] - x[0])
        assert pchip_integral(x, y, lo, hi) == pytest.approx(float(p.integrate(lo, hi)), abs=1e-12)


def test_bad_curves():
    with pytest.raises(ConfigError, match="at least 4 points"):
        bd_rate(RATES[:3], PSNR[:3], RATES[:3], PSNR[:3], method="cubic")
    assert bd_rate(RATES[:2], PSNR[:2], RATES[:2] * 0.8, PSNR[:2], method="pchip") == pytest.approx(-20.0)
    with pytest.raises(ConfigError, match="do not overlap"):
        bd_rate(RATES, PSNR, RATES, PSNR + 5)
    with pytest.raises(ConfigError, match="worse than at the lowest"):
        bd_rate(RATES, LPIPS, RATES * 0.8, LPIPS)  # forgot higher_is_better=False
    with pytest.raises(ConfigError, match="worse than at the lowest"):
        bd_rate(RATES, PSNR, RATES, PSNR, higher_is_better=False)
    with pytest.raises(ConfigError, match="> 0"):
        bd_rate(np.array([0.0, 1, 2, 3]), PSNR, RATES, PSNR)
    with pytest.raises(ConfigError, match="distinct"):
        bd_rate(RATES, np.array([21.0, 22, 22, 23]), RATES, PSNR)
    with pytest.raises(ConfigError, match="equal length"):
        bd_rate(RATES, PSNR[:3], RATES, PSNR)
    with pytest.raises(ConfigError, match="finite"):
        bd_metric(RATES, np.array([21.0, np.nan, 22, 23]), RATES, PSNR)
    with pytest.raises(ConfigError, match="numbers"):
        bd_rate(["a", "b"], [1, 2], RATES, PSNR)
    with pytest.raises(ConfigError, match="method"):
        bd_rate(RATES, PSNR, RATES, PSNR, method="linear")
