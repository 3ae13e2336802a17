"""Synthetic speech-like signals and the measurements the audio tests share."""

from __future__ import annotations

import numpy as np

SR = 16000


def bursty_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced 'syllables': harmonics of a gliding 90-170 Hz pitch, gated on and off at random.

    Random burst lengths (100-300 ms) and gaps (100-200 ms) make the envelope aperiodic,
    so envelope cross-correlation has a single clear peak.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 130 + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    gate = np.zeros_like(x)
    pos = int(0.05 * SR)
    while pos < len(x):
        on, off = int(rng.integers(1600, 4800)), int(rng.integers(1600, 3200))
        gate[pos:pos + on] = rng.uniform(0.3, 1.0)
        pos += on + off
    ramp = np.hanning(65)
    gate = np.convolve(gate, ramp / ramp.sum(), "same")
    return (0.3 * x * gate).astype(np.float32)


def lag_of(ref: np.ndarray, est: np.ndarray, max_lag: int) -> int:
    """Lag in samples at the cross-correlation peak (positive: ``est`` is late)."""
    a = ref.astype(np.float64) - ref.mean()
    b = est.astype(np.float64) - est.mean()
    n = len(a)
    cc = np.fft.irfft(np.fft.rfft(b, 2 * n) * np.conj(np.fft.rfft(a, 2 * n)))
    window = np.r_[cc[-max_lag:], cc[:max_lag + 1]]
    return int(np.argmax(window)) - max_lag


def log_envelope(x: np.ndarray, width: int = 160) -> np.ndarray:
    """Log RMS envelope over a sliding 10 ms window."""
    power = np.convolve(x.astype(np.float64) ** 2, np.ones(width) / width, "same")
    return np.log(np.sqrt(power) + 1e-3)


def spectral_corr(x: np.ndarray, y: np.ndarray, n_fft: int = 512, hop: int = 256) -> float:
    """Correlation of log STFT magnitudes below 4 kHz (harmonics and envelope, not phase)."""
    def logspec(s: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(s.astype(np.float64), n_fft)[::hop]
        mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))[:, :n_fft // 4]
        return np.log(mag + 1e-3)
    return float(np.corrcoef(logspec(x).ravel(), logspec(y).ravel())[0, 1])
