"""The library decodes AVCC packets exactly as the independent reference of docs/bitstream.md part F."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from avfc.avcc.motion_pred import decode_predicted_motion, encode_predicted_motion
from avfc.avcc.zoo import AVCC_ZOO, DEFAULT_AVCC, load_avcc, weights_dir

from . import avcc_reference as ref


@pytest.fixture(scope="module")
def shipped():
    arrays = load_file(str(weights_dir() / AVCC_ZOO[DEFAULT_AVCC].filename))
    return load_avcc(DEFAULT_AVCC), arrays


def _fields(rng, n, p_unknown=0.0):
    out, prev = [], None
    for _ in range(n):
        if rng.random() < p_unknown:
            out.append([-1, -1, -1, -1])
            continue
        if prev is not None and rng.random() < 0.5:
            f = list(prev)
            f[3] = int(np.clip(f[3] + rng.integers(-3, 4), 0, 63))
        else:
            f = [int(rng.integers(0, 512)), int(rng.integers(0, 512)), int(rng.integers(0, 16)),
                 int(rng.integers(0, 64))]
        out.append(f)
        prev = f
    return out


def test_audio_ctx_packets_decode_like_the_reference(shipped):
    bundle, arrays = shipped
    rng = np.random.default_rng(1)
    for _ in range(10):
        n = int(rng.integers(1, 40))
        tokens = [(a << 19) | (b << 10) | (e << 6) | p for a, b, e, p in _fields(rng, n)]
        data = bundle.audio.encode(tokens)
        assert ref.audio_decode(data, n, arrays) == tokens == bundle.audio.decode(data, n)


def test_motion_pred_packets_decode_like_the_reference(shipped):
    bundle, arrays = shipped
    rng = np.random.default_rng(2)
    h = bundle.motion.history
    for trial in range(12):
        t, c = int(rng.integers(1, 20)), 20
        step = [1, 3, 30, 400][trial % 4]
        q = np.clip(np.cumsum(rng.integers(-step, step + 1, (t, c)), axis=0) + rng.integers(-100, 100, c),
                    -32767, 32767)
        audio = np.array(_fields(rng, t + h, p_unknown=0.2), dtype=np.int64)
        prev = None if trial % 3 == 0 else rng.integers(-200, 200, (2, c))
        data = encode_predicted_motion(q, bundle.motion, audio, prev)
        np.testing.assert_array_equal(decode_predicted_motion(data, t, c, bundle.motion, audio, prev), q)
        mine = ref.motion_decode(data, t, c, arrays, audio.tolist(), None if prev is None else prev.tolist())
        np.testing.assert_array_equal(np.array(mine), q)


def test_lips_frames_match_the_reference(shipped):
    bundle, arrays = shipped
    lips = bundle.lips
    rng = np.random.default_rng(3)
    for _ in range(10):
        ref_q = rng.integers(-300, 300, 20)
        rows = np.array(_fields(rng, lips.history + lips.lookahead + 1, p_unknown=0.2), dtype=np.int64)
        assert [int(v) for v in lips.generate(ref_q, rows)[0]] == ref.lips_frame(arrays, ref_q.tolist(), rows.tolist())
