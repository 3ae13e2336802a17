"""Format 2.1 through the codec: REFRESH units every few seconds, and decoding a stream joined at any byte."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder
from avfc.config import EncoderConfig
from avfc.errors import ConfigError, FormatError, TruncatedError
from avfc.media.synthetic import speech_like, talking_face

N, SIZE, MODEL = 30, 64, "tiny-test"
#: packets of 5 frames, a REFRESH every 0.4 s = 10 frames: at frames 10 and 20
SETTINGS = dict(size=SIZE, model=MODEL, audio="codec2", codec2_mode="700C", key_codec="av1", key_qp=50,
                packet_frames=5, motion_hold=False, effort="live")
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.fixture(scope="module")
def media():
    return talking_face(N, SIZE, SIZE, seed=5), speech_like(N / 25, seed=5)


@pytest.fixture(scope="module")
def stream(media) -> bytes:
    frames, audio = media
    return avfc.encode(frames, pcm=audio, refresh_interval=0.4, **SETTINGS).data


def decode(data: bytes, join: bool = False) -> Decoder:
    dec = Decoder(join=join)
    dec.push(data)
    dec.close()
    return dec


@pytest.fixture(scope="module")
def full(stream):
    dec = decode(stream)
    return dec, dec.pull_frames()


def refreshes(data: bytes) -> list[bs.Unit]:
    return [u for u in bs.parse_stream(data).units if u.type == bs.UnitType.REFRESH]


def test_the_encoder_writes_a_refresh_and_a_key_frame_every_interval(stream, full) -> None:
    parsed = bs.parse_stream(stream)
    assert parsed.version == bs.VERSION_2_1
    units = parsed.units
    at = [i for i, u in enumerate(units) if u.type == bs.UnitType.REFRESH]
    assert [bs.decode_payload(units[i], 2).frame_index for i in at] == [10, 20]
    for i in at:
        r = bs.decode_payload(units[i], 2)
        assert r.sequence_header() == parsed.header and r.header == parsed.header.to_bytes(2)
        key = next(u for u in units[i + 1:] if u.type != bs.UnitType.AUDIO)
        assert key.type == bs.UnitType.KEY_FRAME and bs.decode_payload(key, 2).frame_index == r.frame_index
    motion = [bs.decode_payload(u, 2) for u in units if u.type == bs.UnitType.MOTION]
    assert [m.first_frame for m in motion] == [0, 5, 10, 15, 20, 25]
    assert all(m.intra for m in motion if m.first_frame in (0, 10, 20))
    keys = [bs.decode_payload(u, 2).frame_index for u in units if u.type == bs.UnitType.KEY_FRAME]
    assert keys == [0, 10, 20]
    dec, frames = full
    assert len(frames) == N and not dec.issues and dec.first_frame == 0
    # after a REFRESH the buffer holds only the key frame coded there, as in the encoder
    assert [r.frame_index for r in dec._refs] == [20]


def test_refresh_frames_are_whole_packets() -> None:
    cfg = EncoderConfig.make(refresh_interval=2, packet_frames=25, fps=25)
    assert cfg.refresh_frames() == 50
    assert EncoderConfig.make(refresh_interval=0.3, packet_frames=25).refresh_frames() == 25
    assert EncoderConfig.make(refresh_interval=1.1, packet_frames=10).refresh_frames() == 30
    assert EncoderConfig.make(refresh_interval=0).refresh_frames() == 0
    assert EncoderConfig.make().refresh_frames() == 0


@pytest.mark.parametrize("overrides, text", [
    (dict(format_major=1), "format_major 2"),
    (dict(audio_coder="context", motion_source="speech", lips_model="diffusion"), "not supported yet"),
    (dict(reference_mode="bidirectional", key_interval=20, max_refs=2), "low-delay"),
])
def test_refresh_refuses_what_it_does_not_support(overrides, text) -> None:
    with pytest.raises(ConfigError, match=text):
        EncoderConfig.make(refresh_interval=2, **overrides)


def test_without_refresh_the_stream_is_the_2_0_stream_it_was(media) -> None:
    """refresh off (None, 0) writes the 2.0 bytes (checked against the encoder before 2.1 when it landed:
    the same bytes for several modes; the golden 2.0 files check the decoder)."""
    frames, audio = media
    off = avfc.encode(frames, pcm=audio, **SETTINGS).data
    assert off[:6] == b"AVFC\x02\x00"
    assert avfc.encode(frames, pcm=audio, refresh_interval=0, **SETTINGS).data == off
    assert not any(u.type == 9 for u in bs.parse_stream(off).units)


def test_join_at_every_byte_reads_the_units_after_the_next_refresh(stream) -> None:
    """From every byte offset the reader joins at the next intact REFRESH and reads exactly the units after
    it; so the decoder is fed the same units as from that REFRESH (decoded below)."""
    full_units = bs.parse_stream(stream).units
    starts = [r.offset for r in refreshes(stream)]
    for cut in range(1, len(stream)):
        nxt = [s for s in starts if s >= cut]
        try:
            parsed = bs.parse_stream(stream[cut:], join=True)
        except FormatError:
            assert not nxt or (stream[cut:cut + 4] == b"AVFC" and nxt == [starts[-1]] and cut > starts[0])
            continue
        r = nxt[0] if stream[cut:cut + 4] != b"AVFC" else [s for s in starts if s > cut][0]
        assert parsed.first_frame == bs.decode_payload(next(u for u in full_units if u.offset == r), 2).frame_index
        assert [(u.type, u.payload) for u in parsed.units] == [(u.type, u.payload) for u in full_units
                                                               if u.offset > r]


def test_a_joined_decode_equals_the_full_decode_from_the_refresh(stream, full) -> None:
    dec_full, frames = full
    tokens = dec_full.audio_tokens
    starts = [r.offset for r in refreshes(stream)]
    # cuts: in the preamble, in the header, just before, at and inside each REFRESH (the magic inside a
    # REFRESH looks like a preamble: the reader then resynchronises and the decoder waits for the next one)
    cuts = [1, 5, 20, starts[0] - 1, starts[0], starts[0] + 2, starts[0] + 9, starts[1] - 1, starts[1]]
    for cut in cuts:
        dec = decode(stream[cut:], join=True)
        got = dec.pull_frames()
        f = dec.first_frame
        assert f == (10 if cut <= starts[0] else 20), cut
        assert len(got) == N - f
        assert np.abs(got.astype(int) - frames[f:].astype(int)).max() <= 2, cut
        assert {i: m.tolist() for i, m in dec.motion.items()} == {
            i: m.tolist() for i, m in dec_full.motion.items() if i >= f}
        assert [k for k in dec._keys] == [k for k in dec_full._keys if k >= f]
        for k in dec._keys:
            assert np.array_equal(dec._keys[k], dec_full._keys[k])
        # audio: from the frame's time; the tokens received after the REFRESH are the full decode's
        a0 = dec.audio_start_frame
        assert a0 == f * dec.audio_codec.sample_rate // 25 // dec.audio_codec.frame_samples
        assert all(tokens[i] == t for i, t in dec.audio_tokens.items()) and min(dec.audio_tokens) >= a0
        pcm = dec.audio()
        assert len(pcm) == len(dec_full.audio()) - f * dec.audio_codec.sample_rate // 25
        assert all(i.kind in ("join", "damage", "ignored") for i in dec.issues), dec.issues
    with pytest.raises(TruncatedError, match="REFRESH"):
        decode(stream[starts[1] + 1:], join=True)
    with pytest.raises(FormatError, match="not an .avfc file"):
        decode(stream[1:])


def _rewrite(data: bytes, change) -> bytes:
    """The stream with every unit passed through ``change(unit, payload_model) -> bytes payload``."""
    parsed = bs.parse_stream(data)
    out = data[:6] + bs.encode_unit(bs.UnitType.SEQUENCE_HEADER, parsed.header.to_bytes(2), 2)
    for u in parsed.units:
        out += bs.encode_unit(u.type, change(u, bs.decode_payload(u, 2)), 2)
    return out


def test_a_refresh_that_changes_the_header_is_refused(stream) -> None:
    assert _rewrite(stream, lambda u, p: u.payload) == stream
    other = bs.parse_stream(stream).header.model_copy(update={"frame_count": 31}).to_bytes(2)
    changed = _rewrite(stream, lambda u, p: p.model_copy(update={"header": other}).to_bytes(2)
                       if isinstance(p, bs.Refresh) else u.payload)
    offset = refreshes(changed)[0].offset
    dec = Decoder()
    with pytest.raises(FormatError, match=f"byte {offset}.*cannot change its header"):
        dec.push(changed)
    with pytest.raises(FormatError, match="cannot change its header"):
        dec.close()
    # joined at the first REFRESH, a second one that differs from it is refused too
    second = _rewrite(stream, lambda u, p: p.model_copy(update={"header": other}).to_bytes(2)
                      if isinstance(p, bs.Refresh) and p.frame_index == 20 else u.payload)
    with pytest.raises(FormatError, match="cannot change its header"):
        decode(second[refreshes(second)[0].offset:], join=True)


def test_a_predicted_packet_at_a_refresh_is_concealed(stream, full) -> None:
    bad = _rewrite(stream, lambda u, p: p.model_copy(update={"flags": 0}).to_bytes(2)
                   if isinstance(p, bs.Motion) and p.first_frame == 10 else u.payload)
    dec = decode(bad)
    frames = dec.pull_frames()
    assert len(frames) == N
    lost = [i for i in dec.issues if i.kind == "lost_motion"]
    assert len(lost) == 1 and lost[0].frames == (10, 15) and "must be INTRA" in lost[0].message
    assert np.array_equal(frames[20:], full[1][20:])  # the next REFRESH restarts everything


def test_joining_a_refresh_at_a_large_frame_index(stream) -> None:
    """A live stream joined at frame 90000: frames are counted from there (no concealment of the 90000 frames
    before it, no 'beyond the stream' refusal)."""
    parsed = bs.parse_stream(stream)
    header = parsed.header.model_copy(update={"frame_count": 0})
    shift = 90000 - 10
    fp = io.BytesIO()
    w = bs.StreamWriter(fp, 2, refresh=True)
    w.write_header(header)
    data_start = len(fp.getvalue())
    w.write_refresh(90000)
    for u in parsed.units:
        p = bs.decode_payload(u, 2)
        if isinstance(p, bs.KeyFrame) and p.frame_index >= 10:
            w.write(p.model_copy(update={"frame_index": p.frame_index + shift}))
        elif isinstance(p, bs.Motion) and p.first_frame >= 10:
            w.write(p.model_copy(update={"first_frame": p.first_frame + shift}))
        elif isinstance(p, bs.Refresh) and p.frame_index > 10:
            w.write_refresh(p.frame_index + shift)
    data = fp.getvalue()
    dec = decode(data[data_start:], join=True)
    frames = dec.pull_frames()
    assert dec.first_frame == 90000 and len(frames) == 20 and not dec.issues
    assert min(dec.motion) == 90000 and dec.reach() == 90020


def test_old_2_0_readers_skip_the_refresh_as_an_unknown_unit(stream) -> None:
    """What a 2.0 reader (avfc 0.2) sees: the same units, REFRESH as an unknown type 9."""
    parser = bs.StreamParser()
    events = parser.feed(stream) + parser.close()
    parser_2_0 = bs.StreamParser()
    events_2_0 = parser_2_0.feed(b"AVFC\x02\x00" + stream[6:]) + parser_2_0.close()
    assert [e.type if isinstance(e, bs.Unit) else None for e in events_2_0] == [
        int(e.type) if e.type == bs.UnitType.REFRESH else e.type for e in events]
    assert not any(e.known for e in events_2_0 if isinstance(e, bs.Unit) and e.type == 9)


def test_joined_audio_starts_at_the_time_of_the_refresh_frame() -> None:
    """Opus at 30 fps with a REFRESH every 7 frames: frame times fall inside audio frames; the joined audio
    is the full decode's from sample floor(f * 16000 / 30) on."""
    n = 22
    data = avfc.encode(talking_face(n, SIZE, SIZE, seed=2), pcm=speech_like(n / 30, seed=2), size=SIZE, model=MODEL,
                       audio="opus", fps=30, key_qp=50, packet_frames=7, effort="live", motion_hold=False,
                       refresh_interval=0.2).data
    full = decode(data)
    frames, pcm = full.pull_frames(), full.audio()
    for unit in refreshes(data):
        dec = decode(data[unit.offset - 2:], join=True)
        f = dec.first_frame
        start = f * 16000 // 30
        assert f in (7, 14, 21) and dec.audio_start_frame == start // dec.audio_codec.frame_samples
        assert np.array_equal(dec.pull_frames(), frames[f:])
        got = dec.audio()
        assert len(got) == len(pcm) - start
        k = len(got) // 2  # Opus' state has converged by the middle: the same samples at the same times
        np.testing.assert_allclose(got[k:], pcm[start + k:], atol=1e-3)


