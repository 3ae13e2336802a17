"""AUDIO_CTX packets: Codec2 700C tokens coded by a learned integer context model + rANS.

A packet holds ``T`` tokens (``T <= MAX_FRAMES``; ``T`` is not in the packet, the container
carries it) and is self-contained: the context starts fresh at every packet. Each token is
split into its quantiser indexes (:mod:`avfc.avcc.tokens`) and coded field by field, frame by
frame, in this order (``prev`` is the previous frame of the packet, absent for frame 0):

1. ``energy`` (16 values), context ``0`` for frame 0, else ``1 + prev.energy`` (17).
2. ``pitch`` (64 values) as its *rank* given ``prev.pitch`` (:func:`pitch_order`), context
   ``2 * c + (energy >= 8)`` with ``c`` = 0 (frame 0), 1 (``prev.pitch == 0``), 2
   (``prev.pitch == 1``) or 3 (``prev.pitch >= 2``) (8 contexts).
3. frame 0: ``vq1`` (512 values). Other frames: a repeat flag (1 if ``vq1 == prev.vq1``),
   context ``2 * (energy == prev.energy) + (pitch == prev.pitch)`` (4), then ``vq1`` only if
   the flag is 0 (a coded ``vq1`` equal to ``prev.vq1`` is non-canonical and rejected).
   ``vq1`` context: ``2 * (pitch > 0) + (energy >= 8)`` (4).
4. ``vq2`` likewise: frame 0 codes the value; other frames a repeat flag with context
   ``2 * (vq1 == prev.vq1) + (energy == prev.energy)`` (4), then the value if not repeated;
   ``vq2`` has one context.

A model may be conditioned on a per-frame motion context ``m`` in ``0..M-1`` (``M =
motion_levels``): every context ``c`` above then becomes ``c * M + m``. With ``M == 1`` (the
shipped model) ``motion_ctx`` is ignored.

Every table is an integer frequency table (entries >= 1, sum ``2**24``) over the field's values
plus one reserved symbol: value ``v`` is table symbol ``v + 1`` and symbol 0 (frequency exactly
1) is never coded. So no coded symbol has cumulative 0, the ANS state is never 0 before the
last symbol, and a decoder that finds the state at 0 knows the data ran out. A decoded symbol 0
is malformed data. Everything that chooses a table is integer arithmetic on decoded values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np

from avfc.avcc.tokens import FIELD_BITS_700C, Fields700C, join_700c, split_700c
from avfc.entropy.rans import SymbolDecoder, TableSet, encode_table_symbols, words_from_bytes
from avfc.entropy.tables import TABLE_TOTAL
from avfc.errors import ConfigError, EntropyError, ModelMismatchError

MAX_FRAMES = 4096
"""Most tokens an AUDIO_CTX packet may hold."""

MAX_MOTION_LEVELS = 16
"""Most motion-context levels a model may be conditioned on."""

LAYOUT = 1
"""Version of the context layout described above (stored in the bundle as ``layout``)."""

#: table kinds in coding order: (bundle name, number of field values, base contexts)
KINDS: tuple[tuple[str, int, int], ...] = (
    ("energy", 1 << FIELD_BITS_700C[2], 17),
    ("pitch", 1 << FIELD_BITS_700C[3], 8),
    ("vq1_repeat", 2, 4),
    ("vq1", 1 << FIELD_BITS_700C[0], 4),
    ("vq2_repeat", 2, 4),
    ("vq2", 1 << FIELD_BITS_700C[1], 1),
)
ENERGY, PITCH, VQ1_REPEAT, VQ1, VQ2_REPEAT, VQ2 = range(len(KINDS))

_MAX_SYMBOLS_PER_FRAME = 6
_MAX_SYMBOL_BITS = 24  # every coded symbol has frequency >= 2**0 of 2**24
_STATE_BITS = 64


def _make_pitch_orders() -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    n = 1 << FIELD_BITS_700C[3]
    orders, ranks = [], []
    for prev in range(-1, n):
        if prev < 2:
            order = list(range(n))
        else:
            order = [0, 1] + sorted(range(2, n), key=lambda u: (abs(u - prev), u > prev))
        rank = [0] * n
        for r, v in enumerate(order):
            rank[v] = r
        orders.append(tuple(order))
        ranks.append(tuple(rank))
    return tuple(orders), tuple(ranks)


_PITCH_ORDERS, _PITCH_RANKS = _make_pitch_orders()


def pitch_order(prev_pitch: Optional[int]) -> tuple[int, ...]:
    """Pitch values by rank given the previous frame's pitch (``None`` at a packet start).

    Identity when ``prev_pitch`` is ``None``, 0 or 1; otherwise 0 and 1 (unvoiced, lowest)
    first, then the voiced values by distance to ``prev_pitch``, the lower one first on a tie.
    """
    return _PITCH_ORDERS[0 if prev_pitch is None else int(prev_pitch) + 1]


# A step gets (kind, context, value or None) and returns the value (known or decoded).
_Step = Callable[[int, int, Optional[int]], int]


def walk_packet(num_frames: int, step: _Step, known: Sequence[Fields700C] | None = None,
                motion: Sequence[int] | None = None, motion_levels: int = 1) -> list[Fields700C]:
    """Run the context model over one packet; the single definition of the symbol order.

    ``step(kind, context, value)`` is called for every coded symbol in decoding order, with
    ``value`` the field value (rank for pitch, 0/1 for a repeat flag) when ``known`` is given
    (encoding, training) or ``None`` (decoding); it returns the value. ``context`` already
    includes the motion context. Used alike by the encoder, the decoder and the trainer.

    Raises:
        EntropyError: if a decoded ``vq1``/``vq2`` repeats the previous one without its flag.
    """
    out: list[Fields700C] = []
    prev: Fields700C | None = None
    levels = int(motion_levels)
    for t in range(num_frames):
        cur = known[t] if known is not None else None
        m = int(motion[t]) if levels > 1 and motion is not None else 0

        def code(kind: int, ctx: int, value: Optional[int]) -> int:
            return step(kind, ctx * levels + m, value)

        energy = code(ENERGY, 0 if prev is None else 1 + prev.energy,
                      None if cur is None else cur.energy)
        loud = int(energy >= 8)
        if prev is None:
            pcls, prev_pitch = 0, None
        else:
            pcls, prev_pitch = min(prev.pitch, 2) + 1, prev.pitch
        rank_of = _PITCH_RANKS[0 if prev_pitch is None else prev_pitch + 1]
        rank = code(PITCH, 2 * pcls + loud, None if cur is None else rank_of[cur.pitch])
        pitch = pitch_order(prev_pitch)[rank]
        vq1 = _code_vq(code, VQ1_REPEAT, VQ1, None if prev is None else prev.vq1,
                       None if prev is None else 2 * int(energy == prev.energy) + int(pitch == prev.pitch),
                       2 * int(pitch > 0) + loud, None if cur is None else cur.vq1)
        vq2 = _code_vq(code, VQ2_REPEAT, VQ2, None if prev is None else prev.vq2,
                       None if prev is None else 2 * int(vq1 == prev.vq1) + int(energy == prev.energy),
                       0, None if cur is None else cur.vq2)
        prev = Fields700C(vq1, vq2, energy, pitch)
        out.append(prev)
    return out


def _code_vq(code: _Step, flag_kind: int, kind: int, prev: Optional[int], flag_ctx: Optional[int],
             ctx: int, value: Optional[int]) -> int:
    if prev is not None:
        assert flag_ctx is not None
        if code(flag_kind, flag_ctx, None if value is None else int(value == prev)):
            return prev
    v = code(kind, ctx, value)
    if v == prev:
        raise EntropyError("non-canonical packet: a repeated VQ index coded without its flag")
    return v


def _check_int(value: object, name: str, low: int, high: int, error: type[Exception]) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise error(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= int(value) <= high:
        raise error(f"{name} must be in [{low}, {high}], got {int(value)}")
    return int(value)


def _length(values: object, error: type[Exception]) -> int:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise error(f"expected a sequence of integers, got {type(values).__name__}")
    return len(values)


class AudioContextModel:
    """Learned integer context model for Codec2 700C tokens (see the module docstring)."""

    def __init__(self, tables: dict[str, np.ndarray], motion_levels: int = 1) -> None:
        """Build from one int table array per kind of :data:`KINDS`.

        Args:
            tables: ``name -> (contexts * motion_levels, values + 1)`` integer arrays, each row
                a frequency table (entries >= 1, sum ``2**24``, column 0 exactly 1).
            motion_levels: ``M`` in ``1..MAX_MOTION_LEVELS`` (1 = unconditioned).

        Raises:
            ModelMismatchError: if a table is missing, mis-shaped or invalid.
        """
        self._levels = _check_int(motion_levels, "motion_levels", 1, MAX_MOTION_LEVELS,
                                  ModelMismatchError)
        levels = self._levels
        self._tables: dict[str, np.ndarray] = {}
        self._offsets: list[int] = []
        rows: list[np.ndarray] = []
        for name, values, contexts in KINDS:
            arr = tables.get(name)
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu":
                raise ModelMismatchError(f"audio context model: table {name!r} missing or not integer")
            shape = (contexts * levels, values + 1)
            if arr.shape != shape:
                raise ModelMismatchError(f"audio context model: table {name!r} has shape "
                                         f"{arr.shape}, expected {shape}")
            a = arr.astype(np.int64)
            if int(a.min()) < 1 or (a.sum(axis=1) != TABLE_TOTAL).any() or (a[:, 0] != 1).any():
                raise ModelMismatchError(f"audio context model: table {name!r} has a row that is "
                                         "not a frequency table (entries >= 1, sum 2**24, "
                                         "reserved symbol 0 of frequency 1)")
            a.setflags(write=False)
            self._tables[name] = a
            self._offsets.append(len(rows))
            rows.extend(a)
        self._set = TableSet(rows)

    @property
    def motion_levels(self) -> int:
        """``M``: 1 for a model that ignores ``motion_ctx``."""
        return self._levels

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "audio.") -> "AudioContextModel":
        """Load from a bundle's integer arrays: ``{prefix}layout`` (``[LAYOUT]``),
        ``{prefix}motion_levels`` (``[M]``) and one table per kind (``{prefix}energy``, ...).

        Raises:
            ModelMismatchError: if an array is missing, of another layout, shape or dtype, or
                a table is invalid.
        """
        def scalar(name: str) -> int:
            arr = arrays.get(prefix + name)
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu" or arr.shape != (1,):
                raise ModelMismatchError(f"audio context model: {prefix + name} must be a "
                                         "1-element integer array")
            return int(arr[0])

        if scalar("layout") != LAYOUT:
            raise ModelMismatchError(f"audio context model: layout {scalar('layout')} is not "
                                     f"{LAYOUT}, the one this avfc implements")
        tables = {name: arrays.get(prefix + name) for name, _, _ in KINDS}
        return cls(tables, scalar("motion_levels"))  # type: ignore[arg-type]

    def to_arrays(self, prefix: str = "audio.") -> dict[str, np.ndarray]:
        """The model as integer arrays (int32 tables; inverse of :meth:`from_arrays`)."""
        out = {prefix + "layout": np.array([LAYOUT], dtype=np.int32),
               prefix + "motion_levels": np.array([self._levels], dtype=np.int32)}
        for name, _, _ in KINDS:
            out[prefix + name] = self._tables[name].astype(np.int32)
        return out

    def _motion(self, motion_ctx: Sequence[int] | None, num_frames: int) -> list[int] | None:
        if self._levels == 1:
            return None
        count = _length(motion_ctx, ConfigError) if motion_ctx is not None else None
        if count != num_frames:
            raise ConfigError(f"this audio model needs one motion context per frame "
                              f"({num_frames}), got {count}")
        assert motion_ctx is not None
        return [_check_int(m, "motion context", 0, self._levels - 1, ConfigError) for m in motion_ctx]

    def max_packet_bytes(self, num_frames: int) -> int:
        """Upper bound on the size of a valid packet of ``num_frames`` tokens.

        Raises:
            EntropyError: if ``num_frames`` is not an integer in ``[0, MAX_FRAMES]``.
        """
        n = _check_int(num_frames, "num_frames", 0, MAX_FRAMES, EntropyError)
        if n == 0:
            return 0
        bits = n * _MAX_SYMBOLS_PER_FRAME * _MAX_SYMBOL_BITS + _STATE_BITS
        return 4 * (bits // 32 + 2)

    def encode(self, tokens: Sequence[int], motion_ctx: Sequence[int] | None = None) -> bytes:
        """Code one packet of 700C tokens (empty bytes for no tokens).

        Args:
            tokens: ints in ``[0, 2**28)``, at most :data:`MAX_FRAMES`.
            motion_ctx: one int in ``0..motion_levels-1`` per token; ignored (may be ``None``)
                when the model is unconditioned.

        Raises:
            EntropyError: if there are too many tokens or a token is not a 700C token.
            ConfigError: if a conditioned model gets no or bad ``motion_ctx``.
        """
        n = _check_int(_length(tokens, EntropyError), "number of tokens", 0, MAX_FRAMES, EntropyError)
        fields = [split_700c(t) for t in tokens]
        motion = self._motion(motion_ctx, n)
        symbols: list[tuple[int, int]] = []

        def step(kind: int, ctx: int, value: Optional[int]) -> int:
            assert value is not None
            symbols.append((value + 1, self._offsets[kind] + ctx))
            return value

        walk_packet(n, step, fields, motion, self._levels)
        return encode_table_symbols(symbols, self._set) if symbols else b""

    def decode(self, data: bytes, num_frames: int, motion_ctx: Sequence[int] | None = None) -> list[int]:
        """Decode one packet written by :meth:`encode` (same model, same ``motion_ctx``).

        Raises:
            EntropyError: on any malformed input: ``num_frames`` outside ``[0, MAX_FRAMES]``,
                data that is not bytes, a length that is not a multiple of 4 or exceeds
                :meth:`max_packet_bytes`, a reserved or non-canonical symbol, data exhausted
                before the last symbol or left over after it.
            ConfigError: if a conditioned model gets no or bad ``motion_ctx``.
        """
        limit = self.max_packet_bytes(num_frames)
        n = int(num_frames)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise EntropyError(f"data must be bytes, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) > limit:
            raise EntropyError(f"packet of {len(raw)} bytes exceeds the bound of {limit} bytes")
        motion = self._motion(motion_ctx, n)
        if n == 0:
            return []
        dec = SymbolDecoder(words_from_bytes(raw, limit // 4))

        def step(kind: int, ctx: int, value: Optional[int]) -> int:
            symbol = dec.decode_table(self._set, self._offsets[kind] + ctx)
            if symbol == 0:
                raise EntropyError("reserved symbol 0 in an audio packet")
            return symbol - 1

        fields = walk_packet(n, step, None, motion, self._levels)
        dec.finish()
        return [join_700c(f) for f in fields]
