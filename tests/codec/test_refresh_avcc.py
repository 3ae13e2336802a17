"""Format 2.3: REFRESH with the AVCC modes. At a REFRESH every cross-modal history restarts (docs/bitstream.md
A.14.7, E.8): a receiver that joins there decodes the same integers as one that read everything, and a unit lost
before a REFRESH costs nothing after it."""

from __future__ import annotations


import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.avcc.zoo import DEFAULT_AVCC
from avfc.bitstream.units import encode_preamble, encode_unit
from avfc.codec import Decoder, Encoder
from avfc.config import EncoderConfig
from avfc.media.synthetic import speech_like, talking_face

N, SIZE = 30, 64
#: packets of 5 frames, a REFRESH every 0.4 s = 10 frames: at frames 10 and 20
SETTINGS = dict(size=SIZE, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1", key_qp=50,
                packet_frames=5, motion_hold=False, effort="live", crop="none", avcc=DEFAULT_AVCC,
                refresh_interval=0.4)
MODES = {
    "predicted": dict(motion_source="predicted", audio_coder="context", intra_period=3),
    "predicted-raw-audio": dict(motion_source="predicted"),
    "speech": dict(motion_source="speech", audio_coder="context", max_refs=2),
    "context-audio": dict(audio_coder="context"),
}


@pytest.fixture(scope="module")
def media():
    return talking_face(N, SIZE, SIZE, seed=5), speech_like(N / 25, seed=5)


@pytest.fixture(scope="module")
def streams(media) -> dict[str, bytes]:
    frames, pcm = media
    return {name: avfc.encode(frames, pcm=pcm, **SETTINGS, **mode).data for name, mode in MODES.items()}


def decode(data: bytes, join: bool = False) -> Decoder:
    dec = Decoder(join=join, keep_motion=True)
    dec.push(data)
    dec.close()
    return dec


def units(data: bytes) -> list[tuple[bs.Unit, object]]:
    return [(u, bs.decode_payload(u, 2)) for u in bs.parse_stream(data).units]


def assert_same_from(dec: Decoder, full: Decoder, whole: np.ndarray, f: int) -> None:
    """``dec`` decoded frames ``f..`` exactly as ``full``: motion integers, audio tokens and rendered frames."""
    assert dec.first_frame == f
    assert np.array_equal(dec.pull_frames(), whole[f:])
    assert all(np.array_equal(dec.motion.get(i, -1), full.motion.get(i, -1)) for i in range(f, N))
    assert {k: t for k, t in dec.audio_tokens.items() if k >= f} == {
        k: t for k, t in full.audio_tokens.items() if k >= f}


def test_the_config_allows_refresh_with_predicted_and_speech() -> None:
    for mode in MODES.values():
        assert EncoderConfig.make(**SETTINGS, **mode).refresh_frames() == 10


@pytest.mark.parametrize("name", MODES)
def test_a_join_at_a_refresh_decodes_like_the_whole_stream(streams, name) -> None:
    """From each REFRESH a joining decoder gets the whole stream's motion integers, audio tokens and frames."""
    data = streams[name]
    assert bs.parse_stream(data).version == bs.VERSION_2_3
    full = decode(data)
    whole = full.pull_frames()
    assert not full.issues and len(whole) == N
    at = [(u, p) for u, p in units(data) if u.type == bs.UnitType.REFRESH]
    assert [p.frame_index for _, p in at] == [10, 20]
    for unit, p in at:
        for cut in (unit.offset - 1, unit.offset):
            dec = decode(data[cut:], join=True)
            assert all(i.kind in ("join", "ignored") for i in dec.issues), dec.issues
            assert_same_from(dec, full, whole, p.frame_index)


@pytest.mark.parametrize("name", ["predicted", "speech"])
def test_without_the_restart_a_joiner_would_decode_other_motion(streams, name, monkeypatch) -> None:
    """The restart is what makes the join exact: a decoder that reads the audio before the REFRESH (as 2.1 did)
    decodes the whole stream to other motion than the joiner, which has no such audio."""
    data = streams[name]
    monkeypatch.setattr(Decoder, "_history_floor", lambda self, idx: 0)
    full = decode(data)
    dec = decode(data[[u for u, _ in units(data) if u.type == bs.UnitType.REFRESH][0].offset:], join=True)
    assert not all(np.array_equal(dec.motion.get(i, -1), full.motion.get(i, -1)) for i in range(10, N))


