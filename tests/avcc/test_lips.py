"""Lips from speech: integer generation, validation, determinism and a tiny training run."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from avfc.avcc.lips import VQ_BUCKETS, LipsFromSpeech, lips_target
from avfc.errors import EntropyError

C, H, L = 6, 2, 1


def _audio(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.integers(0, 512, n), rng.integers(0, 512, n),
                     rng.integers(0, 16, n), rng.integers(0, 64, n)], axis=1)


def _random_model(seed: int) -> LipsFromSpeech:
    rng = np.random.default_rng(seed)
    w = H + L + 1
    return LipsFromSpeech.create(
        C, H, L, 8, bias=rng.integers(-500, 500, C),
        energy=rng.integers(-900, 900, (w, 17, C)), voiced=rng.integers(-900, 900, (w, 3, C)),
        vq=rng.integers(-900, 900, (w, VQ_BUCKETS + 1, C)))


def test_zero_model_holds_the_key_picture() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(-40, 40, C)
    out = LipsFromSpeech.create(C, H, L).generate(ref, _audio(rng, 10 + H + L))
    assert out.shape == (10, C) and out.dtype == np.int32
    assert (out == ref[None, :]).all()


def test_head_stays_at_the_reference_and_speech_moves_the_shape() -> None:
    rng = np.random.default_rng(1)
    model = _random_model(1)
    ref = rng.integers(-40, 40, C)
    audio = _audio(rng, 40 + H + L)
    audio[5:9] = -1  # unknown rows are allowed
    out = model.generate(ref, audio)
    off = out.astype(np.int64) - ref[None, :]
    for axis in range(2):
        mean = off[:, axis::2].mean(axis=1)
        assert (np.abs(mean) < 1.0).all()  # only the remainder of an integer division is left
    assert np.abs(off).sum() > 0
    assert not np.array_equal(out, model.generate(ref, _audio(np.random.default_rng(9), 40 + H + L)))


def test_bad_input_raises() -> None:
    rng = np.random.default_rng(2)
    model = _random_model(2)
    good = _audio(rng, 5 + H + L)
    bad = good.copy()
    bad[0, 3] = 64
    for ref, audio in [(np.zeros(C + 1, int), good), (np.zeros(C), good), (np.zeros(C, int), bad),
                       (np.zeros(C, int), good[:H]), (np.zeros(C, int), good.astype(float)),
                       (np.zeros(C, int), good[:, :3])]:
        with pytest.raises(EntropyError):
            model.generate(ref, audio)
    assert model.generate(np.zeros(C, int), good[:H + L]).shape == (0, C)


def test_arrays_round_trip_and_validation() -> None:
    model = _random_model(3)
    arrays = model.to_arrays()
    again = LipsFromSpeech.from_arrays(arrays)
    for k, v in again.to_arrays().items():
        np.testing.assert_array_equal(v, arrays[k])
    for key, value in [("lips.vq", arrays["lips.vq"][:, :-1]), ("lips.bias", arrays["lips.bias"] * 1.0),
                       ("lips.energy", arrays["lips.energy"] + (1 << 30)),
                       ("lips.meta", np.array([1, C, H, L, 4, 8])), ("lips.meta", np.array([1, C, H]))]:
        broken = dict(arrays)
        broken[key] = value
        with pytest.raises(EntropyError):
            LipsFromSpeech.from_arrays(broken)
    with pytest.raises(EntropyError):
        LipsFromSpeech.from_arrays({k: v for k, v in arrays.items() if k != "lips.voiced"})


_SCRIPT = """
import hashlib, sys, numpy as np
sys.path.insert(0, {root!r})
from tests.avcc.test_lips import _random_model, _audio, H, L, C
rng = np.random.default_rng(4)
out = _random_model(4).generate(rng.integers(-40, 40, C), _audio(rng, 30 + H + L))
print(hashlib.sha256(out.astype('<i4').tobytes()).hexdigest())
"""


def test_deterministic_across_processes() -> None:
    root = str(pathlib.Path(__file__).resolve().parents[2])
    rng = np.random.default_rng(4)
    out = _random_model(4).generate(rng.integers(-40, 40, C), _audio(rng, 30 + H + L))
    want = hashlib.sha256(out.astype("<i4").tobytes()).hexdigest()
    got = subprocess.run([sys.executable, "-c", _SCRIPT.format(root=root)], capture_output=True,
                         text=True, check=True, cwd=root).stdout.strip()
    assert got == want


def test_training_learns_speech_driven_shape() -> None:
    from avfc.train.avcc_data import AvccClip
    from avfc.train.avcc_motion import audio_window, fit_lips

    def clips(seed: int, n: int):
        rng = np.random.default_rng(seed)
        out = []
        for k in range(n):
            t = 120
            energy = np.repeat(rng.integers(0, 16, t // 4 + 1), 4)[:t]
            fields = np.stack([rng.integers(0, 512, t), rng.integers(0, 512, t), energy,
                               rng.integers(0, 64, t)], axis=1).astype(np.int64)
            ref = rng.integers(-30, 30, C)
            head = np.cumsum(rng.integers(-1, 2, (t, 1)), axis=0)  # common motion: not predictable
            jaw = np.zeros((t, C))
            jaw[:, 1] = energy * 0.8  # "lower lip" y moves with loudness
            q = np.rint(ref[None, :] + head + jaw + rng.normal(0, 0.3, (t, C))).astype(np.int32)
            out.append(AvccClip(name=f"l{k}", q=q, fields=fields, ref_q=ref.astype(np.int32),
                                key=np.zeros((4, 4, 3), np.uint8)))
        return out

    model = fit_lips(clips(0, 4), history=1, lookahead=1, lam=1.0)
    err_model = err_still = 0.0
    for clip in clips(1, 2):
        audio = audio_window(clip.fields, 0, clip.num_frames, model.history, model.lookahead)
        gen = model.generate(clip.ref_q, audio)
        target = lips_target(clip.q, clip.ref_q)
        err_model += np.abs(lips_target(gen, clip.ref_q) - target).mean()
        err_still += np.abs(target).mean()
    assert err_model < 0.6 * err_still
