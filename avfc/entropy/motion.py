"""Motion (keypoint) packets: temporal DPCM + backward-adaptive Laplace tables + rANS.

A packet holds ``T`` frames of ``C`` quantized channels (``q``, int, ``|q| <= QMAX``).
``T`` and ``C`` are not in the packet: the container carries them. Symbols, in decoding
order (docs/bitstream.md, motion section, is normative):

1. INTRA packet (``prev is None``) only: side parameter ``ki`` (uniform over
   ``NUM_SCALES``), then frame 0 as residuals ``q[0, c] - 0`` with residual table ``ki``
   for every channel.
2. If frames remain: side parameter ``k0`` (uniform over ``NUM_SCALES``); every channel's
   adaptation state starts at ``initial_state(k0)``.
3. Each remaining frame ``t``, channels ``c = 0..C-1``: residual
   ``q[t, c] - pred[c]`` with residual table ``scale_index(state[c])``, where ``pred`` is
   the previous decoded frame (``prev`` for frame 0 of a non-intra packet); then
   ``state[c] = update_state(state[c], residual)``.

A residual ``r`` with ``|r| <= RESIDUAL_MAX`` is the symbol ``r + RESIDUAL_OFFSET``; any
other is ESCAPE (symbol 0) followed by ``y = 2r + 1`` if ``r >= 0`` else ``-2r`` (so
``512 <= y < 2**17``) as ``y & 511`` (uniform over 512), then ``y >> 9`` (uniform over
256, never 0). So the last symbol of a packet never has cumulative 0, the final ANS state
is never 0 before it, and a decoder that finds the state at 0 (data exhausted) before a
symbol knows the packet was shorter than the container claims.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from avfc.entropy.quant import QMAX, check_symbols
from avfc.entropy.rans import ModelKey, SymbolDecoder, encode_symbols, words_from_bytes
from avfc.entropy.tables import (
    ESCAPE,
    ESCAPE_HIGH_SIZE,
    ESCAPE_LOW_BITS,
    ESCAPE_LOW_SIZE,
    INITIAL_STATE_Q12,
    NUM_SCALES,
    RESIDUAL_MAX,
    RESIDUAL_OFFSET,
    SCALE_THRESHOLDS_Q12,
    STATE_CAP,
    STATE_FRAC_BITS,
    STATE_SHIFT,
    TABLE_TOTAL,
    initial_state,
    laplace_table,
    scale_index,
    update_state,
)
from avfc.errors import EntropyError

MAX_FRAMES = 1024
"""Most frames a motion packet may hold."""

MAX_CHANNELS = 1024
"""Most channels (values per frame) a motion packet may hold."""

_SIDE_KEY: ModelKey = ("uniform", NUM_SCALES)
_HIGH_KEY: ModelKey = ("uniform", ESCAPE_HIGH_SIZE)
_LOW_KEY: ModelKey = ("uniform", ESCAPE_LOW_SIZE)
_LAPLACE_KEYS: tuple[ModelKey, ...] = tuple(("laplace", j) for j in range(NUM_SCALES))
_ESCAPE_PAYLOAD_BITS = 17  # log2(ESCAPE_HIGH_SIZE * ESCAPE_LOW_SIZE)
_MAX_SYMBOL_BITS = 24 + _ESCAPE_PAYLOAD_BITS  # a residual costs at most this many bits
_SIDE_BITS = 5  # log2(NUM_SCALES)
_STATE_BITS = 64  # the ANS state flushed at the end


@lru_cache(maxsize=1)
def _costs() -> np.ndarray:
    """Encoder-only: code length in 1/65536 bit of every residual symbol, per scale."""
    freqs = np.stack([laplace_table(j) for j in range(NUM_SCALES)]).astype(np.float64)
    cost = np.rint(-np.log2(freqs / TABLE_TOTAL) * 65536.0).astype(np.int64)
    cost[:, ESCAPE] += _ESCAPE_PAYLOAD_BITS << 16
    cost.setflags(write=False)
    return cost


def _check_count(value: object, name: str, limit: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise EntropyError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) <= limit:
        raise EntropyError(f"{name} must be in [0, {limit}], got {int(value)}")
    return int(value)


def _check_packet(q: object) -> np.ndarray:
    arr = check_symbols(q, "q")
    if arr.ndim != 2:
        raise EntropyError(f"q must have shape (frames, channels), got {arr.shape}")
    _check_count(arr.shape[0], "number of frames", MAX_FRAMES)
    _check_count(arr.shape[1], "number of channels", MAX_CHANNELS)
    return arr


def _check_prev(prev: object, num_channels: int) -> np.ndarray:
    arr = check_symbols(prev, "prev")
    if arr.shape != (num_channels,):
        raise EntropyError(f"prev must have shape ({num_channels},), got {arr.shape}")
    return arr


def _symbol_index(residuals: np.ndarray) -> np.ndarray:
    """Residual-table symbol of each residual (ESCAPE where it does not fit)."""
    fits = np.abs(residuals) <= RESIDUAL_MAX
    return np.where(fits, residuals + RESIDUAL_OFFSET, ESCAPE)


def next_states(states: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Vectorised :func:`update_state` (the encoder's search follows the coder's adaptation with it) (numpy's ``>>`` on int64 is a floor shift)."""
    a = np.minimum(np.abs(residuals), STATE_CAP) << STATE_FRAC_BITS
    return states + ((a - states) >> STATE_SHIFT)


