"""Speech-conditioned motion coding: keypoint residuals from a predictor that hears the speech.

Integer arithmetic only (numpy int64 and Python ints, floor shifts), so encoder and decoder
compute identical predictions and table indexes on any machine.

**Predictor.** For frame ``t`` with the two previous decoded frames ``p1 = q[t-1]``,
``p2 = q[t-2]`` and the 700C fields of audio frames ``t-H..t`` (``H = history``), the base
numerator of channel ``c`` (fixed point, ``shift`` fractional bits) is::

    base[c] = bias[c] + sum_j w_delta[c, j] * (p1[j] - p2[j])
              + sum_l energy[l, e_l, c] + voiced[l, v_l, c]

where ``e_l`` is the energy index of audio frame ``t-H+l`` (16 = unknown) and ``v_l`` is 0
(unvoiced, pitch 0), 1 (voiced) or 2 (unknown). Channels are then coded in order; channel
``c``'s prediction also uses the residuals ``r[0..c-1]`` already coded in the same frame::

    num[c]  = base[c] + sum_{j<c} cross[c, j] * r[j]
    pred[c] = clip(p1[c] + ((num[c] + 2**(shift-1)) >> shift), -QMAX, QMAX)

The keypoints of a face move together, so the in-frame term carries most of the gain; the
speech terms are measured separately (benchmarks/avcc_motion.py).

**Table index.** Each channel keeps the backward adaptation state of
:mod:`avfc.entropy.tables` (mean ``|residual|``, ``update_state``). Channel ``c`` uses::

    index[c] = clip(scale_index(state[c]) + index_offset[act, mag], 0, NUM_SCALES - 1)

with ``act`` the speech activity of audio frame ``t`` (0 unknown, 1 silence: energy
``<= SILENCE_ENERGY``, 2 speech) and ``mag`` the context of the residuals already coded in
this frame (0 for channel 0, then 1 + ``min(sum |r[0..c-1]|, MAG_LEVELS - 2)``).

**Packet** (``T`` frames of ``C`` channels; ``T``, ``C`` come from the container). Symbols in
decoding order: an INTRA packet first codes frame 0 exactly as :mod:`avfc.entropy.motion`
(side parameter ``ki``, then ``q[0]`` with table ``ki``). If frames remain, side parameter
``k0`` (uniform over ``NUM_SCALES``) sets every channel's state to ``initial_state(k0)``;
then every remaining frame, channel by channel, its residual ``q[t, c] - pred[c]`` with table
``index[c]``, using the escape scheme of :mod:`avfc.entropy.motion`. Frame ``t``'s
``past_q`` is ``(q[t-1], q[t-2])``; where fewer frames exist (frame 1 of an INTRA packet)
the oldest available frame is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from avfc.entropy.motion import (
    _LAPLACE_KEYS,
    _SIDE_KEY,
    _append_residual,
    _check_frame,
    _costs,
    _decode_intra_frame,
    _decode_residual,
    _intra_frame_symbols,
    next_states,
    _open_packet,
    _symbol_index,
    max_motion_bytes,
)
from avfc.entropy.quant import QMAX, check_symbols
from avfc.entropy.rans import ModelKey, encode_symbols
from avfc.entropy.tables import (
    INITIAL_STATE_Q12,
    NUM_SCALES,
    SCALE_THRESHOLDS_Q12,
    initial_state,
    scale_index,
    update_state,
)
from avfc.errors import EntropyError

#: 700C field columns (avfc.avcc.tokens.FIELD_NAMES_700C order) and their sizes
FIELD_SIZES: tuple[int, ...] = (512, 512, 16, 64)
ENERGY, PITCH = 2, 3
#: energy index of an unknown audio frame; voiced index of an unknown frame
ENERGY_UNKNOWN = 16
VOICED_UNKNOWN = 2
#: energies up to this index count as silence for the activity context
SILENCE_ENERGY = 2
NUM_ACTIVITY = 3
MAG_LEVELS = 5
#: bounds on the parameters (keep every sum far from int64 overflow)
MAX_HISTORY = 16
MAX_SHIFT = 24
MAX_WEIGHT = 1 << 24
_FORMAT_VERSION = 1


def check_audio_rows(audio: object, rows: int) -> np.ndarray:
    """Validate ``(rows, 4)`` 700C fields where a row of -1 means unknown; returns int64.

    Raises:
        EntropyError: wrong type, shape, or a field out of its range.
    """
    arr = np.asarray(audio)
    if arr.dtype.kind not in "iu":
        raise EntropyError(f"audio fields must be integers, got dtype {arr.dtype}")
    if arr.shape != (rows, 4):
        raise EntropyError(f"audio fields must have shape ({rows}, 4), got {arr.shape}")
    arr = arr.astype(np.int64)
    unknown = (arr == -1).all(axis=1)
    ok = (arr >= 0) & (arr < np.asarray(FIELD_SIZES, dtype=np.int64))
    if not (ok.all(axis=1) | unknown).all():
        raise EntropyError("an audio row must be four 700C fields in range, or all -1 (unknown)")
    return arr


def audio_indexes(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy index (0..16, 16 unknown) and voiced index (0, 1, 2 unknown) of checked rows."""
    unknown = audio[:, ENERGY] < 0
    energy = np.where(unknown, ENERGY_UNKNOWN, audio[:, ENERGY])
    voiced = np.where(unknown, VOICED_UNKNOWN, (audio[:, PITCH] > 0).astype(np.int64))
    return energy, voiced