@pytest.mark.parametrize("name", ["predicted", "speech"])
def test_a_unit_lost_before_a_refresh_costs_nothing_after_it(streams, name) -> None:
    """Drop each unit of the frames before the REFRESH at frame 10 (key frame, audio, motion): from frame 10 on
    the decode is the intact stream's, with no issue reported there."""
    data = streams[name]
    full = decode(data)
    whole = full.pull_frames()
    parsed = bs.parse_stream(data)
    head = data[:parsed.units[0].offset]
    dropped = 0
    for i, (u, p) in enumerate(units(data)):
        first = getattr(p, "first_frame", getattr(p, "frame_index", None))
        if first is None or first >= 10 or u.type == bs.UnitType.REFRESH:
            continue
        dec = Decoder(keep_motion=True)
        dec.push(head + b"".join(encode_unit(int(v.type), v.payload, 2) for j, v in enumerate(parsed.units) if j != i))
        dec.close()
        frames = dec.pull_frames()
        assert len(frames) == N and np.array_equal(frames[10:], whole[10:]), (u.type, first)
        assert all(np.array_equal(dec.motion.get(k, -1), full.motion.get(k, -1)) for k in range(10, N))
        assert all(i.frames is None or i.frames[1] <= 10 for i in dec.issues), dec.issues
        dropped += 1
    assert dropped >= 3


def test_a_lost_audio_unit_before_a_refresh_conceals_only_motion_before_it(streams) -> None:
    """Predicted motion: the packet at the REFRESH reads no audio before it, so losing the audio of frames 5..9
    conceals only the motion of frames 5..9 (in 2.1 the packet at 10 read audio frames 8 and 9 and was lost
    too)."""
    data = streams["predicted"]
    parsed = bs.parse_stream(data)
    lost = [j for j, (u, p) in enumerate(units(data)) if u.type == bs.UnitType.AUDIO_CTX and p.first_frame == 5]
    dec = Decoder()
    dec.push(data[:parsed.units[0].offset] + b"".join(
        encode_unit(int(v.type), v.payload, 2) for j, v in enumerate(parsed.units) if j not in lost))
    dec.close()
    assert [i.frames for i in dec.issues if i.kind == "lost_motion"] == [(5, 10)]


@pytest.mark.parametrize("name", ["predicted", "speech", "predicted-raw-audio", "context-audio"])
def test_a_live_encoder_fed_in_any_order_writes_a_joinable_stream(media, streams, name) -> None:
    """The streaming Encoder fed all frames first, all audio first, or with the audio late: the same motion as
    the file encoder's; no audio unit crosses a REFRESH, those after it in time follow it; joins are exact
    (before 2.3 a context-audio stream fed its audio first put the audio of frames 10..24 before the REFRESH
    of frame 10, and a receiver joining there missed it)."""
    frames, pcm = media
    cfg = EncoderConfig(**SETTINGS, **MODES[name])
    reference = decode(streams[name])
    for order in ("frames first", "audio first", "audio late"):
        enc = Encoder(cfg, frame_count=N)
        if order == "frames first":
            enc.push_frames(frames)
            enc.push_audio(pcm)
        elif order == "audio first":
            enc.push_audio(pcm)
            enc.push_frames(frames)
        else:  # the audio of each packet arrives two packets after its frames
            for i in range(0, N, 5):
                enc.push_frames(frames[i:i + 5])
                if i >= 10:
                    enc.push_audio(pcm[(i - 10) * 640:(i - 5) * 640])
            enc.push_audio(pcm[(N - 10) * 640:])
        enc.close()
        data = enc.read()
        seen_refresh = 0
        for u, p in units(data):
            if u.type == bs.UnitType.REFRESH:
                seen_refresh = p.frame_index
            elif u.type in (bs.UnitType.AUDIO, bs.UnitType.AUDIO_CTX):
                end = p.first_frame + p.num_frames
                assert p.first_frame // 10 == (end - 1) // 10, (order, p)  # within one refresh interval
                assert p.first_frame < 10 or seen_refresh >= p.first_frame // 10 * 10, (order, p)
        full = decode(data)
        whole = full.pull_frames()
        assert not full.issues, (order, full.issues)
        assert all(np.array_equal(full.motion.get(i, -1), reference.motion.get(i, -1)) for i in range(N)), order
        for u, p in units(data):
            if u.type == bs.UnitType.REFRESH:
                assert_same_from(decode(data[u.offset:], join=True), full, whole, p.frame_index)


