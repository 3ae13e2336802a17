"""Motion levels of the audio tokens (issue 21 study): integer, deterministic, packet-local; and the
training of conditioned tables on top of a base model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avfc.avcc.audio_ctx import KINDS, AudioContextModel
from avfc.avcc.motion_ctx import (
    check_thresholds,
    motion_activity,
    motion_levels,
    packet_levels,
)
from avfc.entropy.tables import TABLE_TOTAL
from avfc.errors import ConfigError
from avfc.train.audio_motion import (
    backoff_tables,
    level_seq,
    load,
    quantile_thresholds,
    save,
    train_conditioned,
)
from tests.avcc.test_audio_ctx import speechlike, tiny_arrays

REPO = Path(__file__).resolve().parents[2]

ROWS = np.array([[0, 0, 5], [1, -2, 5], [1, -2, 5], [4, 0, 5], [4, 0, 2]], dtype=np.int32)


def test_activity_is_the_three_frame_window_of_l1_displacements() -> None:
    # d = [0, 3, 0, 5, 3] (frame 0 reads nothing before the packet); s[k] = d[k-1] + d[k] + d[k+1]
    assert motion_activity(ROWS).tolist() == [3, 3, 8, 8, 8]
    assert motion_levels(ROWS, (3, 8)) == [2, 2, 3, 3, 3]
    assert motion_levels(ROWS, (4,)) == [1, 1, 2, 2, 2]
    assert motion_levels(ROWS, ()) == [1] * 5
    assert motion_activity(ROWS[:1]).tolist() == [0]
    assert motion_activity(np.zeros((0, 3), np.int64)).tolist() == []


def test_levels_are_integer_exact_whatever_the_dtype_and_far_from_float() -> None:
    big = np.array([[2**40, -(2**40)], [-(2**40), 2**40], [2**40 + 1, -(2**40)]], dtype=np.int64)
    assert motion_activity(big).tolist() == [2**42, 2**43 + 1, 2**43 + 1]
    for dtype in (np.int16, np.int32, np.int64, np.uint8):
        assert motion_activity(np.abs(ROWS).astype(dtype)).tolist() == motion_activity(np.abs(ROWS)).tolist()
    with pytest.raises(ConfigError):
        motion_activity(ROWS.astype(np.float32))
    with pytest.raises(ConfigError):
        motion_activity(ROWS[0])


def test_levels_of_a_packet_read_only_that_packet() -> None:
    rng = np.random.default_rng(3)
    q = rng.integers(-40, 40, (60, 20))
    th = (5, 20, 60)
    first = packet_levels(q, 25, 25, th)
    q2 = q.copy()
    q2[:25] = rng.integers(-40, 40, (25, 20))  # another previous packet
    q2[50:] = 0  # another next packet
    assert packet_levels(q2, 25, 25, th) == first
    assert all(1 <= m <= 4 for m in first)
    assert packet_levels(q, 50, 25, th) == [0] * 25  # frames past the motion: no motion, level 0
    with pytest.raises(ConfigError):
        packet_levels(q, -1, 3, th)


def test_thresholds_are_checked() -> None:
    assert check_thresholds([np.int64(2), 5]) == (2, 5)
    for bad in ([3, 3], [5, 2], [-1], [1.5], [True], list(range(15))):
        with pytest.raises(ConfigError):
            check_thresholds(bad)


def test_levels_are_the_same_in_another_process() -> None:
    """The level computation feeds an entropy decoder: the same integers in a fresh interpreter."""
    rng = np.random.default_rng(5)
    q = rng.integers(-500, 500, (50, 20)).astype(np.int32)
    here = packet_levels(q, 0, 25, (40, 400, 2000)) + packet_levels(q, 25, 25, (40, 400, 2000))
    code = ("import numpy as np, sys; from avfc.avcc.motion_ctx import packet_levels; "
            "q = np.random.default_rng(5).integers(-500, 500, (50, 20)).astype(np.int32); "
            "print(packet_levels(q, 0, 25, (40, 400, 2000)) + packet_levels(q, 25, 25, (40, 400, 2000)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == str(here)


def test_backoff_tables_keep_level_zero_and_are_frequency_rows() -> None:
    base = AudioContextModel.from_arrays(tiny_arrays(1)).to_arrays()["audio.energy"].astype(np.int64)
    counts = np.zeros((17 * 3, 16), dtype=np.int64)
    counts[1 * 3 + 2, 7] = 500  # context 1, level 2: mostly energy 7
    t = backoff_tables(counts, base, 3, 16)
    assert t.shape == (51, 17) and (t[:, 0] == 1).all() and (t.sum(axis=1) == TABLE_TOTAL).all() and t.min() >= 1
    np.testing.assert_array_equal(t[0::3], base)  # level 0 = the base rows
    assert t[5, 8] > 0.9 * TABLE_TOTAL  # the counted value dominates its row
    assert t[4, 8] < 0.5 * TABLE_TOTAL  # level 1 of context 1 saw nothing: close to the base
    np.testing.assert_array_equal(t, backoff_tables(counts, base, 3, 16))


def test_conditioned_model_codes_level_zero_like_its_base(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    base = AudioContextModel.from_arrays(tiny_arrays(2))
    seqs = [speechlike(rng, 50) for _ in range(4)]
    q = [np.cumsum(rng.integers(-2, 3, (50, 20)), axis=0) for _ in range(4)]
    th = quantile_thresholds([motion_activity(x[:25]) for x in q], 2)
    levels = [level_seq(x, th) for x in q]
    model, fits = train_conditioned(base, seqs, levels, len(th) + 2, ["a", "b", "a", "c"])
    assert model.motion_levels == len(th) + 2 and len(fits) == len(KINDS)
    packet = seqs[0][:25]
    assert model.encode(packet, [0] * 25) == base.encode(packet)
    data = model.encode(packet, levels[0][:25])
    assert model.decode(data, 25, levels[0][:25]) == packet
    path = tmp_path / "m.safetensors"
    save(model, th, path)
    again, th2 = load(path)
    assert th2 == th and again.encode(packet, levels[0][:25]) == data
    with pytest.raises(ConfigError):
        train_conditioned(model, seqs, levels, len(th) + 2, ["a"] * 4)  # a conditioned base
    with pytest.raises(ConfigError):
        train_conditioned(base, seqs, levels, len(th) + 2, ["a"])
