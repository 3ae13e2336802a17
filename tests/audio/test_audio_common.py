"""Interface-level behaviour shared by every audio codec and mode."""

from __future__ import annotations

import numpy as np
import pytest

from avfc.audio import (
    AudioCodec,
    CodecId,
    bitrate_bps,
    make_audio_codec,
    make_audio_codec_by_name,
    split_packets,
)
from avfc.errors import ConfigError, MediaError

from ._signals import bursty_speech

ALL = [(1, 700), (1, 1300), (1, 1600), (1, 3200), (2, 6000), (2, 12000), (2, 24000)]


@pytest.fixture(params=ALL, ids=lambda p: f"{'codec2' if p[0] == 1 else 'opus'}-{p[1]}")
def codec(request: pytest.FixtureRequest) -> AudioCodec:
    return make_audio_codec(*request.param)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return bursty_speech(1.0, seed=3)


@pytest.mark.parametrize("name, mode, codec_id, param, frame_samples", [
    ("codec2", "700C", 1, 700, 640),
    ("codec2", "700c", 1, 700, 640),
    ("Codec2", 1300, 1, 1300, 640),
    ("codec2", "1600", 1, 1600, 640),
    ("codec2", 3200, 1, 3200, 320),
    ("opus", 6000, 2, 6000, 640),
    ("OPUS", "24000", 2, 24000, 640),
])
def test_factories_agree(name: str, mode: object, codec_id: int, param: int, frame_samples: int) -> None:
    by_name = make_audio_codec_by_name(name, mode)  # type: ignore[arg-type]
    by_id = make_audio_codec(codec_id, param)
    for c in (by_name, by_id):
        assert (c.codec_id, c.param, c.sample_rate, c.frame_samples) == \
            (codec_id, param, 16000, frame_samples)
    assert CodecId(codec_id).name == ("CODEC2" if codec_id == 1 else "OPUS")


@pytest.mark.parametrize("args", [(0, 700), (3, 700), (1, 2400), (1, 450), (1, 0), (2, 5999), (2, 24001),
                                  (2, "6000"), (2, 6000.0), (2, True)])
def test_make_audio_codec_rejects(args: tuple) -> None:
    with pytest.raises(ConfigError):
        make_audio_codec(*args)


@pytest.mark.parametrize("name, mode", [("codec2", "2400"), ("codec2", "700B"), ("codec2", 700.0),
                                        ("codec2", True), ("opus", "6k"), ("opus", 100), ("speex", 8000)])
def test_make_audio_codec_by_name_rejects(name: str, mode: object) -> None:
    with pytest.raises(ConfigError):
        make_audio_codec_by_name(name, mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("args, bps", [((1, 700), 700.0), ((1, 1300), 1300.0), ((1, 1600), 1600.0),
                                       ((1, 3200), 3200.0), ((2, 6000), 6000.0), ((2, 24000), 24000.0),
                                       ((2, 6100), 6200.0), ((2, 7777), 7800.0)])
def test_bitrate_bps(args: tuple, bps: float) -> None:
    assert bitrate_bps(make_audio_codec(*args)) == bps


@pytest.mark.parametrize("n", [0, 1, 319, 320, 321, 639, 640, 641, 5000])
def test_token_count_and_decoded_length(codec: AudioCodec, n: int) -> None:
    x = bursty_speech(1.0, seed=1)[:n]
    tokens = codec.encode(x)
    assert len(tokens) == -(-n // codec.frame_samples) == codec.num_frames(n)
    y = codec.decode(tokens, n)
    assert y.dtype == np.float32 and y.shape == (n,)
    assert codec.unpack(codec.pack(tokens), len(tokens)) == tokens


def test_pack_unpack_round_trip_and_rate(codec: AudioCodec, speech: np.ndarray) -> None:
    tokens = codec.encode(speech)
    data = codec.pack(tokens)
    assert codec.unpack(data, len(tokens)) == tokens
    # the payload is the exact token rate, plus at most Opus's one length byte per unit
    payload_bits = bitrate_bps(codec) * len(tokens) * codec.frame_samples / codec.sample_rate
    assert payload_bits <= 8 * len(data) <= payload_bits + 8 + 7


def test_deterministic(codec: AudioCodec, speech: np.ndarray) -> None:
    a = codec.encode(speech)
    y1 = codec.decode(a, len(speech))  # decoding in between must not disturb the encoder
    b = codec.encode(speech.copy())
    assert a == b
    assert codec.pack(a) == codec.pack(b)
    y2 = codec.decode(b, len(speech))
    if codec.codec_id == CodecId.OPUS:
        assert np.array_equal(y1, y2)
    else:  # libcodec2 draws unvoiced phases from a process-global generator: close, not equal
        assert np.corrcoef(y1, y2)[0, 1] > 0.99


def test_streaming_matches_one_shot(codec: AudioCodec, speech: np.ndarray) -> None:
    reference = codec.encode(speech)
    rng = np.random.default_rng(7)
    enc = codec.stream_encoder()
    tokens, pos = [], 0
    while pos < len(speech):
        n = int(rng.integers(0, 1500))
        tokens += enc.push(speech[pos:pos + n])
        pos += n
    tokens += enc.flush()
    assert tokens == reference
    with pytest.raises(ConfigError):
        enc.push(speech[:10])
    with pytest.raises(ConfigError):
        enc.flush()


def test_float64_input_is_accepted(codec: AudioCodec, speech: np.ndarray) -> None:
    assert codec.encode(speech.astype(np.float64)) == codec.encode(speech)


@pytest.mark.parametrize("bad", [np.zeros((2, 320), np.float32), np.zeros(320, np.int16),
                                 np.array([0.0, np.nan] * 200, np.float32), np.array([np.inf] * 10)])
def test_bad_pcm_is_a_media_error(codec: AudioCodec, bad: np.ndarray) -> None:
    with pytest.raises(MediaError):
        codec.encode(bad)


def test_decode_checks_num_samples(codec: AudioCodec, speech: np.ndarray) -> None:
    tokens = codec.encode(speech[:1000])
    limit = len(tokens) * codec.frame_samples
    assert len(codec.decode(tokens, limit)) == limit
    for bad in (-1, limit + 1, 10.0):
        with pytest.raises(ConfigError):
            codec.decode(tokens, bad)  # type: ignore[arg-type]


def test_all_frames_lost_is_silence(codec: AudioCodec) -> None:
    y = codec.decode([None] * 5, 5 * codec.frame_samples - 7)
    assert len(y) == 5 * codec.frame_samples - 7 and not y.any()


def test_split_packets() -> None:
    tokens = list(range(11))
    pieces = split_packets(tokens, 4)
    assert pieces == [(0, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (8, [8, 9, 10])]
    assert split_packets(tokens, 11) == [(0, tokens)]
    assert split_packets([], 3) == []
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError):
            split_packets(tokens, bad)  # type: ignore[arg-type]
