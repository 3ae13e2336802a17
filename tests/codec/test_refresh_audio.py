"""Audio placement around REFRESH units in every stream that has them (2.1 and 2.2 as in 2.3, docs/bitstream.md
A.14.2): avfc's encoder cuts audio units at the audio frame that holds each refresh frame's time and writes the
units from there on after the REFRESH, however the caller feeds it, so a receiver that joins at a REFRESH gets
every audio frame it decodes."""

from __future__ import annotations

import numpy as np
import pytest

from avfc import bitstream as bs
from avfc.avcc.zoo import DEFAULT_AVCC
from avfc.codec import Decoder, Encoder
from avfc.codec.adapt import DecoderParamSet
from avfc.config import EncoderConfig
from avfc.media.synthetic import speech_like, talking_face
from avfc.models.zoo import load_model

N, SIZE = 30, 64
BASE = dict(size=SIZE, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1", key_qp=50,
            packet_frames=5, motion_hold=False, effort="live", crop="none")
#: REFRESH units at frames 10 and 20 (at 30 fps with packets of 7: at 7, 14, 21 and 28)
CONFIGS = {
    # 25 fps, 40-ms audio frames: audio frame k starts with video frame k
    "codec2-700C": dict(refresh_interval=0.4),
    # 20-ms audio frames: two per video frame
    "codec2-3200": dict(refresh_interval=0.4, codec2_mode="3200"),
    # 30 fps, 40-ms Opus frames: refresh frames 7, 14, 21, 28 fall inside audio frames 5, 11, 17, 23
    "opus-30fps": dict(refresh_interval=0.2, fps=30, audio="opus", packet_frames=7),
    # 2.2: decoder parameters, sent again after each REFRESH
    "decoder-params": dict(refresh_interval=0.4, adapt_decoder=True),
}
ORDERS = ("frames first", "audio first", "audio late", "interleaved")


