"""Integer, zero-phase FIR resampling by small integer factors.

The audio codecs run at other rates than the 16 kHz the rest of avfc uses: libcodec2 at
8 kHz, and FFmpeg's libopus decoder always outputs 48 kHz. These filters bridge the rates.

Everything is integer arithmetic on int16 sample values with Q15 taps, so the result is the
same on every machine and, for :class:`StreamDecimator`, the same whatever chunking the
input arrives in (a float FIR computed with BLAS or SIMD can round differently when the
data's alignment changes, and one flipped rounding can flip a Codec2 quantiser index).

Filters are odd-length, symmetric and centred, so they add no delay: output sample ``m`` of
a decimation by ``f`` is centred on input sample ``f * m``; input beyond either end counts
as zero (numpy's ``'same'`` convolution).
"""

from __future__ import annotations

import numpy as np

from avfc.errors import ConfigError

#: taps are integers summing to ``2**TAP_SHIFT`` (unity DC gain)
TAP_SHIFT = 15


def design_lowpass(cutoff: float, num_taps: int, beta: float = 8.0, gain: int = 1) -> np.ndarray:
    """Kaiser-windowed sinc low-pass, rounded to int64 taps summing to ``gain * 2**15``.

    ``cutoff`` is the -6 dB frequency as a fraction of the sample rate (0 < cutoff < 0.5);
    ``num_taps`` must be odd. The centre tap absorbs the rounding so the DC gain is exact
    and the taps stay symmetric.
    """
    if num_taps % 2 != 1 or not 0.0 < cutoff < 0.5:
        raise ConfigError("design_lowpass needs an odd number of taps and 0 < cutoff < 0.5")
    m = np.arange(num_taps) - (num_taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * m) * np.kaiser(num_taps, beta)
    h = h / h.sum() * (gain << TAP_SHIFT)
    taps = np.rint(h).astype(np.int64)
    centre = num_taps // 2
    taps[centre] += (gain << TAP_SHIFT) - int(taps.sum())
    return taps


#: 16 kHz -> 8 kHz (and back): -6 dB at 3.6 kHz
HALFBAND_16K = design_lowpass(3600 / 16000, 127)
#: 8 kHz -> 16 kHz interpolation: the same response, gain 2 to make up for the inserted zeros
INTERP2_16K = design_lowpass(3600 / 16000, 127, gain=2)
#: 48 kHz -> 16 kHz: -6 dB at 7.5 kHz (Opus at 16 kHz input codes at most 8 kHz of band)
THIRDBAND_48K = design_lowpass(7500 / 48000, 191)


def to_int16(pcm: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int64 array of int16 values (clipped, round half to even)."""
    return np.rint(np.clip(pcm.astype(np.float64), -1.0, 1.0) * 32767.0).astype(np.int64)


def _round_shift(acc: np.ndarray) -> np.ndarray:
    """Q15 accumulator -> int16 values (round half up, clip)."""
    return np.clip((acc + (1 << (TAP_SHIFT - 1))) >> TAP_SHIFT, -32768, 32767)


def decimate(x: np.ndarray, taps: np.ndarray, factor: int) -> np.ndarray:
    """Filter int16 values ``x`` and keep every ``factor``-th sample: ``ceil(len(x) / factor)`` out."""
    c = (len(taps) - 1) // 2
    x = np.asarray(x, dtype=np.int64)
    if len(x) == 0:
        return x
    full = np.convolve(x, taps)
    return _round_shift(full[c:c + len(x)][::factor])


def interpolate(x: np.ndarray, taps: np.ndarray, factor: int) -> np.ndarray:
    """Insert ``factor - 1`` zeros after each sample, then filter: ``factor * len(x)`` out."""
    x = np.asarray(x, dtype=np.int64)
    up = np.zeros(len(x) * factor, dtype=np.int64)
    up[::factor] = x
    return decimate(up, taps, 1)


class StreamDecimator:
    """:func:`decimate` over a signal that arrives in pieces; the output is identical.

    :meth:`push` returns every output sample whose filter support is complete;
    :meth:`flush` supplies the trailing zeros and returns the rest, ``ceil(n / factor)``
    samples in all for ``n`` input samples.
    """

    def __init__(self, taps: np.ndarray, factor: int) -> None:
        self._taps = taps
        self._factor = factor
        self._half = (len(taps) - 1) // 2
        # input with the left zero padding, from padded index self._base on
        self._buf = np.zeros(self._half, dtype=np.int64)
        self._base = 0
        self._next = 0  # next output index
        self._count = 0  # input samples pushed

    def push(self, x: np.ndarray) -> np.ndarray:
        """Add int16 values; return the output samples that are now complete."""
        x = np.asarray(x, dtype=np.int64)
        self._buf = np.concatenate([self._buf, x])
        self._count += len(x)
        return self._run(limit=None)

    def flush(self) -> np.ndarray:
        """Pad with zeros and return the remaining output samples."""
        self._buf = np.concatenate([self._buf, np.zeros(self._half, dtype=np.int64)])
        return self._run(limit=-(-self._count // self._factor))

    def _run(self, limit: int | None) -> np.ndarray:
        f, n_taps = self._factor, len(self._taps)
        end = self._base + len(self._buf)  # one past the last padded index held
        last = (end - n_taps) // f  # last output whose window fits
        if limit is not None:
            last = min(last, limit - 1)
        if last < self._next:
            return np.zeros(0, dtype=np.int64)
        start = f * self._next - self._base
        seg = self._buf[start:start + f * (last - self._next) + n_taps]
        out = _round_shift(np.convolve(seg, self._taps, mode="valid")[::f])
        self._next = last + 1
        drop = f * self._next - self._base
        self._buf = self._buf[drop:]
        self._base += drop
        return out