def _best_intra_index(values: np.ndarray) -> int:
    """Encoder choice of ``ki``: the scale that codes frame 0 in the fewest bits."""
    return int(np.argmin(_costs()[:, _symbol_index(values)].sum(axis=1)))


def _best_initial_index(residuals: np.ndarray) -> int:
    """Encoder choice of ``k0``: the initial state that codes the residuals in the fewest bits."""
    costs = _costs()
    symbols = _symbol_index(residuals)
    thresholds = np.asarray(SCALE_THRESHOLDS_Q12, dtype=np.int64)
    states = np.repeat(np.asarray(INITIAL_STATE_Q12, dtype=np.int64)[:, None],
                       residuals.shape[1], axis=1)
    total = np.zeros(NUM_SCALES, dtype=np.int64)
    for t in range(residuals.shape[0]):
        scales = np.searchsorted(thresholds, states, side="right")
        total += costs[scales, symbols[t][None, :]].sum(axis=1)
        states = next_states(states, residuals[t][None, :])
    return int(np.argmin(total))


def _append_residual(out: list[tuple[int, ModelKey]], r: int, key: ModelKey) -> None:
    if -RESIDUAL_MAX <= r <= RESIDUAL_MAX:
        out.append((r + RESIDUAL_OFFSET, key))
        return
    y = 2 * r + 1 if r >= 0 else -2 * r
    out.append((ESCAPE, key))
    out.append((y & (ESCAPE_LOW_SIZE - 1), _LOW_KEY))
    out.append((y >> ESCAPE_LOW_BITS, _HIGH_KEY))


def _decode_residual(dec: SymbolDecoder, key: ModelKey) -> int:
    symbol = dec.decode(key)
    if symbol != ESCAPE:
        return symbol - RESIDUAL_OFFSET
    low = dec.decode(_LOW_KEY)
    y = (dec.decode(_HIGH_KEY) << ESCAPE_LOW_BITS) | low
    r = (y - 1) >> 1 if y & 1 else -(y >> 1)
    if abs(r) <= RESIDUAL_MAX:
        raise EntropyError(f"escaped residual {r} would fit the residual table")
    return r


def _intra_frame_symbols(out: list[tuple[int, ModelKey]], values: np.ndarray) -> None:
    """Append the symbols of an INTRA packet's frame 0: side parameter ``ki``, then the values."""
    ki = _best_intra_index(values)
    out.append((ki, _SIDE_KEY))
    for v in values.tolist():
        _append_residual(out, v, _LAPLACE_KEYS[ki])


def _decode_intra_frame(dec: SymbolDecoder, num_channels: int) -> list[int]:
    """Decode an INTRA packet's frame 0 (inverse of :func:`_intra_frame_symbols`), range-checked."""
    key = _LAPLACE_KEYS[dec.decode(_SIDE_KEY)]
    values = [_decode_residual(dec, key) for _ in range(num_channels)]
    _check_frame(values)
    return values


