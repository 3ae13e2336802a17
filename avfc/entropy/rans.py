"""rANS coding of symbols with exact integer tables, through constriction 0.5.

The coder is constriction's ``stream.stack.AnsCoder`` (32-bit words, 64-bit state,
24-bit probability precision). An integer table ``f`` (every ``f[i] >= 1``,
``sum(f) == 2**24``) becomes a ``stream.model.Categorical`` with ``perfect=False``
(pinned: ``perfect=True`` selects another quantiser and changes the bits) built from the
float64 weights ``f[i] - 1``. constriction's fast quantiser gives symbol ``i`` the left
cumulative ``floor(F[i] * (2**24 - n) / S) + i`` where ``F[i]`` is the float sum of the
weights before ``i`` and ``S`` the sum of all of them. Here every weight is an integer
below ``2**24``, so these sums are exact, ``S == 2**24 - n`` and the scale is exactly
1.0: the model's cumulatives are ``sum(f[:i])``, i.e. constriction codes with ``f``
itself (tests/entropy probe this table by table).

Compressed data is the coder's list of u32 words (``get_compressed`` order), each stored
as 4 big-endian bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import constriction
import numpy as np

from avfc.entropy.tables import (
    ESCAPE_HIGH_SIZE,
    ESCAPE_LOW_SIZE,
    NUM_SCALES,
    TABLE_TOTAL,
    laplace_table,
    uniform_table,
)
from avfc.errors import EntropyError

_Categorical = constriction.stream.model.Categorical
_AnsCoder = constriction.stream.stack.AnsCoder

# Model keys: ("laplace", j) for residual table j, ("uniform", n) for a uniform table.
ModelKey = tuple[str, int]


def categorical_model(freqs: np.ndarray) -> object:
    """A constriction ``Categorical`` that codes with exactly the integer table ``freqs``.

    Raises:
        EntropyError: if ``freqs`` is not a table of >= 2 integers >= 1 summing to ``2**24``.
    """
    f = np.asarray(freqs)
    if f.ndim != 1 or f.size < 2 or f.dtype.kind not in "iu":
        raise EntropyError("a frequency table must be a 1-D integer array of >= 2 entries")
    f = f.astype(np.int64)
    if int(f.min()) < 1 or int(f.sum()) != TABLE_TOTAL:
        raise EntropyError("a frequency table needs every entry >= 1 and a sum of 2**24")
    return _Categorical((f - 1).astype(np.float64), perfect=False)


@lru_cache(maxsize=None)
def cached_model(key: ModelKey) -> object:
    """The constriction model of a motion-coder table, built once and cached.

    Raises:
        EntropyError: if ``key`` names no table of the motion coder.
    """
    kind, arg = key
    if kind == "laplace" and 0 <= arg < NUM_SCALES:
        return categorical_model(laplace_table(arg))
    if kind == "uniform" and arg in (NUM_SCALES, ESCAPE_HIGH_SIZE, ESCAPE_LOW_SIZE):
        return categorical_model(uniform_table(arg))
    raise EntropyError(f"no motion-coder table named {key!r}")


def encode_symbols(symbols: Sequence[tuple[int, ModelKey]]) -> bytes:
    """rANS-encode ``(symbol, model key)`` pairs so that they decode in the given order.

    Raises:
        EntropyError: if a symbol is outside its table's alphabet.
    """
    coder = _AnsCoder()
    try:
        for symbol, key in reversed(symbols):
            coder.encode_reverse(int(symbol), cached_model(key))
    except (KeyError, ValueError, OverflowError, TypeError) as exc:
        raise EntropyError(f"symbol cannot be coded: {exc}") from exc
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    return words.astype(">u4").tobytes()


class TableSet:
    """An ordered collection of integer frequency tables, addressed by index.

    Lets a coder use tables that are data (e.g. learned and shipped in a bundle) rather
    than the motion coder's fixed ones. Each table is checked and turned into its
    constriction model once, when the set is built.
    """

    def __init__(self, tables: Sequence[np.ndarray]) -> None:
        """Check every table (see :func:`categorical_model`) and build its model.

        Raises:
            EntropyError: if a table is not a valid frequency table.
        """
        self._sizes = tuple(int(np.asarray(t).size) for t in tables)
        self._models = tuple(categorical_model(t) for t in tables)

    def __len__(self) -> int:
        """Number of tables."""
        return len(self._models)

    def size(self, index: int) -> int:
        """Alphabet size of table ``index``."""
        return self._sizes[index]

    def model(self, index: int) -> object:
        """The constriction model of table ``index``.

        Raises:
            EntropyError: if there is no table ``index``.
        """
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) \
                or not 0 <= int(index) < len(self._models):
            raise EntropyError(f"no table {index!r} in a set of {len(self._models)}")
        return self._models[int(index)]


def encode_table_symbols(symbols: Sequence[tuple[int, int]], tables: TableSet) -> bytes:
    """rANS-encode ``(symbol, table index)`` pairs of ``tables`` so that they decode in order.

    Same word format as :func:`encode_symbols`.

    Raises:
        EntropyError: if a table index does not exist or a symbol is outside its table.
    """
    coder = _AnsCoder()
    for symbol, index in reversed(symbols):
        model = tables.model(index)
        if isinstance(symbol, (bool, np.bool_)) or not isinstance(symbol, (int, np.integer)) \
                or not 0 <= int(symbol) < tables.size(int(index)):
            raise EntropyError(f"symbol {symbol!r} is outside table {index}")
        try:
            coder.encode_reverse(int(symbol), model)
        except (KeyError, ValueError, OverflowError, TypeError) as exc:
            raise EntropyError(f"symbol cannot be coded: {exc}") from exc
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    return words.astype(">u4").tobytes()


def words_from_bytes(data: bytes, max_words: int) -> np.ndarray:
    """Parse big-endian u32 words after checking the length (multiple of 4, bounded).

    Raises:
        EntropyError: if the length is not a multiple of 4 or exceeds ``4 * max_words``.
    """
    if len(data) % 4:
        raise EntropyError(f"compressed length {len(data)} is not a multiple of 4 bytes")
    if len(data) > 4 * max_words:
        raise EntropyError(f"compressed length {len(data)} exceeds the bound {4 * max_words}")
    return np.frombuffer(data, dtype=">u4").astype(np.uint32)


class SymbolDecoder:
    """Pops symbols off rANS-compressed words, one model key at a time."""

    def __init__(self, words: np.ndarray) -> None:
        """Start decoding ``words`` (native uint32, ``get_compressed`` order).

        Raises:
            EntropyError: if the words cannot be compressed ANS data (last word zero).
        """
        try:
            self._coder = _AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        except (ValueError, TypeError) as exc:
            raise EntropyError(f"invalid compressed data: {exc}") from exc

    def decode(self, key: ModelKey) -> int:
        """Decode one symbol with the table named ``key``.

        Raises:
            EntropyError: if the data is exhausted (ANS state 0) before this symbol.
        """
        if self._coder.is_empty():
            raise EntropyError("compressed data exhausted before the last symbol")
        return int(self._coder.decode(cached_model(key)))

    def decode_table(self, tables: TableSet, index: int) -> int:
        """Decode one symbol with table ``index`` of ``tables``.

        Raises:
            EntropyError: if the data is exhausted (ANS state 0) before this symbol, or
                there is no table ``index``.
        """
        model = tables.model(index)
        if self._coder.is_empty():
            raise EntropyError("compressed data exhausted before the last symbol")
        return int(self._coder.decode(model))

    def finish(self) -> None:
        """Check that every word was consumed and the final ANS state is 0.

        Raises:
            EntropyError: if compressed data is left over (garbage or a wrong packet size).
        """
        if self._coder.num_words() != 0:
            raise EntropyError("compressed data left over after the last symbol")