def activity(audio_row: np.ndarray) -> int:
    """Speech-activity context of one checked audio row: 0 unknown, 1 silence, 2 speech."""
    e = int(audio_row[ENERGY])
    if e < 0:
        return 0
    return 1 if e <= SILENCE_ENERGY else 2


def check_int_array(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...],
                    low: int, high: int) -> np.ndarray:
    """``arrays[name]`` as int64 after checking presence, integer dtype, shape and range.

    Raises:
        EntropyError: if the array is missing or malformed.
    """
    if name not in arrays:
        raise EntropyError(f"parameter array {name!r} is missing")
    arr = np.asarray(arrays[name])
    if arr.dtype.kind not in "iu":
        raise EntropyError(f"parameter array {name!r} must be integers, got {arr.dtype}")
    if arr.shape != shape:
        raise EntropyError(f"parameter array {name!r} must have shape {shape}, got {arr.shape}")
    if arr.size and (int(arr.min()) < low or int(arr.max()) > high):
        raise EntropyError(f"parameter array {name!r} has values outside [{low}, {high}]")
    return arr.astype(np.int64)


def meta_array(arrays: dict[str, np.ndarray], name: str, size: int) -> list[int]:
    """The small header vector ``arrays[name]`` (``size`` ints) as Python ints.

    Raises:
        EntropyError: if missing or malformed.
    """
    return [int(v) for v in check_int_array(arrays, name, (size,), -(1 << 31), (1 << 31) - 1)]


