"""The shipped default model (MRDAC) through the whole codec."""

from __future__ import annotations

import numpy as np

import avfc
from avfc.config import DEFAULT_MODEL as CONFIG_DEFAULT
from avfc.models.zoo import DEFAULT_MODEL, ZOO, load_model
from synthetic import speech_like, talking_face


def test_config_default_is_the_zoo_default_and_is_shipped():
    assert CONFIG_DEFAULT == DEFAULT_MODEL and DEFAULT_MODEL in ZOO
    m = load_model(DEFAULT_MODEL, 128)
    assert m.size == 128 and m.num_kp * m.kp_dim == m.motion_channels


def test_default_model_round_trip_moves_the_face():
    frames = talking_face(20, 128, 128)
    res = avfc.encode(frames, pcm=speech_like(0.8), size=128, key_qp=30, packet_frames=10)
    assert res.header.model_name == DEFAULT_MODEL
    out = avfc.decode(res.data)
    assert out.frames.shape == frames.shape and not out.issues
    again = avfc.decode(res.data)
    np.testing.assert_array_equal(out.frames, again.frames)  # same machine: identical pixels
    # the motion is used: rendered frames are not the key frame held still
    assert np.abs(out.frames[10].astype(int) - out.frames[0].astype(int)).mean() > 0.5