def cut(f: int, header: bs.SequenceHeader) -> int:
    """The audio frame holding the time of video frame ``f``: the first a decoder that joins at ``f`` decodes."""
    return (f * int(header.fps_den) * int(header.audio_sample_rate)
            // (int(header.fps_num) * int(header.audio_frame_samples)))


def encode(config: EncoderConfig, order: str, seconds_of_audio: float | None = None) -> bytes:
    frames = talking_face(N, SIZE, SIZE, seed=7)
    pcm = speech_like(seconds_of_audio or N / config.fps, seed=7)
    per_frame = 16000 // config.fps
    params = None
    if config.adapt_decoder:  # the encoder takes fitted parameters; any set of the right size will do here
        params = DecoderParamSet(shift=8, values=tuple([3, -2] * (load_model(config.model, SIZE).adapt_size() // 2)))
    enc = Encoder(config, frame_count=N, decoder_params=params)
    if order == "frames first":
        enc.push_frames(frames)
        enc.push_audio(pcm)
    elif order == "audio first":  # a live sender whose audio runs ahead
        enc.push_audio(pcm)
        enc.push_frames(frames)
    elif order == "audio late":  # each packet's audio after the next packet's frames
        step = 5
        for i in range(0, N, step):
            enc.push_frames(frames[i:i + step])
            if i >= step:
                enc.push_audio(pcm[(i - step) * per_frame:i * per_frame])
        enc.push_audio(pcm[(N - step) * per_frame:])
    else:  # each 3 frames' audio just before them
        for i in range(0, N, 3):
            enc.push_audio(pcm[i * per_frame:(i + 3) * per_frame])
            enc.push_frames(frames[i:i + 3])
        enc.push_audio(pcm[N * per_frame:])
    enc.close()
    return enc.read()


def check_placement(data: bytes) -> list[int]:
    """Assert the placement rule of A.14.2 on ``data`` (and that its audio units tile the audio frames once, in
    order); return the frames of its REFRESH units."""
    parsed = bs.parse_stream(data)
    units = [(u, bs.decode_payload(u, 2)) for u in parsed.units]
    refreshes = [p.frame_index for u, p in units if u.type == bs.UnitType.REFRESH]
    assert refreshes
    written: set[int] = set()
    next_frame = 0
    for u, p in units:
        if u.type == bs.UnitType.REFRESH:
            written.add(p.frame_index)
        elif u.type in (bs.UnitType.AUDIO, bs.UnitType.AUDIO_CTX):
            s, e = p.first_frame, p.first_frame + p.num_frames
            assert s == next_frame
            next_frame = e
            for f in refreshes:
                c = cut(f, parsed.header)
                assert not s < c < e, (f, c, s, e)  # no unit carries audio frames on both sides of f's time
                assert e <= c or f in written, (f, c, s, e)  # one that carries frame c or later follows the REFRESH
        elif u.type == bs.UnitType.END_OF_STREAM:
            assert p.audio_frame_count == next_frame
    return refreshes


def decode(data: bytes, join: bool = False) -> Decoder:
    dec = Decoder(join=join)
    dec.push(data)
    dec.close()
    return dec


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_joiner_gets_every_audio_frame_from_the_refresh_on(name) -> None:
    """Audio pushed before the frames (before this, plain 2.1 wrote the audio of frames after a REFRESH before
    it, and a receiver joining there lost up to a packet of audio): joined at each REFRESH, the decoder has
    every audio token from the frame holding the refresh frame's time on, and they are the whole stream's."""
    config = EncoderConfig(**{**BASE, **CONFIGS[name]})
    data = encode(config, "audio first")
    version = bs.parse_stream(data).version
    assert version == (bs.VERSION_2_2 if config.adapt_decoder else bs.VERSION_2_1)
    full = decode(data)
    assert not full.issues
    total = max(full.audio_tokens) + 1
    refreshes = check_placement(data)
    for unit in bs.parse_stream(data).units:
        if unit.type != bs.UnitType.REFRESH:
            continue
        dec = decode(data[unit.offset:], join=True)
        f = dec.first_frame
        a0 = dec.audio_start_frame
        assert f in refreshes and a0 == cut(f, dec.header), (f, a0)
        assert sorted(dec.audio_tokens) == list(range(a0, total)), f  # none missing
        assert all(dec.audio_tokens[k] == full.audio_tokens[k] for k in dec.audio_tokens), f
        assert not [i for i in dec.issues if "audio" in i.kind], dec.issues
        got = dec.audio()
        start = f * 16000 // config.fps
        assert len(got) == len(full.audio()) - start
        if config.audio == "opus":  # deterministic decoding: the same samples once its state has converged
            k = len(got) // 2
            np.testing.assert_allclose(got[k:], full.audio()[start + k:], atol=1e-3)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_audio_unit_straddles_or_precedes_its_refresh(name, order) -> None:
    """However the caller feeds frames and audio, no audio unit carries audio frames on both sides of a refresh
    frame's time, and every unit carrying audio at or after it follows its REFRESH; the audio is all there, in
    order, and the motion is the same in every order."""
    config = EncoderConfig(**{**BASE, **CONFIGS[name]})
    data = encode(config, order)
    check_placement(data)
    reference = decode(encode(config, "frames first"))
    dec = decode(data)
    assert not dec.issues
    assert all(np.array_equal(dec.motion[i], reference.motion[i]) for i in range(N))
    assert dec.audio_tokens == reference.audio_tokens


def test_audio_past_the_last_frame_is_not_held_for_a_refresh_that_never_comes() -> None:
    """Audio that runs past the video's end (here to 1.6 s, past the time of frame 30, where the next REFRESH
    would be) is written at close: the stream has no such REFRESH."""
    config = EncoderConfig(**BASE, refresh_interval=0.4)
    data = encode(config, "audio first", seconds_of_audio=1.6)
    assert check_placement(data) == [10, 20]
    dec = decode(data)
    assert max(dec.audio_tokens) + 1 == 40


def test_the_audio_frame_grid_of_the_cut() -> None:
    """Where the refresh frame's time falls inside an audio frame (30 fps, 40-ms frames), the cut is at that
    audio frame, which starts before the refresh time: frame 7 at 30 fps is at 233.3 ms, inside audio frame 5
    (200-240 ms); where they align, the audio frame that starts with it (frame 10 at 25 fps: 400 ms, audio frame
    10 of 40 ms, 20 of 20 ms)."""
    header = bs.parse_stream(encode(EncoderConfig(**{**BASE, **CONFIGS["opus-30fps"]}), "frames first")).header
    assert [cut(f, header) for f in (7, 14, 21, 28)] == [5, 11, 17, 23]
    for name, expected in (("codec2-700C", 10), ("codec2-3200", 20)):
        enc = Encoder(EncoderConfig(**{**BASE, **CONFIGS[name]}))
        assert enc._audio_cut(10) == expected
        assert enc._refresh_of_audio(expected - 1) == 0 and enc._refresh_of_audio(expected) == 10


@pytest.mark.parametrize("mode", [
    {},
    {"audio": "opus", "fps": 30, "packet_frames": 7},
    {"key_qp": None, "bitrate_kbps": 5.0},
    {"motion_stride": 3},
    {"avcc": DEFAULT_AVCC, "motion_source": "predicted", "audio_coder": "context"},
    {"avcc": DEFAULT_AVCC, "motion_source": "speech", "audio_coder": "context"},
])
def test_without_refresh_audio_units_are_written_as_before(mode) -> None:
    """Refresh off: nothing is held or cut (the stream's bytes were compared with the encoder before this
    placement in these modes and feeding orders: identical). Fed audio first, every full audio packet is
    written at once, before the first key frame (lips from speech excepted: there the audio never runs ahead
    of the key frames, F.6.4), on the plain grid of one packet's duration from audio frame 0."""
    config = EncoderConfig(**{**BASE, **mode})
    data = encode(config, "audio first")
    parsed = bs.parse_stream(data)
    assert parsed.version == bs.VERSION_2_0
    audio = [bs.decode_payload(u, 2) for u in parsed.units if u.type in (bs.UnitType.AUDIO, bs.UnitType.AUDIO_CTX)]
    per_packet = max(1, round(config.packet_frames / config.fps * 16000 / 640))
    assert [p.first_frame for p in audio] == list(range(0, per_packet * len(audio), per_packet))
    assert all(p.num_frames == per_packet for p in audio[:-1])
    if config.motion_source != "speech":
        first_key = next(i for i, u in enumerate(parsed.units) if u.type == bs.UnitType.KEY_FRAME)
        assert sum(u.type in (bs.UnitType.AUDIO, bs.UnitType.AUDIO_CTX) for u in parsed.units[:first_key]) >= (
            len(audio) - 1)