def _open_packet(data: object, limit: int) -> SymbolDecoder | None:
    """A decoder over ``data`` after checking its type and its size against ``limit`` bytes
    (None when the packet is empty by construction, ``limit == 0``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EntropyError(f"data must be bytes, got {type(data).__name__}")
    view = memoryview(data)
    if view.nbytes > limit:
        raise EntropyError(f"packet of {view.nbytes} bytes exceeds the bound of {limit} bytes")
    if limit == 0:
        return None
    return SymbolDecoder(words_from_bytes(view.tobytes(), limit // 4))


def _packet_symbols(q: np.ndarray, prev: np.ndarray | None) -> list[tuple[int, ModelKey]]:
    """All ``(symbol, table)`` pairs of a packet, in decoding order."""
    out: list[tuple[int, ModelKey]] = []
    if prev is None:
        _intra_frame_symbols(out, q[0])
        residuals = np.diff(q, axis=0)
    else:
        residuals = np.diff(np.vstack([prev[None, :], q]), axis=0)
    if residuals.shape[0] == 0:
        return out
    k0 = _best_initial_index(residuals)
    out.append((k0, _SIDE_KEY))
    thresholds = np.asarray(SCALE_THRESHOLDS_Q12, dtype=np.int64)
    states = np.full(residuals.shape[1], initial_state(k0), dtype=np.int64)
    for row in residuals:
        scales = np.searchsorted(thresholds, states, side="right").tolist()
        for r, j in zip(row.tolist(), scales):
            _append_residual(out, r, _LAPLACE_KEYS[j])
        states = next_states(states, row)
    return out


def encode_motion(q: np.ndarray, prev: np.ndarray | None = None) -> bytes:
    """Encode a motion packet of quantized keypoints.

    Args:
        q: integers of shape ``(T, C)``, ``T, C <= 1024``, every ``|value| <= QMAX``.
        prev: ``None`` for an INTRA packet (decodable on its own), else the last decoded
            frame of the previous packet, integers of shape ``(C,)``.

    Returns:
        The rANS words as big-endian bytes (length a multiple of 4; empty when ``T * C == 0``).

    Raises:
        EntropyError: if ``q`` or ``prev`` has a wrong type, shape or value range.
    """
    arr = _check_packet(q)
    ref = None if prev is None else _check_prev(prev, arr.shape[1])
    if arr.size == 0:
        return b""
    return encode_symbols(_packet_symbols(arr, ref))


def estimate_motion_bits(q: np.ndarray, prev: np.ndarray | None = None) -> int:
    """Exact size in bits of ``encode_motion(q, prev)`` (for rate control).

    Raises:
        EntropyError: as :func:`encode_motion`.
    """
    return 8 * len(encode_motion(q, prev))


def max_motion_bytes(num_frames: int, num_channels: int) -> int:
    """Upper bound on the size of a valid packet of ``num_frames`` x ``num_channels``.

    Raises:
        EntropyError: if a count is not an integer in ``[0, 1024]``.
    """
    t = _check_count(num_frames, "num_frames", MAX_FRAMES)
    c = _check_count(num_channels, "num_channels", MAX_CHANNELS)
    if t * c == 0:
        return 0
    bits = 2 * _SIDE_BITS + t * c * _MAX_SYMBOL_BITS + _STATE_BITS
    return 4 * (bits // 32 + 2)


def decode_motion(
    data: bytes, num_frames: int, num_channels: int, prev: np.ndarray | None = None
) -> np.ndarray:
    """Decode a motion packet written by :func:`encode_motion`.

    Args:
        data: the packet bytes.
        num_frames: ``T`` (0..1024), from the container.
        num_channels: ``C`` (0..1024), from the container.
        prev: ``None`` for an INTRA packet, else the last decoded frame of the previous
            packet (shape ``(C,)``), exactly as given to the encoder.

    Returns:
        int32 array of shape ``(T, C)``.

    Raises:
        EntropyError: on any malformed input: bad counts, bad ``prev``, a length that is not
            a multiple of 4 or exceeds :func:`max_motion_bytes`, a decoded value outside
            ``[-QMAX, QMAX]``, a non-canonical escape, data exhausted before the last
            symbol or data left over after it.
    """
    limit = max_motion_bytes(num_frames, num_channels)
    t_count, c_count = int(num_frames), int(num_channels)
    ref = None if prev is None else _check_prev(prev, c_count)
    dec = _open_packet(data, limit)
    out = np.zeros((t_count, c_count), dtype=np.int32)
    if dec is None:
        return out
    if ref is None:
        pred = _decode_intra_frame(dec, c_count)
        out[0] = pred
        first = 1
    else:
        pred = ref.tolist()
        first = 0
    if first < t_count:
        states = [initial_state(dec.decode(_SIDE_KEY))] * c_count
        for t in range(first, t_count):
            row = []
            for c in range(c_count):
                r = _decode_residual(dec, _LAPLACE_KEYS[scale_index(states[c])])
                row.append(pred[c] + r)
                states[c] = update_state(states[c], r)
            _check_frame(row)
            out[t] = row
            pred = row
    dec.finish()
    return out


def _check_frame(values: list[int]) -> None:
    if values and (min(values) < -QMAX or max(values) > QMAX):
        raise EntropyError(f"decoded value outside [-{QMAX}, {QMAX}]")
