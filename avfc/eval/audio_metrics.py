"""Speech quality metrics for decoded audio: SI-SDR, wide-band PESQ and STOI.

Inputs are mono signals: 1-D numpy arrays (or ``(N, 1)`` / ``(1, N)``, or torch
tensors), float in ``[-1, 1]`` or int16 (scaled by 1/32768). Multi-channel audio is
rejected: mix it down first, the same way for reference and decoded audio.

Alignment and length handling (decoded speech is often delayed and a little longer or
shorter than the reference):

* :func:`si_sdr` and :func:`stoi` compare sample by sample. With ``max_lag=0`` (the
  default) the signals are used as given; with ``max_lag > 0`` the integer delay of
  ``est`` relative to ``ref`` within ``+-max_lag`` samples is estimated by
  cross-correlation (:func:`align`) and removed first. Then both are trimmed to the
  shorter length. A codec with a known, fixed delay should rather remove it itself and
  keep ``max_lag=0``: a searched lag also hides a real A/V sync error.
* :func:`pesq_wb` passes the full signals to ITU-T P.862.2, which does its own level
  and time alignment (it tolerates delay and different lengths); nothing is trimmed.

SI-SDR compares waveforms, so it only means something for waveform-preserving codecs:
a parametric vocoder such as Codec2 re-synthesises the phase, and scores far below 0 dB
(about -16 to -20 dB on real speech at 3200-700 bit/s) however intelligible it is, and a
cross-correlation lag search on its output is unreliable. Judge such codecs by PESQ and
STOI with their known delay removed.

PESQ and STOI come from the optional ``pesq`` and ``pystoi`` packages
(``pip install 'avfc[eval]'``); a missing package raises :class:`ConfigError`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from avfc.errors import ConfigError, MediaError

__all__ = ["as_mono", "align", "si_sdr", "pesq_wb", "stoi"]

_PESQ_WB_RATE = 16000


def as_mono(x: Any, name: str = "signal") -> np.ndarray:
    """Validate one mono signal and return it as float64 (int16 input scaled by 1/32768)."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise MediaError(f"{name}: expected a numpy array or tensor, got {type(x).__name__}")
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise MediaError(f"{name}: expected mono audio (N,), got shape {x.shape}; mix down first")
    if x.size == 0:
        raise MediaError(f"{name}: empty signal")
    if x.dtype == np.int16:
        return x.astype(np.float64) / 32768.0
    if x.dtype.kind != "f":
        raise MediaError(f"{name}: audio must be float or int16, got {x.dtype}")
    out = x.astype(np.float64)
    if not np.isfinite(out).all():
        raise MediaError(f"{name}: signal contains NaN or infinite samples")
    return out


def _estimate_lag(ref: np.ndarray, est: np.ndarray, max_lag: int) -> int:
    """Delay ``d`` maximising ``sum_n est[n + d] * ref[n]`` over ``|d| <= max_lag``."""
    n = len(ref) + len(est) - 1
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[int(np.argmax(corr[lags % size]))])


