"""SI-SDR, alignment, and the PESQ / STOI wrappers."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from avfc.errors import ConfigError, MediaError
from avfc.eval.audio_metrics import align, as_mono, pesq_wb, si_sdr, stoi

from ._synth import speech_like


def _sine_cosine(n: int = 16000, period: int = 80) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n)
    return np.sin(2 * np.pi * k / period), np.cos(2 * np.pi * k / period)  # orthogonal, zero mean


def test_si_sdr_known_value():
    s, c = _sine_cosine()
    assert si_sdr(s, s + 0.1 * c) == pytest.approx(20.0, abs=1e-9)  # noise power 1/100 of target
    assert si_sdr(s, s + 1.0 * c) == pytest.approx(0.0, abs=1e-9)
    # scale and offset invariance
    assert si_sdr(s, 5.0 * (s + 0.1 * c) + 0.3) == pytest.approx(20.0, abs=1e-9)


def test_si_sdr_extremes_and_int16():
    s, _ = _sine_cosine()
    assert si_sdr(s, 0.5 * s) == np.inf
    assert si_sdr(s, np.zeros_like(s)) == -np.inf
    pcm = np.round(s * 16000).astype(np.int16)
    assert si_sdr(pcm, s) > 70  # int16 is scaled, only rounding noise remains
    assert si_sdr(torch.from_numpy(s), torch.from_numpy(s + 0.1 * _sine_cosine()[1])) == pytest.approx(20.0, abs=1e-9)


def test_alignment_recovers_delay():
    x = speech_like(seconds=1.0)
    late = np.concatenate([np.zeros(37), x])  # decoded 37 samples late, and longer
    r, e, lag = align(x, late, max_lag=200)
    assert lag == 37 and len(r) == len(e) == len(x)
    np.testing.assert_array_equal(r, e)
    early = x[25:]
    assert align(x, early, max_lag=200)[2] == -25
    assert si_sdr(x, late) < 0  # misaligned: meaningless
    assert si_sdr(x, late, max_lag=200) == np.inf
    r0, e0, lag0 = align(x, late, max_lag=0)  # 0: only trims to the common length
    assert lag0 == 0 and len(r0) == len(x)


def test_bad_signals():
    s, _ = _sine_cosine()
    with pytest.raises(MediaError, match="mono"):
        si_sdr(np.stack([s, s]), np.stack([s, s]))
    with pytest.raises(MediaError, match="silent"):
        si_sdr(np.zeros(100), s[:100])
    with pytest.raises(MediaError, match="empty"):
        si_sdr(np.zeros(0), s)
    bad = s.copy()
    bad[3] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        si_sdr(s, bad)
    with pytest.raises(MediaError, match="float or int16"):
        as_mono(np.arange(10, dtype=np.int32))
    with pytest.raises(ConfigError, match="max_lag"):
        align(s, s, max_lag=-1)
    assert as_mono(np.ones((5, 1), np.float32)).shape == (5,)


def test_pesq_wb_behaviour():
    pytest.importorskip("pesq")
    x = speech_like()
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(x)) * np.sqrt(np.mean(x**2))
    clean = pesq_wb(x, x)
    assert clean == pytest.approx(4.64, abs=0.01)  # P.862.2 ceiling for identical signals
    scores = [pesq_wb(x, x + noise * 10 ** (-snr / 20)) for snr in (60, 40, 20)]
    assert clean > scores[0] > scores[1] > scores[2]
    assert pesq_wb(x, np.concatenate([np.zeros(160), x])) > 4.5  # P.862 aligns a 10 ms delay itself
    # another input rate is resampled to 16 kHz
    x48 = speech_like(sr=48000)
    assert pesq_wb(x48, x48, sr=48000) == pytest.approx(4.64, abs=0.01)
    with pytest.raises(MediaError, match="PESQ failed"):
        pesq_wb(x[:2000], x[:2000])  # 125 ms: shorter than P.862 accepts
    with pytest.raises(MediaError, match="all zeros"):
        pesq_wb(x, np.zeros_like(x))
    with pytest.raises(ConfigError, match="sample rate"):
        pesq_wb(x, x, sr=100)


def test_stoi_behaviour():
    pytest.importorskip("pystoi")
    x = speech_like()
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(len(x)) * np.sqrt(np.mean(x**2))
    assert stoi(x, x, 16000) == pytest.approx(1.0, abs=1e-6)
    values = [stoi(x, x + noise * 10 ** (-snr / 20), 16000) for snr in (20, 5, -5)]
    assert values[0] > values[1] > values[2]
    assert stoi(x, x + noise * 0.1, 16000, extended=True) < 1.0
    late = np.concatenate([np.zeros(80), x])
    assert stoi(x, late, 16000, max_lag=400) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(MediaError, match="STOI cannot be computed"):
        stoi(x[:2000], x[:2000], 16000)  # 125 ms: too few frames


def test_missing_optional_packages(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name in ("pesq", "pystoi"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    x = speech_like(seconds=0.5)
    with pytest.raises(ConfigError, match=r"avfc\[eval\]"):
        pesq_wb(x, x)
    with pytest.raises(ConfigError, match=r"avfc\[eval\]"):
        stoi(x, x, 16000)