def test_older_minors_keep_their_decoding(streams) -> None:
    """The restart is a 2.3 rule: the same units labelled 2.1 decode as 2.1 did, the packet at the REFRESH
    reading the audio rows before it (A[0..H-1], audio frames 8 and 9), where a 2.3 decoder reads unknown rows."""
    data = streams["predicted"]
    parsed = bs.parse_stream(data)
    relabelled = encode_preamble((2, 1)) + encode_unit(1, parsed.header.to_bytes(2), 2) + b"".join(
        encode_unit(int(u.type), bs.Refresh(frame_index=bs.decode_payload(u, 2).frame_index,
                                            header=bs.decode_payload(u, 2).header, minor=1).to_bytes(2)
                    if u.type == bs.UnitType.REFRESH else u.payload, 2) for u in parsed.units)
    new, old = decode(data), decode(relabelled)
    assert old.version == (2, 1) and not old.issues and new.version == (2, 3)
    assert all(np.array_equal(new.motion[i], old.motion[i]) for i in range(10))
    packet = bs.MotionPred(first_frame=10, num_frames=5, flags=bs.MOTION_FLAG_INTRA, data=b"")
    h = new.avcc.motion.history
    rows_new, rows_old = new._pred_rows(packet), old._pred_rows(packet)
    assert (rows_new[:h] == -1).all() and (rows_old[:h] >= 0).all()
    assert np.array_equal(rows_new[h:], rows_old[h:]) and (rows_new[h:] >= 0).all()


def test_a_live_encoder_whose_audio_stops_holds_a_bounded_number_of_frames() -> None:
    """Predicted motion, audio stopped for 3 s while frames keep coming: the encoder holds at most
    MAX_AUDIO_WAIT_SECONDS of frames, then codes the packets before the held REFRESH as if their audio was lost
    and drops that audio when it comes late. The stream is consistent: the decoder conceals exactly those
    packets, decodes every other one to the file encoder's motion, and joins at every REFRESH exactly."""
    from avfc.codec.encoder import MAX_AUDIO_WAIT_SECONDS

    n = 100
    frames, pcm = talking_face(n, SIZE, SIZE, seed=5), speech_like(n / 25, seed=5)
    settings = {**SETTINGS, **MODES["predicted"], "intra_period": 1}
    reference = decode(avfc.encode(frames, pcm=pcm, **settings).data)
    enc = Encoder(EncoderConfig(**settings), frame_count=n)
    enc.push_audio(pcm[:12 * 640])  # the audio of frames 0..11; the rest comes after 87 frames
    held = 0
    for i in range(0, 87, 3):
        enc.push_frames(frames[i:i + 3])
        held = max(held, len(enc._deferred))
    enc.push_audio(pcm[12 * 640:])
    enc.push_frames(frames[87:])
    enc.close()
    data = enc.read()
    assert 0 < held <= MAX_AUDIO_WAIT_SECONDS * 25 + 1
    full = decode(data)
    whole = full.pull_frames()
    assert len(whole) == n and {i.kind for i in full.issues} == {"lost_motion"}, full.issues
    lost = sorted(f for i in full.issues for f in range(*i.frames))
    assert lost == list(range(10, 30))  # the packets whose audio (frames 12..29) was given up on
    assert all(np.array_equal(full.motion[k], reference.motion[k]) for k in range(n) if k not in lost)
    for u, p in units(data):
        if u.type == bs.UnitType.REFRESH:
            assert_same_from(decode(data[u.offset:], join=True), full, whole, p.frame_index)