def align(ref: Any, est: Any, max_lag: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove the delay of ``est`` relative to ``ref`` and trim both to a common length.

    Args:
        ref: reference signal.
        est: decoded / estimated signal.
        max_lag: largest delay searched, in samples (``>= 0``; 0 only trims).

    Returns:
        ``(ref_aligned, est_aligned, lag)``; ``lag > 0`` means ``est`` was late by ``lag``
        samples (``est[n + lag]`` matches ``ref[n]``).
    """
    r, e = as_mono(ref, "reference"), as_mono(est, "estimate")
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise ConfigError(f"max_lag must be an integer >= 0 (samples), got {max_lag!r}")
    lag = _estimate_lag(r, e, min(int(max_lag), len(r) + len(e) - 2)) if max_lag > 0 else 0
    if lag > 0:
        e = e[lag:]
    elif lag < 0:
        r = r[-lag:]
    n = min(len(r), len(e))
    if n == 0:
        raise MediaError("signals do not overlap after alignment")
    return r[:n], e[:n], lag


def si_sdr(ref: Any, est: Any, max_lag: int = 0) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019).

    Both signals are made zero-mean; ``target = (<est, ref> / ||ref||^2) ref``,
    ``SI-SDR = 10 log10(||target||^2 / ||est - target||^2)``. A perfect (scaled) copy
    gives ``inf``; an all-zero estimate gives ``-inf``. See the module docs for
    ``max_lag`` and length handling.

    Raises:
        MediaError: bad signals, or a silent reference (SI-SDR is undefined).
    """
    r, e, _ = align(ref, est, max_lag)
    r = r - r.mean()
    e = e - e.mean()
    ref_energy = float(np.dot(r, r))
    if ref_energy <= 0.0:
        raise MediaError("reference is silent (constant): SI-SDR is undefined")
    target = (float(np.dot(e, r)) / ref_energy) * r
    noise = e - target
    t_energy, n_energy = float(np.dot(target, target)), float(np.dot(noise, noise))
    if t_energy == 0.0:
        return float("-inf")
    if n_energy == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(t_energy / n_energy))


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    try:
        from math import gcd

        from scipy.signal import resample_poly
    except ImportError as exc:  # scipy comes with pystoi; pesq alone does not need it
        raise ConfigError(f"resampling {sr_in} Hz to {sr_out} Hz needs scipy: pip install scipy") from exc
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)


def _check_rate(sr: int) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 4000 <= int(sr) <= 384000:
        raise ConfigError(f"sample rate must be an integer in [4000, 384000] Hz, got {sr}")
    return int(sr)


def pesq_wb(ref: Any, est: Any, sr: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO, from about 1.0 (bad) to 4.64 (transparent).

    Signals at another rate are resampled to 16 kHz (polyphase, scipy). No trimming or
    alignment is done here: P.862.2 aligns internally.

    Raises:
        ConfigError: ``pesq`` not installed, or a bad sample rate.
        MediaError: bad or all-zero signals, or PESQ finds them too short (< 0.25 s) or
            without speech.
    """
    try:
        import pesq as pesq_pkg
    except ImportError as exc:
        raise ConfigError("pesq_wb needs the 'pesq' package: pip install 'avfc[eval]' (or pip install pesq)") from exc
    rate = _check_rate(sr)
    r = _resample(as_mono(ref, "reference"), rate, _PESQ_WB_RATE)
    e = _resample(as_mono(est, "estimate"), rate, _PESQ_WB_RATE)
    for name, x in (("reference", r), ("estimate", e)):
        if not np.any(x):
            raise MediaError(f"{name} is all zeros: PESQ is undefined for a silent signal")
    try:
        return float(pesq_pkg.pesq(_PESQ_WB_RATE, r, e, mode="wb"))
    except (pesq_pkg.PesqError, ValueError) as exc:  # the C core reports some failures as ValueError
        raise MediaError(f"PESQ failed: {type(exc).__name__}: {exc}") from exc


def stoi(ref: Any, est: Any, sr: int, extended: bool = False, max_lag: int = 0) -> float:
    """STOI (Taal et al. 2011), or extended STOI with ``extended=True``; about 0..1, higher is better.

    Computed by ``pystoi`` (which resamples to 10 kHz and drops silent frames). See the
    module docs for ``max_lag`` and length handling.

    Raises:
        ConfigError: ``pystoi`` not installed, or a bad sample rate.
        MediaError: bad signals, or too little speech left after silence removal
            (``pystoi`` would warn and return 1e-5).
    """
    try:
        from pystoi import stoi as pystoi_stoi
    except ImportError as exc:
        raise ConfigError("stoi needs the 'pystoi' package: pip install 'avfc[eval]' (or pip install pystoi)") from exc
    rate = _check_rate(sr)
    r, e, _ = align(ref, est, max_lag)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(r, e, rate, extended=extended))
    for w in caught:
        if "Not enough STFT frames" in str(w.message):
            raise MediaError(f"STOI cannot be computed: {w.message}")
    return value
