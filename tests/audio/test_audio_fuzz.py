"""Garbage into unpack/decode: only avfc errors come out, and accepted data is canonical."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avfc.audio import AudioCodec, make_audio_codec
from avfc.errors import EntropyError, FormatError

from ._signals import bursty_speech

CODECS = [make_audio_codec(1, 700), make_audio_codec(1, 1300), make_audio_codec(1, 3200),
          make_audio_codec(2, 6000)]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_unpack(codec: AudioCodec, data: bytes, n: int) -> None:
    """unpack either raises FormatError/EntropyError or returns n tokens that re-pack to data."""
    try:
        tokens = codec.unpack(data, n)
    except (FormatError, EntropyError):
        return
    assert len(tokens) == n
    assert codec.pack(tokens) == data
    try:
        y = codec.decode(tokens, n * codec.frame_samples)
    except EntropyError:
        return
    assert y.shape == (n * codec.frame_samples,) and np.all(np.isfinite(y))


@pytest.mark.parametrize("codec", CODECS, ids=repr)
@FUZZ
@given(data=st.binary(max_size=200), n=st.integers(-2, 60))
def test_random_bytes(codec: AudioCodec, data: bytes, n: int) -> None:
    check_unpack(codec, data, n)


@pytest.mark.parametrize("codec", CODECS, ids=repr)
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 3), extra=st.binary(max_size=3), dn=st.integers(-1, 1))
def test_mutated_units(codec: AudioCodec, edits: list, cut: int, extra: bytes, dn: int) -> None:
    tokens = codec.encode(bursty_speech(0.3, seed=1))
    data = bytearray(codec.pack(tokens))
    for pos, value in edits:
        data[pos % len(data)] = value
    data = bytes(data[:len(data) - cut]) + extra
    check_unpack(codec, data, len(tokens) + dn)
