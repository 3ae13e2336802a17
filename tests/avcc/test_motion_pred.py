"""Speech-conditioned motion packets: exact round trips, determinism, malformed input, training."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from avfc.avcc.motion_pred import (
    MAG_LEVELS,
    NUM_ACTIVITY,
    SpeechMotionPredictor,
    decode_predicted_motion,
    encode_predicted_motion,
)
from avfc.entropy import QMAX, encode_motion
from avfc.errors import EntropyError

C, H = 6, 2


def _audio(rng: np.random.Generator, n: int, unknown: int = 0) -> np.ndarray:
    rows = np.stack([rng.integers(0, 512, n), rng.integers(0, 512, n),
                     rng.integers(0, 16, n), rng.integers(0, 64, n)], axis=1)
    rows[:unknown] = -1
    return rows


def _random_predictor(seed: int) -> SpeechMotionPredictor:
    rng = np.random.default_rng(seed)
    return SpeechMotionPredictor.create(
        C, H, 8,
        bias=rng.integers(-300, 300, C),
        w_delta=rng.integers(-200, 200, (C, C)),
        energy=rng.integers(-400, 400, (H + 1, 17, C)),
        voiced=rng.integers(-400, 400, (H + 1, 3, C)),
        cross=np.tril(rng.integers(-300, 300, (C, C)), -1),
        index_offset=rng.integers(-4, 5, (NUM_ACTIVITY, MAG_LEVELS)))


def _motion(rng: np.random.Generator, t: int) -> np.ndarray:
    common = np.cumsum(rng.integers(-2, 3, (t, 1)), axis=0)
    return common + rng.integers(-1, 2, (t, C)) + np.arange(C)[None, :]


def test_zero_predictor_is_the_existing_coder() -> None:
    rng = np.random.default_rng(1)
    q = _motion(rng, 25)
    pred = SpeechMotionPredictor.create(C, H)
    audio = _audio(rng, 25 + H)
    assert encode_predicted_motion(q, pred, audio) == encode_motion(q)
    assert encode_predicted_motion(q[5:], pred, audio[5:], q[4]) == encode_motion(q[5:], q[4])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("intra", [True, False])
def test_round_trip(seed: int, intra: bool) -> None:
    rng = np.random.default_rng(seed)
    pred = _random_predictor(seed)
    q = _motion(rng, 30)
    audio = _audio(rng, 30 + H, unknown=3 + seed)
    prev = None if intra else q[:2][::-1] - 3
    data = encode_predicted_motion(q, pred, audio, prev)
    out = decode_predicted_motion(data, 30, C, pred, audio, prev)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, q)


def test_extreme_residuals_use_escapes() -> None:
    rng = np.random.default_rng(5)
    pred = _random_predictor(5)
    q = rng.choice([-QMAX, QMAX, 0, 300, -300], size=(12, C))
    audio = _audio(rng, 12 + H)
    for prev in (None, np.full(C, QMAX), np.stack([np.full(C, -QMAX), np.full(C, QMAX)])):
        data = encode_predicted_motion(q, pred, audio, prev)
        np.testing.assert_array_equal(decode_predicted_motion(data, 12, C, pred, audio, prev), q)


def test_single_frame_and_empty_packets() -> None:
    rng = np.random.default_rng(3)
    pred = _random_predictor(3)
    q = _motion(rng, 1)
    data = encode_predicted_motion(q, pred, _audio(rng, 1 + H))
    np.testing.assert_array_equal(decode_predicted_motion(data, 1, C, pred, _audio(rng, 1 + H)), q)
    assert encode_predicted_motion(np.zeros((0, C), np.int32), pred, np.full((H, 4), -1)) == b""
    assert decode_predicted_motion(b"", 0, C, pred, np.full((H, 4), -1)).shape == (0, C)


def test_audio_changes_the_prediction_but_unknown_rows_decode() -> None:
    pred = _random_predictor(7)
    past = np.array([np.arange(C), np.arange(C) - 1])
    a = np.array([[1, 2, 3, 4]] * (H + 1))
    b = np.array([[1, 2, 15, 0]] * (H + 1))
    pa, ia = pred.predict(past, a)
    pb, _ = pred.predict(past, b)
    pu, iu = pred.predict(past, np.full((H + 1, 4), -1))
    assert not np.array_equal(pa, pb)
    assert pa.shape == pu.shape == (C,)
    assert ((0 <= ia) & (ia < 32)).all() and ((0 <= iu) & (iu < 32)).all()


_SCRIPT = """
import hashlib, sys, numpy as np
sys.path.insert(0, {root!r})
from tests.avcc.test_motion_pred import _random_predictor, _motion, _audio, H
from avfc.avcc.motion_pred import encode_predicted_motion
rng = np.random.default_rng(11)
pred = _random_predictor(11)
q = _motion(rng, 25); audio = _audio(rng, 25 + H, unknown=2)
p, i = pred.predict(q[:2][::-1], audio[:H + 1])
h = hashlib.sha256(encode_predicted_motion(q, pred, audio) + p.astype('<i8').tobytes() + i.astype('<i8').tobytes())
print(h.hexdigest())
"""


def test_deterministic_across_processes() -> None:
    import pathlib
    root = str(pathlib.Path(__file__).resolve().parents[2])
    rng = np.random.default_rng(11)
    pred = _random_predictor(11)
    q = _motion(rng, 25)
    audio = _audio(rng, 25 + H, unknown=2)
    p, i = pred.predict(q[:2][::-1], audio[:H + 1])
    want = hashlib.sha256(encode_predicted_motion(q, pred, audio) + p.astype("<i8").tobytes()
                          + i.astype("<i8").tobytes()).hexdigest()
    got = subprocess.run([sys.executable, "-c", _SCRIPT.format(root=root)], capture_output=True,
                         text=True, check=True, cwd=root).stdout.strip()
    assert got == want


def test_malformed_packets_raise() -> None:
    rng = np.random.default_rng(4)
    pred = _random_predictor(4)
    q = _motion(rng, 10)
    audio = _audio(rng, 10 + H)
    data = encode_predicted_motion(q, pred, audio)
    bad = [data[:-4], data + b"\0\0\0\1", data[:-1], b"\0" * 4, b"\xff" * len(data),
           b"\1" * (1 << 16)]
    for d in bad:
        with pytest.raises(EntropyError):
            decode_predicted_motion(d, 10, C, pred, audio)
    with pytest.raises(EntropyError):
        decode_predicted_motion(data, 11, C, pred, _audio(rng, 11 + H))
    for args in [(data, 10, C + 1, pred, audio), (data, 10, C, pred, audio[1:]),
                 (data, 10, C, pred, audio.astype(float)), (data, -1, C, pred, audio),
                 (data, 10, C, "pred", audio), ("x", 10, C, pred, audio)]:
        with pytest.raises(EntropyError):
            decode_predicted_motion(*args)


def test_bad_encoder_arguments_raise() -> None:
    rng = np.random.default_rng(6)
    pred = _random_predictor(6)
    q = _motion(rng, 5)
    audio = _audio(rng, 5 + H)
    bad_audio = audio.copy()
    bad_audio[1, 2] = 16
    half_unknown = audio.copy()
    half_unknown[0, :2] = -1
    for args in [(q, pred, bad_audio), (q, pred, half_unknown), (q[:, :-1], pred, audio),
                 (q.astype(float), pred, audio), (q + QMAX, pred, audio)]:
        with pytest.raises(EntropyError):
            encode_predicted_motion(*args)
    with pytest.raises(EntropyError):
        encode_predicted_motion(q, pred, audio, np.zeros((3, C), np.int32))
    with pytest.raises(EntropyError):
        pred.predict(q[:3], audio[:H + 1])


def test_arrays_round_trip_and_validation() -> None:
    pred = _random_predictor(8)
    arrays = pred.to_arrays("x.")
    again = SpeechMotionPredictor.from_arrays(arrays, "x.")
    for k, v in again.to_arrays("x.").items():
        np.testing.assert_array_equal(v, arrays[k])
    mutations = {
        "x.cross": lambda a: np.triu(np.ones_like(a)),
        "x.bias": lambda a: a.astype(np.float64),
        "x.energy": lambda a: a[:, :-1],
        "x.w_delta": lambda a: a + (1 << 30),
        "x.index_offset": lambda a: a + 100,
        "x.meta": lambda a: np.array([2, *a[1:]]),
    }
    for key, fn in mutations.items():
        broken = dict(arrays)
        broken[key] = fn(arrays[key])
        with pytest.raises(EntropyError):
            SpeechMotionPredictor.from_arrays(broken, "x.")
    missing = dict(arrays)
    del missing["x.voiced"]
    with pytest.raises(EntropyError):
        SpeechMotionPredictor.from_arrays(missing, "x.")
    meta = dict(arrays)
    meta["x.meta"] = np.array([1, C, 99, 8])
    with pytest.raises(EntropyError):
        SpeechMotionPredictor.from_arrays(meta, "x.")


def _synthetic_clips(n: int, t: int, seed: int):
    """Clips whose keypoints move together, driven by the speech energy plus noise."""
    from avfc.train.avcc_data import AvccClip

    rng = np.random.default_rng(seed)
    clips = []
    for k in range(n):
        energy = np.repeat(rng.integers(0, 16, t // 5 + 1), 5)[:t]
        fields = np.stack([rng.integers(0, 512, t), rng.integers(0, 512, t), energy,
                           np.where(energy > 3, rng.integers(1, 64, t), 0)], axis=1).astype(np.int64)
        drive = np.convolve(energy.astype(float), np.ones(3) / 3, mode="same")
        common = np.cumsum(rng.normal(0, 0.6, t)) + 0.8 * drive
        q = np.rint(common[:, None] * np.linspace(0.5, 1.5, C)[None, :] + rng.normal(0, 0.3, (t, C)))
        q = q.astype(np.int32)
        clips.append(AvccClip(name=f"s{k}", q=q, fields=fields, ref_q=q[0].copy(),
                              key=np.zeros((4, 4, 3), np.uint8)))
    return clips


def test_training_lowers_bits_on_held_out_synthetic_data() -> None:
    from avfc.train.avcc_motion import fit_predictor, motion_bits

    train, test = _synthetic_clips(4, 100, 0), _synthetic_clips(2, 100, 1)
    pred = fit_predictor(train, history=2, lam=1.0)
    base, frames = motion_bits(test, None)
    ours, _ = motion_bits(test, pred)
    assert frames == 200
    assert ours < 0.9 * base
    # the speech terms carry part of it: the energy drives the synthetic motion
    assert ours < motion_bits(test, fit_predictor(train, history=2, lam=1.0, use_audio=False))[0]
    # and what it codes decodes back exactly
    from avfc.train.avcc_motion import audio_window
    clip = test[0]
    audio = audio_window(clip.fields, 0, 25, pred.history)
    data = encode_predicted_motion(clip.q[:25], pred, audio)
    np.testing.assert_array_equal(decode_predicted_motion(data, 25, C, pred, audio), clip.q[:25])