@pytest.mark.parametrize("mode", [
    {"motion_stride": 3},  # sparse motion (1.2 feature in 2.x)
    {"key_policy": "adaptive", "key_min_distance": 3},  # the encoder's closed loop sees the emptied buffer
    {"key_interval": 7, "max_refs": 2, "key_codec": "hevc", "audio": "opus"},  # keys between refreshes
])
def test_a_join_decodes_like_the_whole_stream_in_other_modes(media, mode) -> None:
    frames, audio = media
    settings = {**SETTINGS, **mode}
    data = avfc.encode(frames, pcm=audio, refresh_interval=0.4, **settings).data
    full = decode(data)
    whole = full.pull_frames()
    assert not full.issues
    dec = decode(data[refreshes(data)[1].offset - 1:], join=True)
    assert dec.first_frame == 20 and np.array_equal(dec.pull_frames(), whole[20:])
    assert all(np.array_equal(dec.motion[i], full.motion[i]) for i in range(20, N))


def test_a_damaged_header_is_joined_at_the_next_refresh(stream, full) -> None:
    broken = bytearray(stream)
    broken[12] ^= 0x20  # inside the SEQUENCE_HEADER unit
    with pytest.raises(TruncatedError, match="before its sequence header"):
        decode(bytes(broken))  # without join: undecodable, as before 2.1
    dec = decode(bytes(broken), join=True)
    assert dec.first_frame == 10 and np.array_equal(dec.pull_frames(), full[1][10:])
    assert [i.kind for i in dec.issues][:1] == ["damage"]


