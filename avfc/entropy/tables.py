"""Integer probability tables of the motion coder and their scale-adaptation rule.

Every table here is built with integer arithmetic only, so the encoder and the decoder
compute bit-identical tables on any machine. All tables have total ``2**24``
(``TABLE_PRECISION`` bits, the precision of constriction's default ANS coder) and every
symbol has frequency >= 1. docs/bitstream.md (motion section) is the normative description.

Residual tables: a family of ``NUM_SCALES`` discretised two-sided geometric (Laplace)
distributions over residuals ``-RESIDUAL_MAX..RESIDUAL_MAX`` plus one ESCAPE symbol.
Symbol ``ESCAPE == 0`` says that the residual is coded after it with the uniform escape
tables; symbol ``i`` in ``1..2*RESIDUAL_MAX+1`` stands for residual ``i - RESIDUAL_OFFSET``.
No residual symbol has cumulative 0, which lets the decoder detect reading past the end.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from functools import lru_cache

import numpy as np

from avfc.errors import EntropyError

TABLE_PRECISION = 24
"""Frequencies of every table sum to ``2**TABLE_PRECISION``."""

TABLE_TOTAL = 1 << TABLE_PRECISION

RESIDUAL_MAX = 255
"""Largest residual magnitude coded directly; larger ones are escaped."""

ALPHABET_SIZE = 2 * RESIDUAL_MAX + 2
"""Symbols of a residual table: ``2 * RESIDUAL_MAX + 1`` residuals and ESCAPE."""

ESCAPE = 0
"""Index of the ESCAPE symbol in a residual table (the only symbol with cumulative 0)."""

RESIDUAL_OFFSET = RESIDUAL_MAX + 1
"""Residual ``r`` (``|r| <= RESIDUAL_MAX``) is symbol ``r + RESIDUAL_OFFSET``."""

NUM_SCALES = 32
"""Number of residual tables (scale indices ``0..NUM_SCALES-1``)."""

ESCAPE_HIGH_SIZE = 256
"""Alphabet of the high part (``y >> 9``) of an escaped residual's code ``y``."""

ESCAPE_LOW_SIZE = 512
"""Alphabet of the low part (``y & 511``) of an escaped residual's code ``y``."""

ESCAPE_LOW_BITS = 9

# Decay of scale j as a 16-bit fixed-point fraction: theta_j = DECAY_Q16[j] / 2**16.
# Informative origin: mean absolute residual mu_j = 0.005 * 40000**(j/31) (0.005 .. 200
# quantisation steps), theta_j = (sqrt(1 + mu_j**2) - 1) / mu_j (the two-sided geometric
# distribution with that mean |r|), rounded to the nearest multiple of 2**-16. The integers
# below, not that derivation, are normative.
DECAY_Q16 = (
    164, 231, 325, 457, 643, 905, 1273, 1792,
    2520, 3542, 4971, 6958, 9689, 13362, 18123, 23936,
    30471, 37142, 43338, 48654, 52956, 56295, 58815, 60683,
    62048, 63038, 63751, 64263, 64629, 64890, 65076, 65209,
)

# --- backward adaptation (per channel) -------------------------------------------------
STATE_FRAC_BITS = 12
"""The adaptation state is a mean |residual| with this many fractional bits."""

STATE_SHIFT = 3
"""Exponential forgetting: ``state += (a - state) >> STATE_SHIFT`` (weight 1/8)."""

STATE_CAP = RESIDUAL_MAX + 1
"""|residual| is capped at this value before it enters the state."""

# Initial state for scale index j: round(mu_j * 2**12).
INITIAL_STATE_Q12 = (
    20, 29, 41, 57, 80, 113, 159, 224,
    315, 444, 625, 880, 1238, 1743, 2453, 3452,
    4859, 6840, 9627, 13550, 19072, 26844, 37784, 53182,
    74854, 105358, 148294, 208726, 293785, 413507, 582018, 819200,
)

# Scale index of a state s = number of thresholds t with t <= s.
# Threshold j: round(sqrt(mu_j * mu_{j+1}) * 2**12).
SCALE_THRESHOLDS_Q12 = (
    24, 34, 48, 68, 95, 134, 189, 266,
    374, 527, 741, 1044, 1469, 2068, 2910, 4096,
    5765, 8115, 11421, 16076, 22627, 31848, 44826, 63094,
    88806, 124996, 175934, 247630, 348543, 490580, 690499,
)

_WEIGHT_ONE = 1 << 32


def _check_index(index: int, count: int, what: str) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise EntropyError(f"{what} must be an integer, got {type(index).__name__}")
    if not 0 <= int(index) < count:
        raise EntropyError(f"{what} {int(index)} is outside 0..{count - 1}")
    return int(index)