@dataclass(frozen=True)
class SpeechMotionPredictor:
    """Integer predictor of a frame's keypoints from past decoded motion and 700C fields.

    Build it with :meth:`from_arrays` (or :meth:`create`); see the module doc for the maths.
    """

    history: int
    shift: int
    bias: np.ndarray  # (C,)
    w_delta: np.ndarray  # (C, C)
    energy: np.ndarray  # (H+1, 17, C)
    voiced: np.ndarray  # (H+1, 3, C)
    cross: np.ndarray  # (C, C), strictly lower triangular
    index_offset: np.ndarray  # (NUM_ACTIVITY, MAG_LEVELS)

    @property
    def num_channels(self) -> int:
        """Channels ``C`` the predictor was built for."""
        return int(self.bias.shape[0])

    @classmethod
    def create(cls, num_channels: int, history: int, shift: int = 12, **params: np.ndarray
               ) -> "SpeechMotionPredictor":
        """A predictor with the given parameters (missing ones zero: plain DPCM), validated.

        Raises:
            EntropyError: on a bad size or parameter.
        """
        c, h = int(num_channels), int(history)
        arrays = {
            "motion.meta": np.array([_FORMAT_VERSION, c, h, shift], dtype=np.int64),
            "motion.bias": np.zeros(c, np.int64),
            "motion.w_delta": np.zeros((c, c), np.int64),
            "motion.energy": np.zeros((h + 1, ENERGY_UNKNOWN + 1, c), np.int64),
            "motion.voiced": np.zeros((h + 1, VOICED_UNKNOWN + 1, c), np.int64),
            "motion.cross": np.zeros((c, c), np.int64),
            "motion.index_offset": np.zeros((NUM_ACTIVITY, MAG_LEVELS), np.int64),
        }
        for k, v in params.items():
            arrays[f"motion.{k}"] = np.asarray(v)
        return cls.from_arrays(arrays)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "motion.") -> "SpeechMotionPredictor":
        """Load from integer arrays (``<prefix>meta``, ``bias``, ``w_delta``, ``energy``, ...).

        Raises:
            EntropyError: if an array is missing, not integer, mis-shaped or out of range.
        """
        version, c, h, shift = meta_array(arrays, prefix + "meta", 4)
        if version != _FORMAT_VERSION:
            raise EntropyError(f"motion predictor format {version} is not supported")
        if not 1 <= c <= 1024 or not 0 <= h <= MAX_HISTORY or not 1 <= shift <= MAX_SHIFT:
            raise EntropyError(f"motion predictor sizes out of range: C={c}, history={h}, shift={shift}")
        w = MAX_WEIGHT
        cross = check_int_array(arrays, prefix + "cross", (c, c), -w, w)
        if np.triu(cross).any():
            raise EntropyError("motion predictor cross weights must be strictly lower triangular")
        return cls(
            history=h, shift=shift,
            bias=check_int_array(arrays, prefix + "bias", (c,), -w, w),
            w_delta=check_int_array(arrays, prefix + "w_delta", (c, c), -w, w),
            energy=check_int_array(arrays, prefix + "energy", (h + 1, ENERGY_UNKNOWN + 1, c), -w, w),
            voiced=check_int_array(arrays, prefix + "voiced", (h + 1, VOICED_UNKNOWN + 1, c), -w, w),
            cross=cross,
            index_offset=check_int_array(arrays, prefix + "index_offset", (NUM_ACTIVITY, MAG_LEVELS),
                                         -NUM_SCALES, NUM_SCALES),
        )

    def to_arrays(self, prefix: str = "motion.") -> dict[str, np.ndarray]:
        """The parameters as int64 arrays (inverse of :meth:`from_arrays`)."""
        return {
            prefix + "meta": np.array([_FORMAT_VERSION, self.num_channels, self.history, self.shift], np.int64),
            prefix + "bias": self.bias.copy(),
            prefix + "w_delta": self.w_delta.copy(),
            prefix + "energy": self.energy.copy(),
            prefix + "voiced": self.voiced.copy(),
            prefix + "cross": self.cross.copy(),
            prefix + "index_offset": self.index_offset.copy(),
        }

    # ------------------------------------------------------------------ inference
    def _check_past(self, past_q: object) -> np.ndarray:
        arr = check_symbols(past_q, "past_q")
        if arr.shape != (2, self.num_channels):
            raise EntropyError(f"past_q must have shape (2, {self.num_channels}), got {arr.shape}")
        return arr.astype(np.int64)

    def base(self, past: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """Base numerators ``(C,)`` int64 of checked ``past`` (2, C) and audio rows (H+1, 4)."""
        energy, voiced = audio_indexes(audio)
        lags = np.arange(self.history + 1)
        num = self.bias + self.w_delta @ (past[0] - past[1])
        num = num + self.energy[lags, energy].sum(axis=0) + self.voiced[lags, voiced].sum(axis=0)
        return num

    def round_prediction(self, p1: int, num: int) -> int:
        """``clip(p1 + round(num / 2**shift), -QMAX, QMAX)`` with a floor shift."""
        return min(QMAX, max(-QMAX, p1 + ((num + (1 << (self.shift - 1))) >> self.shift)))

    def predict(self, past_q: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction and table index of every channel before any channel of the frame is known.

        Args:
            past_q: ``(2, C)`` ints, the previous decoded frame then the one before it.
            audio: ``(history + 1, 4)`` 700C fields of audio frames ``t-history..t``; a row
                of -1 is unknown.

        Returns:
            ``(prediction, index)``: ``(C,)`` int64 keypoints on the grid and ``(C,)`` int64
            table indexes in ``[0, NUM_SCALES)`` for a channel state at the default
            ``initial_state(NUM_SCALES // 2)`` and no residual of this frame known yet
            (the packet coder refines both channel by channel, see the module doc).

        Raises:
            EntropyError: on a bad shape, type or value.
        """
        past = self._check_past(past_q)
        rows = check_audio_rows(audio, self.history + 1)
        num = self.base(past, rows)
        pred = np.array([self.round_prediction(int(p), int(n)) for p, n in zip(past[0], num)], np.int64)
        k = scale_index(initial_state(NUM_SCALES // 2))
        act = activity(rows[-1])
        idx = np.full(self.num_channels, self.table_index(k, act, 0), dtype=np.int64)
        return pred, idx

    def table_index(self, scale: int, act: int, mag: int) -> int:
        """``clip(scale + index_offset[act, mag], 0, NUM_SCALES - 1)``."""
        return min(NUM_SCALES - 1, max(0, scale + int(self.index_offset[act, mag])))


def mag_context(abs_sum: int, channel: int) -> int:
    """Magnitude context of channel ``channel`` given ``sum |r|`` of the earlier channels."""
    return 0 if channel == 0 else 1 + min(abs_sum, MAG_LEVELS - 2)


# ---------------------------------------------------------------------- packets
def _check_packet_args(q: object, predictor: SpeechMotionPredictor, audio: object,
                       prev: object) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    if not isinstance(predictor, SpeechMotionPredictor):
        raise EntropyError(f"predictor must be a SpeechMotionPredictor, got {type(predictor).__name__}")
    arr = check_symbols(q, "q")
    if arr.ndim != 2 or arr.shape[0] > 1024 or arr.shape[1] != predictor.num_channels:
        raise EntropyError(f"q must have shape (T <= 1024, {predictor.num_channels}), got {arr.shape}")
    rows = check_audio_rows(audio, arr.shape[0] + predictor.history)
    return arr.astype(np.int64), rows, _check_prev(prev, predictor.num_channels)


def _check_prev(prev: object, c: int) -> Optional[np.ndarray]:
    if prev is None:
        return None
    arr = check_symbols(prev, "prev")
    if arr.shape == (c,):
        arr = np.stack([arr, arr])
    if arr.shape != (2, c):
        raise EntropyError(f"prev must have shape (2, {c}) (last frame first) or ({c},), got {arr.shape}")
    return arr.astype(np.int64)


def _pasts(q: np.ndarray, prev: Optional[np.ndarray], t: int) -> np.ndarray:
    """``(q[t-1], q[t-2])`` within the packet, falling back on ``prev``, else repeating the oldest."""
    def frame(i: int) -> np.ndarray:
        if i >= 0:
            return q[i]
        if prev is not None:
            return prev[min(-i - 1, 1)]
        return q[0]
    return np.stack([frame(t - 1), frame(t - 2)])


class _FrameCoder:
    """Channel-by-channel prediction and context of one frame (shared by encoder and decoder)."""

    def __init__(self, predictor: SpeechMotionPredictor, past: np.ndarray, audio: np.ndarray) -> None:
        self.p = predictor
        self.p1 = past[0].tolist()
        self.base = predictor.base(past, audio).tolist()
        self.act = activity(audio[-1])
        self.res: list[int] = []
        self.abs_sum = 0

    def prediction(self, c: int) -> int:
        num = self.base[c]
        row = self.p.cross[c]
        for j, r in enumerate(self.res):
            if r:
                num += int(row[j]) * r
        return self.p.round_prediction(self.p1[c], num)

    def mag(self, c: int) -> int:
        return mag_context(self.abs_sum, c)

    def push(self, r: int) -> None:
        self.res.append(r)
        self.abs_sum += abs(r)


def residuals_and_contexts(q: np.ndarray, predictor: SpeechMotionPredictor, audio: np.ndarray,
                           prev: Optional[np.ndarray], first: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoder side: residuals and contexts ``act * MAG_LEVELS + mag`` of frames ``first..T-1``.

    ``q`` (T, C) int64, ``audio`` checked rows (T + history, 4), ``prev`` None or (2, C).
    """
    t_count, c_count = q.shape
    res = np.zeros((t_count - first, c_count), np.int64)
    ctx = np.zeros((t_count - first, c_count), np.int64)
    h = predictor.history
    for t in range(first, t_count):
        fc = _FrameCoder(predictor, _pasts(q, prev, t), audio[t:t + h + 1])
        for c in range(c_count):
            ctx[t - first, c] = fc.act * MAG_LEVELS + fc.mag(c)
            r = int(q[t, c]) - fc.prediction(c)
            res[t - first, c] = r
            fc.push(r)
    return res, ctx


def _best_initial_index(residuals: np.ndarray, offsets: np.ndarray) -> int:
    """Encoder choice of ``k0``: the initial state that codes the residuals in the fewest bits."""
    costs = _costs()
    symbols = _symbol_index(residuals)
    thresholds = np.asarray(SCALE_THRESHOLDS_Q12, dtype=np.int64)
    states = np.repeat(np.asarray(INITIAL_STATE_Q12, dtype=np.int64)[:, None], residuals.shape[1], axis=1)
    total = np.zeros(NUM_SCALES, dtype=np.int64)
    for t in range(residuals.shape[0]):
        scales = np.clip(np.searchsorted(thresholds, states, side="right") + offsets[t][None, :],
                         0, NUM_SCALES - 1)
        total += costs[scales, symbols[t][None, :]].sum(axis=1)
        states = next_states(states, residuals[t][None, :])
    return int(np.argmin(total))


def _packet_symbols(q: np.ndarray, predictor: SpeechMotionPredictor, audio: np.ndarray,
                    prev: Optional[np.ndarray]) -> list[tuple[int, ModelKey]]:
    out: list[tuple[int, ModelKey]] = []
    first = 0
    if prev is None:
        _intra_frame_symbols(out, q[0])
        first = 1
    if first >= q.shape[0]:
        return out
    res, ctx = residuals_and_contexts(q, predictor, audio, prev, first)
    offsets = predictor.index_offset.reshape(-1)[ctx]
    k0 = _best_initial_index(res, offsets)
    out.append((k0, _SIDE_KEY))
    states = [initial_state(k0)] * q.shape[1]
    for row, offs in zip(res.tolist(), offsets.tolist()):
        for c, (r, o) in enumerate(zip(row, offs)):
            j = min(NUM_SCALES - 1, max(0, scale_index(states[c]) + o))
            _append_residual(out, r, _LAPLACE_KEYS[j])
            states[c] = update_state(states[c], r)
    return out


def encode_predicted_motion(q: np.ndarray, predictor: SpeechMotionPredictor, audio: np.ndarray,
                            prev: Optional[np.ndarray] = None) -> bytes:
    """Encode a motion packet with speech-conditioned prediction (see the module doc).

    Args:
        q: ``(T, C)`` ints, ``|q| <= QMAX``, ``T <= 1024``, ``C`` the predictor's channels.
        predictor: the integer predictor (the decoder must use the same one).
        audio: ``(T + history, 4)`` 700C fields of audio frames ``first-history .. first+T-1``
            (a row of -1 where unknown: before the stream, lost or no audio).
        prev: ``None`` for an INTRA packet, else the last two decoded frames ``(2, C)`` (the
            last one first) or just the last one ``(C,)``.

    Returns:
        The rANS words as big-endian bytes (empty when ``T == 0``).

    Raises:
        EntropyError: on a bad argument.
    """
    arr, rows, ref = _check_packet_args(q, predictor, audio, prev)
    if arr.size == 0:
        return b""
    return encode_symbols(_packet_symbols(arr, predictor, rows, ref))


def decode_predicted_motion(data: bytes, num_frames: int, num_channels: int,
                            predictor: SpeechMotionPredictor, audio: np.ndarray,
                            prev: Optional[np.ndarray] = None) -> np.ndarray:
    """Decode a packet of :func:`encode_predicted_motion`; returns ``(T, C)`` int32.

    Raises:
        EntropyError: on any malformed input: bad counts or arguments, a length that is not a
            multiple of 4 or exceeds :func:`avfc.entropy.max_motion_bytes`, a value outside
            ``[-QMAX, QMAX]``, a non-canonical escape, data exhausted before the last symbol
            or left over after it.
    """
    limit = max_motion_bytes(num_frames, num_channels)
    t_count, c_count = int(num_frames), int(num_channels)
    if not isinstance(predictor, SpeechMotionPredictor):
        raise EntropyError(f"predictor must be a SpeechMotionPredictor, got {type(predictor).__name__}")
    if c_count != predictor.num_channels and t_count:
        raise EntropyError(f"the predictor codes {predictor.num_channels} channels, the packet has {c_count}")
    rows = check_audio_rows(audio, t_count + predictor.history)
    ref = _check_prev(prev, c_count)
    dec = _open_packet(data, limit)
    out = np.zeros((t_count, c_count), dtype=np.int64)
    if dec is None:
        return out.astype(np.int32)
    first = 0
    if ref is None:
        out[0] = _decode_intra_frame(dec, c_count)
        first = 1
    if first < t_count:
        states = [initial_state(dec.decode(_SIDE_KEY))] * c_count
        h = predictor.history
        for t in range(first, t_count):
            fc = _FrameCoder(predictor, _pasts(out, ref, t), rows[t:t + h + 1])
            row = []
            for c in range(c_count):
                j = predictor.table_index(scale_index(states[c]), fc.act, fc.mag(c))
                r = _decode_residual(dec, _LAPLACE_KEYS[j])
                row.append(fc.prediction(c) + r)
                fc.push(r)
                states[c] = update_state(states[c], r)
            _check_frame(row)
            out[t] = row
    dec.finish()
    return out.astype(np.int32)