@pytest.mark.parametrize("audio", ["codec2", "opus"])
def test_pull_audio_after_a_join_hands_out_what_audio_gives(audio) -> None:
    """A live receiver that joined late plays the joined audio as it comes (pull_audio, fed in chunks): the
    pieces joined are audio()'s samples, from the time of the REFRESH frame."""
    n = 60
    data = avfc.encode(talking_face(n, SIZE, SIZE, seed=3), pcm=speech_like(n / 25, seed=3), size=SIZE, model=MODEL,
                       audio=audio, key_qp=50, packet_frames=10, effort="live", motion_hold=False,
                       refresh_interval=0.8).data
    cut = data[refreshes(data)[0].offset - 2:]
    whole = decode(cut, join=True).audio()
    live = Decoder(join=True)
    pieces = []
    for i in range(0, len(cut), 97):
        live.push(cut[i:i + 97])
        pieces.append(live.pull_audio())
    live.close()
    pieces.append(live.pull_audio())
    got = np.concatenate([p for p in pieces if p is not None])
    assert live.first_frame == 20 and len(got) == len(whole)
    if audio == "opus":
        np.testing.assert_array_equal(got, whole)
    else:  # Codec2 700C's decoder draws random phases: the same frames, not the same samples
        assert np.corrcoef(got, whole)[0, 1] > 0.99 or np.allclose(got, whole, atol=1e-3)