@lru_cache(maxsize=None)
def _laplace_freqs(index: int) -> tuple[int, ...]:
    decay = DECAY_Q16[index]
    w = [_WEIGHT_ONE]
    for _ in range(RESIDUAL_MAX + 1):
        w.append((w[-1] * decay) >> 16)
    tail = (w[RESIDUAL_MAX + 1] << 16) // ((1 << 16) - decay)
    weights = [2 * tail] + [w[abs(k)] for k in range(-RESIDUAL_MAX, RESIDUAL_MAX + 1)]
    total_weight = sum(weights)
    free = TABLE_TOTAL - ALPHABET_SIZE
    freqs = [1 + (x * free) // total_weight for x in weights]
    freqs[RESIDUAL_OFFSET] += TABLE_TOTAL - sum(freqs)
    return tuple(freqs)


def laplace_table(index: int) -> np.ndarray:
    """Frequencies (int64, length ``ALPHABET_SIZE``, sum ``2**24``) of residual table ``index``.

    Integer-only construction, with ``a = DECAY_Q16[index]``:
    ``w[0] = 2**32``, ``w[k+1] = (w[k] * a) >> 16`` for ``k = 0..RESIDUAL_MAX``;
    ``tail = (w[RESIDUAL_MAX+1] << 16) // (2**16 - a)``; the weight of ESCAPE (symbol 0)
    is ``2 * tail`` and that of residual ``k`` (symbol ``k + RESIDUAL_OFFSET``) is
    ``w[|k|]``; with ``W`` the sum of all weights,
    ``f[i] = 1 + weight[i] * (2**24 - ALPHABET_SIZE) // W``; the remainder
    ``2**24 - sum(f)`` is added to the frequency of residual 0.

    Raises:
        EntropyError: if ``index`` is not an integer in ``0..NUM_SCALES-1``.
    """
    i = _check_index(index, NUM_SCALES, "scale index")
    return np.array(_laplace_freqs(i), dtype=np.int64)


def uniform_table(size: int) -> np.ndarray:
    """Frequencies of the uniform table over ``size`` symbols (``size`` a power of two).

    Raises:
        EntropyError: if ``size`` is not a power of two in ``2..2**24``.
    """
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise EntropyError(f"uniform table size must be an integer, got {type(size).__name__}")
    size = int(size)
    if size < 2 or size > TABLE_TOTAL or size & (size - 1):
        raise EntropyError(f"uniform table size must be a power of two in 2..2**24, got {size}")
    return np.full(size, TABLE_TOTAL // size, dtype=np.int64)


def initial_state(index: int) -> int:
    """Adaptation state that a packet's side parameter ``index`` starts every channel in.

    Raises:
        EntropyError: if ``index`` is not an integer in ``0..NUM_SCALES-1``.
    """
    return INITIAL_STATE_Q12[_check_index(index, NUM_SCALES, "scale index")]


def scale_index(state: int) -> int:
    """Residual table index for an adaptation state: thresholds ``<= state`` counted."""
    return bisect_right(SCALE_THRESHOLDS_Q12, state)


def update_state(state: int, residual: int) -> int:
    """Next adaptation state after coding ``residual`` (integer-only, floor shift)."""
    a = min(abs(residual), STATE_CAP) << STATE_FRAC_BITS
    return state + ((a - state) >> STATE_SHIFT)


def all_tables() -> list[np.ndarray]:
    """Every table the motion coder uses, in a fixed order.

    Order: residual tables ``0..NUM_SCALES-1``, then the uniform tables over
    ``NUM_SCALES`` (side parameters), ``ESCAPE_HIGH_SIZE`` and ``ESCAPE_LOW_SIZE`` symbols.
    """
    tables = [laplace_table(j) for j in range(NUM_SCALES)]
    tables += [uniform_table(n) for n in (NUM_SCALES, ESCAPE_HIGH_SIZE, ESCAPE_LOW_SIZE)]
    return tables


def motion_tables_digest() -> str:
    """SHA-256 (hex) over every table of :func:`all_tables` and the adaptation constants.

    Each table contributes its length then its frequencies, all as big-endian uint32; the
    constants follow as big-endian uint32 too. Any change that alters the bits of a motion
    packet changes this digest.
    """
    h = hashlib.sha256()
    for table in all_tables():
        h.update(np.array([len(table)], dtype=">u4").tobytes())
        h.update(table.astype(">u4").tobytes())
    constants = (
        [STATE_FRAC_BITS, STATE_SHIFT, STATE_CAP, RESIDUAL_MAX, ESCAPE, RESIDUAL_OFFSET]
        + list(INITIAL_STATE_Q12)
        + list(SCALE_THRESHOLDS_Q12)
    )
    h.update(np.array(constants, dtype=">u4").tobytes())
    return h.hexdigest()
