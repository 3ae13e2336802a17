"""Integer tables: invariants, determinism, digest, and constriction reproducing them exactly."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from avfc.entropy import laplace_table, motion_tables_digest
from avfc.entropy import tables as tb
from avfc.entropy.rans import categorical_model
from avfc.errors import EntropyError

import entropy_reference as ref

DIGEST_V1 = "11559f959739a5058ef8c140036e79f4cacbbb6b5c4da0b3ba667021bb3414e5"


def test_digest_of_all_tables_is_pinned() -> None:
    assert motion_tables_digest() == DIGEST_V1


def test_rebuilding_gives_identical_tables() -> None:
    first = [t.copy() for t in tb.all_tables()]
    tb._laplace_freqs.cache_clear()
    second = tb.all_tables()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert motion_tables_digest() == DIGEST_V1


@pytest.mark.parametrize("j", range(tb.NUM_SCALES))
def test_residual_table_invariants(j: int) -> None:
    f = laplace_table(j)
    assert f.shape == (tb.ALPHABET_SIZE,)
    assert int(f.sum()) == tb.TABLE_TOTAL
    assert int(f.min()) >= 1
    assert tb.ESCAPE == 0 and tb.RESIDUAL_OFFSET == tb.RESIDUAL_MAX + 1
    side = f[tb.RESIDUAL_OFFSET:]  # residuals 0, 1, ..., R
    assert np.all(np.diff(side) <= 0), "frequencies must not grow with |r|"
    assert np.array_equal(f[1:tb.RESIDUAL_OFFSET][::-1], f[tb.RESIDUAL_OFFSET + 1:])
    assert f.tolist() == ref.laplace_freqs(tb.DECAY_Q16[j])  # spec formula, re-implemented


def test_scales_widen_with_index() -> None:
    zero = [int(laplace_table(j)[tb.RESIDUAL_OFFSET]) for j in range(tb.NUM_SCALES)]
    esc = [int(laplace_table(j)[tb.ESCAPE]) for j in range(tb.NUM_SCALES)]
    assert all(a > b for a, b in zip(zero, zero[1:]))
    assert all(a <= b for a, b in zip(esc, esc[1:]))
    assert zero[0] > 0.99 * tb.TABLE_TOTAL and esc[-1] > 0.2 * tb.TABLE_TOTAL


def _probe_cumulatives(model: object, n: int) -> list[int]:
    """Encoding one symbol into an empty ANS coder leaves the state equal to its cumulative."""
    out = []
    for s in range(n):
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(s, model)
        words = coder.get_compressed()
        out.append(int(words[0]) if len(words) else 0)
    return out


def test_constriction_codes_with_exactly_our_tables() -> None:
    for f in tb.all_tables():
        cum = np.concatenate([[0], np.cumsum(f)[:-1]]).tolist()
        assert _probe_cumulatives(categorical_model(f), len(f)) == cum


def test_perfect_true_would_change_the_model() -> None:
    f = laplace_table(20)
    fast = _probe_cumulatives(categorical_model(f), 300)
    perfect = constriction.stream.model.Categorical((f - 1).astype(np.float64), perfect=True)
    assert _probe_cumulatives(perfect, 300) != fast


@pytest.mark.parametrize("bad", [np.array([1, 2]), np.array([0, 2**24]),
                                 np.array([2**23, 2**23 + 1]), np.array([[2**23, 2**23]]),
                                 np.array([2.0**23, 2.0**23])])
def test_categorical_model_rejects_non_tables(bad: np.ndarray) -> None:
    with pytest.raises(EntropyError):
        categorical_model(bad)


def test_table_accessors_reject_bad_arguments() -> None:
    for bad in (-1, tb.NUM_SCALES, 1.0, True):
        with pytest.raises(EntropyError):
            laplace_table(bad)  # type: ignore[arg-type]
    for bad in (0, 1, 3, 2**25, 2.0):
        with pytest.raises(EntropyError):
            tb.uniform_table(bad)  # type: ignore[arg-type]


def test_adaptation_rule() -> None:
    assert all(tb.scale_index(s) == j for j, s in enumerate(tb.INITIAL_STATE_Q12))
    assert tb.scale_index(0) == 0 and tb.scale_index(10**9) == tb.NUM_SCALES - 1
    s = tb.initial_state(20)
    for _ in range(200):
        s = tb.update_state(s, 0)
    assert s == 0
    for _ in range(200):
        s = tb.update_state(s, 10**6)  # capped at STATE_CAP
    assert tb.scale_index(s) == tb.NUM_SCALES - 1
    assert s <= tb.STATE_CAP << tb.STATE_FRAC_BITS
    assert tb.update_state(800, -3) == tb.update_state(800, 3) == 800 + ((3 * 4096 - 800) >> 3)