def test_info_join_describes_a_late_joiners_bytes_from_the_first_refresh(stream, tmp_path, capsys) -> None:
    """``avfc info --join`` on bytes that start mid-way: described from the first intact REFRESH, as the
    decoder joins there; frames, duration, bytes and rates count from its frame on."""
    import json

    from avfc.cli import main
    from avfc.codec.info import stream_info

    whole = stream_info(stream)
    assert whole["first_frame"] == 0 and whole["skipped_bytes"] == 0 and whole["frames"] == N
    assert stream_info(stream, join=True) == whole  # a stream that starts with its header: nothing changes
    r = refreshes(stream)[0]
    cut = stream[r.offset - 3:]  # three bytes of the unit before it, then the REFRESH of frame 10
    with pytest.raises(FormatError):
        stream_info(cut)  # without --join: no sequence header
    info = stream_info(cut, join=True)
    assert info["first_frame"] == 10 and info["skipped_bytes"] == 3 and info["frames"] == N - 10
    assert info["header"] == whole["header"] and info["version"] == "2.1"
    assert info["bytes"] == len(cut) - 3 == sum(u["bytes"] for u in info["units"].values())
    assert "preamble" not in info["units"] and info["units"]["refresh"]["count"] == 2 and not info["damages"]
    after = [u for u in bs.parse_stream(stream).units if u.offset >= r.offset]
    assert {k: v["count"] for k, v in info["units"].items()} == {
        k: sum(1 for u in after if bs.UnitType(u.type).name.lower() == k) for k in info["units"]}
    assert info["duration"] == pytest.approx((N - 10) / 25)
    path = tmp_path / "late.avfc"
    path.write_bytes(cut)
    assert main(["info", str(path), "--join", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(info))
    assert main(["info", str(path), "--join"]) == 0
    assert "joined       at the REFRESH of frame 10 (3 bytes skipped" in capsys.readouterr().out


def test_a_lost_refresh_key_frame_is_concealed_from_the_references_before_it(stream, full) -> None:
    """The key frame of a REFRESH lost: the buffer keeps the references before it until a key frame comes,
    so frames from the REFRESH on are drawn (from the old references, reported ``lost_key``) instead of
    the last frame being held up to the next REFRESH; the next REFRESH restarts as coded."""
    units = bs.parse_stream(stream).units
    i = next(k for k, u in enumerate(units) if u.type == bs.UnitType.REFRESH)
    key = units[i + 1]
    assert key.type == bs.UnitType.KEY_FRAME and bs.decode_payload(key, 2).frame_index == 10
    lossy = stream[:key.offset] + stream[key.offset + key.size:]
    dec = decode(lossy)
    frames = dec.pull_frames()
    whole = full[1]
    assert [x.kind for x in dec.issues] == ["lost_key"] and dec.issues[0].frames == (10, 11)
    assert np.array_equal(frames[:10], whole[:10]) and np.array_equal(frames[20:], whole[20:])
    drawn = frames[10:20]
    assert len({d.tobytes() for d in drawn}) > 1  # drawn as the motion goes, not one frame held
    assert np.array_equal(dec.motion[15], full[0].motion[15])  # the motion itself is intact
