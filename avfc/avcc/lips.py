"""Lips from speech: keypoints made from decoded 700C fields, no motion sent.

Integer arithmetic only, so every decoder makes the same keypoints. For frame ``t`` the
model looks at audio frames ``t-history .. t+lookahead``; with ``e``, ``v`` the energy and
voicing indexes of :mod:`avfc.avcc.motion_pred` and ``b = vq1 >> VQ_BUCKET_SHIFT``
(``VQ_BUCKETS`` = unknown) of each window frame ``l``::

    num[t, c] = bias[c] + sum_l energy[l, e_l, c] + voiced[l, v_l, c] + vq[l, b_l, c]
    sm[t, c]  = num[t-1, c] + 2 num[t, c] + num[t+1, c]        (edges repeated)
    off[t, c] = (sm[t, c] + 2**(shift+1)) >> (shift + 2)
    off[t, c] -= (sum of off[t, c'] over channels c' of the same axis) // (channels per axis)
    out[t, c] = clip(ref_q[c] + off[t, c], -QMAX, QMAX)

The last step removes the common motion of each axis (``c % kp_dim``), so the head stays
where the key picture has it and only the shape of the keypoint set (mouth and jaw) moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avfc.avcc.motion_pred import (
    ENERGY_UNKNOWN,
    MAX_HISTORY,
    MAX_SHIFT,
    MAX_WEIGHT,
    VOICED_UNKNOWN,
    audio_indexes,
    check_audio_rows,
    check_int_array,
    meta_array,
)
from avfc.entropy.quant import QMAX, check_symbols
from avfc.errors import EntropyError

VQ_BUCKET_SHIFT = 5
VQ_BUCKETS = 512 >> VQ_BUCKET_SHIFT
MAX_FRAMES = 1 << 16
_FORMAT_VERSION = 1


def lips_target(q: np.ndarray, ref_q: np.ndarray, kp_dim: int = 2) -> np.ndarray:
    """Training target: ``q - ref_q`` with each axis' mean over its channels removed (float64)."""
    off = np.asarray(q, np.float64) - np.asarray(ref_q, np.float64)[None, :]
    out = off.copy()
    for axis in range(kp_dim):
        out[:, axis::kp_dim] -= off[:, axis::kp_dim].mean(axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class LipsFromSpeech:
    """Integer model: 700C fields -> keypoints around the key picture's (see the module doc)."""

    history: int
    lookahead: int
    kp_dim: int
    shift: int
    bias: np.ndarray  # (C,)
    energy: np.ndarray  # (W, 17, C), W = history + lookahead + 1
    voiced: np.ndarray  # (W, 3, C)
    vq: np.ndarray  # (W, VQ_BUCKETS + 1, C)

    @property
    def num_channels(self) -> int:
        """Channels ``C``."""
        return int(self.bias.shape[0])

    @classmethod
    def create(cls, num_channels: int, history: int, lookahead: int, shift: int = 12, kp_dim: int = 2,
               **params: np.ndarray) -> "LipsFromSpeech":
        """A model with the given parameters (missing ones zero: the key picture held), validated.

        Raises:
            EntropyError: on a bad size or parameter.
        """
        c, w = int(num_channels), int(history) + int(lookahead) + 1
        arrays = {
            "lips.meta": np.array([_FORMAT_VERSION, c, history, lookahead, kp_dim, shift], np.int64),
            "lips.bias": np.zeros(c, np.int64),
            "lips.energy": np.zeros((w, ENERGY_UNKNOWN + 1, c), np.int64),
            "lips.voiced": np.zeros((w, VOICED_UNKNOWN + 1, c), np.int64),
            "lips.vq": np.zeros((w, VQ_BUCKETS + 1, c), np.int64),
        }
        for k, v in params.items():
            arrays[f"lips.{k}"] = np.asarray(v)
        return cls.from_arrays(arrays)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "lips.") -> "LipsFromSpeech":
        """Load from integer arrays (``<prefix>meta``, ``bias``, ``energy``, ``voiced``, ``vq``).

        Raises:
            EntropyError: if an array is missing, not integer, mis-shaped or out of range.
        """
        version, c, h, la, kp_dim, shift = meta_array(arrays, prefix + "meta", 6)
        if version != _FORMAT_VERSION:
            raise EntropyError(f"lips model format {version} is not supported")
        if (not 1 <= c <= 1024 or not 0 <= h <= MAX_HISTORY or not 0 <= la <= MAX_HISTORY
                or not 1 <= kp_dim <= 3 or c % kp_dim or not 1 <= shift <= MAX_SHIFT):
            raise EntropyError(f"lips model sizes out of range: C={c}, history={h}, lookahead={la}, "
                               f"kp_dim={kp_dim}, shift={shift}")
        w, m = h + la + 1, MAX_WEIGHT
        return cls(
            history=h, lookahead=la, kp_dim=kp_dim, shift=shift,
            bias=check_int_array(arrays, prefix + "bias", (c,), -m, m),
            energy=check_int_array(arrays, prefix + "energy", (w, ENERGY_UNKNOWN + 1, c), -m, m),
            voiced=check_int_array(arrays, prefix + "voiced", (w, VOICED_UNKNOWN + 1, c), -m, m),
            vq=check_int_array(arrays, prefix + "vq", (w, VQ_BUCKETS + 1, c), -m, m),
        )

    def to_arrays(self, prefix: str = "lips.") -> dict[str, np.ndarray]:
        """The parameters as int64 arrays (inverse of :meth:`from_arrays`)."""
        meta = [_FORMAT_VERSION, self.num_channels, self.history, self.lookahead, self.kp_dim, self.shift]
        return {
            prefix + "meta": np.array(meta, np.int64),
            prefix + "bias": self.bias.copy(),
            prefix + "energy": self.energy.copy(),
            prefix + "voiced": self.voiced.copy(),
            prefix + "vq": self.vq.copy(),
        }

    def generate(self, ref_q: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """Keypoints of ``T`` frames from the key picture's keypoints and the speech.

        Args:
            ref_q: ``(C,)`` ints, keypoints of the decoded key picture.
            audio: ``(T + history + lookahead, 4)`` 700C fields of audio frames
                ``first-history .. first+T-1+lookahead`` (a row of -1 where unknown).

        Returns:
            ``(T, C)`` int32 keypoints on the stream's grid.

        Raises:
            EntropyError: on a bad shape, type or value.
        """
        ref = check_symbols(ref_q, "ref_q")
        if ref.shape != (self.num_channels,):
            raise EntropyError(f"ref_q must have shape ({self.num_channels},), got {ref.shape}")
        rows_total = np.asarray(audio).shape[0] if np.asarray(audio).ndim == 2 else -1
        t_count = rows_total - self.history - self.lookahead
        if not 0 <= t_count <= MAX_FRAMES:
            raise EntropyError(f"audio must have T + {self.history + self.lookahead} rows with "
                               f"0 <= T <= {MAX_FRAMES}, got shape {np.asarray(audio).shape}")
        rows = check_audio_rows(audio, rows_total)
        if t_count == 0:
            return np.zeros((0, self.num_channels), np.int32)
        energy, voiced = audio_indexes(rows)
        vq = np.where(rows[:, 0] < 0, VQ_BUCKETS, rows[:, 0] >> VQ_BUCKET_SHIFT)
        num = np.tile(self.bias, (t_count, 1))
        for lag in range(self.history + self.lookahead + 1):
            sl = slice(lag, lag + t_count)
            num += self.energy[lag, energy[sl]] + self.voiced[lag, voiced[sl]] + self.vq[lag, vq[sl]]
        padded = np.vstack([num[:1], num, num[-1:]])
        sm = padded[:-2] + 2 * padded[1:-1] + padded[2:]
        off = (sm + (1 << (self.shift + 1))) >> (self.shift + 2)
        per_axis = self.num_channels // self.kp_dim
        for axis in range(self.kp_dim):
            off[:, axis::self.kp_dim] -= off[:, axis::self.kp_dim].sum(axis=1, keepdims=True) // per_axis
        return np.clip(ref.astype(np.int64)[None, :] + off, -QMAX, QMAX).astype(np.int32)
