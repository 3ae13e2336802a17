"""The integer FIR resamplers: exact DC gain, zero phase, band limits, chunk invariance."""

from __future__ import annotations

import numpy as np
import pytest

from avfc.audio.resample import (
    HALFBAND_16K,
    INTERP2_16K,
    THIRDBAND_48K,
    StreamDecimator,
    decimate,
    design_lowpass,
    interpolate,
    to_int16,
)
from avfc.errors import ConfigError


def test_taps_are_symmetric_with_exact_gain() -> None:
    for taps, gain in ((HALFBAND_16K, 1), (INTERP2_16K, 2), (THIRDBAND_48K, 1)):
        assert taps.dtype == np.int64 and len(taps) % 2 == 1
        assert np.array_equal(taps, taps[::-1]) and int(taps.sum()) == gain << 15
    with pytest.raises(ConfigError):
        design_lowpass(0.2, 64)
    with pytest.raises(ConfigError):
        design_lowpass(0.6, 63)


def tone(freq: float, rate: int, n: int) -> np.ndarray:
    return to_int16(0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate))


@pytest.mark.parametrize("taps, factor, rate, passed, stopped", [
    (HALFBAND_16K, 2, 16000, 1000, 4500), (THIRDBAND_48K, 3, 48000, 5000, 9000)])
def test_band_limits_and_zero_phase(taps: np.ndarray, factor: int, rate: int, passed: float,
                                    stopped: float) -> None:
    n = rate // 2
    inner = slice(200, n // factor - 200)
    ok = decimate(tone(passed, rate, n), taps, factor)
    expected = tone(passed, rate, n)[::factor]
    assert np.abs(ok[inner] - expected[inner]).max() <= 40  # no delay, ~0 dB: int16 units
    gone = decimate(tone(stopped, rate, n), taps, factor)
    assert np.abs(gone[inner]).max() < 16384 * 10 ** (-50 / 20)  # at least 50 dB down
    assert (decimate(np.full(1000, 1234), taps, factor)[100:-100] == 1234).all()  # exact DC gain


def test_interpolation_restores_a_tone() -> None:
    x8 = tone(700, 8000, 4000)
    y16 = interpolate(x8, INTERP2_16K, 2)
    assert len(y16) == 8000
    assert np.abs(y16[400:-400] - tone(700, 16000, 8000)[400:-400]).max() <= 40


@pytest.mark.parametrize("taps, factor", [(HALFBAND_16K, 2), (THIRDBAND_48K, 3)])
def test_stream_decimator_matches_one_shot(taps: np.ndarray, factor: int) -> None:
    rng = np.random.default_rng(factor)
    for n in (0, 1, 2, 5, 200, 9001):
        x = rng.integers(-32768, 32768, size=n)
        reference = decimate(x, taps, factor)
        assert len(reference) == -(-n // factor)
        dec = StreamDecimator(taps, factor)
        parts, pos = [], 0
        while pos < n:
            step = int(rng.integers(0, 700))
            parts.append(dec.push(x[pos:pos + step]))
            pos += step
        parts.append(dec.flush())
        assert np.array_equal(np.concatenate(parts), reference)


def test_to_int16_clips_and_rounds() -> None:
    assert to_int16(np.array([-2.0, -1.0, 0.0, 0.5 / 32767, 1.0, 3.0], np.float32)).tolist() == \
        [-32767, -32767, 0, 0, 32767, 32767]
