"""The fields of a Codec2 700C token (one 40 ms frame, 28 bits).

libcodec2's ``codec2_encode_700c`` packs four quantiser indexes, most significant first:
two 9-bit vector-quantiser stages of the spectral envelope, a 4-bit frame energy and a
6-bit pitch index (``Wo``; index 0 marks an unvoiced frame). The 700C encoder packs these
as natural binary whatever the Gray setting of the state (``pack_natural_or_gray(..., 0)``;
measured: consecutive pitch indexes of voiced speech differ by 0-3), so neighbouring values
are neighbouring quantiser levels, which is what a context model or a predictor wants.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from avfc.errors import EntropyError

#: widths of the fields in packing order (sum 28)
FIELD_BITS_700C: tuple[int, ...] = (9, 9, 4, 6)
FIELD_NAMES_700C: tuple[str, ...] = ("vq1", "vq2", "energy", "pitch")
TOKEN_BITS_700C = sum(FIELD_BITS_700C)


class Fields700C(NamedTuple):
    """Quantiser indexes of one 700C frame."""

    vq1: int
    vq2: int
    energy: int
    pitch: int


def split_700c(token: int) -> Fields700C:
    """The four quantiser indexes of a 700C token.

    Raises:
        EntropyError: if ``token`` is not an int in ``[0, 2**28)``.
    """
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or not 0 <= int(token) < 1 << TOKEN_BITS_700C:
        raise EntropyError(f"a Codec2 700C token is an int in [0, 2**{TOKEN_BITS_700C}), got {token!r}")
    t, out, shift = int(token), [], TOKEN_BITS_700C
    for bits in FIELD_BITS_700C:
        shift -= bits
        out.append((t >> shift) & ((1 << bits) - 1))
    return Fields700C(*out)


def join_700c(fields: Fields700C | tuple[int, int, int, int]) -> int:
    """The token of four quantiser indexes (inverse of :func:`split_700c`).

    Raises:
        EntropyError: if a field is out of its range.
    """
    token = 0
    for value, bits, name in zip(fields, FIELD_BITS_700C, FIELD_NAMES_700C):
        if not 0 <= int(value) < 1 << bits:
            raise EntropyError(f"700C field {name} must be in [0, {1 << bits}), got {value}")
        token = (token << bits) | int(value)
    return token


def fields_array(tokens: list[int] | np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 quantiser indexes of ``N`` tokens (rows in :data:`FIELD_NAMES_700C` order)."""
    out = np.zeros((len(tokens), 4), dtype=np.int64)
    for i, t in enumerate(tokens):
        out[i] = split_700c(int(t))
    return out
