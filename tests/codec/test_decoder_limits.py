"""What a stream can make the decoder allocate (issue 19, part 3): frames concealed past the stream's data are
bounded by MAX_GAP_SECONDS, whatever END_OF_STREAM or the header declares, and units far past the data are
refused. Hand-made streams: a tiny-test clip at 64x64, its units rewritten with the StreamWriter."""

from __future__ import annotations

import io
import resource
from pathlib import Path

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder
from avfc.codec.decoder import MAX_GAP_SECONDS
from avfc.errors import AvfcError
from synthetic import speech_like, talking_face

SIZE, FPS = 64, 25
GAP = MAX_GAP_SECONDS * FPS  # the gap in frames at 25 fps


@pytest.fixture(scope="module")
def clip() -> bs.ParsedStream:
    """10 frames and 0.4 s of Codec2 700C speech (10 audio frames), format 2.0, packets of 5 frames."""
    frames = talking_face(10, SIZE, SIZE, seed=3)
    res = avfc.encode(frames, model="tiny-test", size=SIZE, pcm=speech_like(0.4, seed=3), audio="codec2",
                      codec2_mode="700C", key_qp=40, packet_frames=5)
    parsed = bs.parse_stream(res.data)
    assert parsed.version == bs.VERSION_2_0 and parsed.header.frame_count == 10
    return parsed


def _rewrite(parsed: bs.ParsedStream, units: list, header: bs.SequenceHeader | None = None) -> bytes:
    """A stream with ``parsed``'s header (or ``header``) and ``units``: Unit events or payload models."""
    buf = io.BytesIO()
    w = bs.StreamWriter(buf, major=parsed.version[0])
    w.write_header(header or parsed.header)
    for u in units:
        if isinstance(u, bs.Unit):
            w.write_unit(bs.UnitType(u.type), u.payload)
        else:
            w.write(u)
    return buf.getvalue()


def _body(parsed: bs.ParsedStream) -> list:
    """Every unit but END_OF_STREAM."""
    return [u for u in parsed.units if u.type != bs.UnitType.END_OF_STREAM]


def _payloads(parsed: bs.ParsedStream, kind: type) -> list:
    return [p for u in parsed.units if isinstance(p := bs.decode_payload(u, parsed.version[0]), kind)]


def test_end_of_stream_declaring_ten_million_frames_conceals_only_the_gap(clip: bs.ParsedStream) -> None:
    """The known failure: a valid END_OF_STREAM of 10,000,000 frames made close() conceal every one and
    decode() end in a MemoryError. Now the frames past the data stop MAX_GAP_SECONDS after it, reported."""
    end = _payloads(clip, bs.EndOfStream)[0]
    data = _rewrite(clip, [*_body(clip), end.model_copy(update={"frame_count": bs.MAX_FRAME_COUNT})])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = avfc.decode(data)
    assert res.frames.shape == (10 + GAP, SIZE, SIZE, 3)
    limit = [i for i in res.issues if i.kind == "limit"]
    assert len(limit) == 1 and limit[0].frames == (10 + GAP, bs.MAX_FRAME_COUNT)
    assert any(i.kind == "lost_motion" and i.frames == (10, 10 + GAP) for i in res.issues)
    np.testing.assert_array_equal(res.frames[10:], np.broadcast_to(res.frames[9], res.frames[10:].shape))
    # 1,510 frames of 12 KiB, twice at most (pulled, then joined): far below the 120 GB of 10M frames
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 400e6
    # the intact frames are those of the honest stream
    ref = avfc.decode(_rewrite(clip, clip.units))
    assert ref.issues == []
    np.testing.assert_array_equal(res.frames[:10], ref.frames)


def test_a_declared_count_within_the_gap_is_still_concealed_in_full(clip: bs.ParsedStream) -> None:
    """A stream whose last packets were lost: every declared frame is output, as before."""
    end = _payloads(clip, bs.EndOfStream)[0]
    data = _rewrite(clip, [*_body(clip), end.model_copy(update={"frame_count": 10 + GAP})])
    res = avfc.decode(data)
    assert len(res.frames) == 10 + GAP
    assert not [i for i in res.issues if i.kind == "limit"]


def test_header_declaring_ten_million_frames_and_no_end_of_stream(clip: bs.ParsedStream) -> None:
    header = clip.header.model_copy(update={"frame_count": bs.MAX_FRAME_COUNT})
    dec = Decoder()
    dec.push(_rewrite(clip, _body(clip), header))
    dec.close()
    assert len(dec.pull_frames()) == 10 + GAP
    assert [i.frames for i in dec.issues if i.kind == "limit"] == [(10 + GAP, bs.MAX_FRAME_COUNT)]


def test_a_motion_packet_far_past_the_data_is_refused(clip: bs.ParsedStream) -> None:
    """Within the header's 10M frames, a valid packet for frames 9,000,000.. would make the decoder conceal
    nine million frames before it: it is reported undecodable instead, and nothing else changes."""
    header = clip.header.model_copy(update={"frame_count": bs.MAX_FRAME_COUNT})
    motion = _payloads(clip, bs.Motion)[-1]
    far = motion.model_copy(update={"first_frame": 9_000_000})
    near = motion.model_copy(update={"first_frame": 10 + GAP})  # just within the gap: accepted
    res = avfc.decode(_rewrite(clip, [*_body(clip), far, near], header))
    undecodable = [i for i in res.issues if i.kind == "undecodable"]
    assert len(undecodable) == 1 and "9000000" in undecodable[0].message and "60 s" in undecodable[0].message
    # the near packet: its gap concealed, its frames rendered; then the gap again up to the declared count
    assert len(res.frames) == 10 + GAP + 5 + GAP
    assert any(i.kind == "lost_motion" and i.frames == (10, 10 + GAP) for i in res.issues)
    assert [i.frames for i in res.issues if i.kind == "limit"] == [(10 + 2 * GAP + 5, bs.MAX_FRAME_COUNT)]


def test_a_key_frame_far_past_the_data_is_refused(clip: bs.ParsedStream) -> None:
    key = _payloads(clip, bs.KeyFrame)[0]
    far = key.model_copy(update={"frame_index": 10 + GAP + 1024})
    res = avfc.decode(_rewrite(clip, [*_body(clip), far, _payloads(clip, bs.EndOfStream)[0]]))
    assert len(res.frames) == 10
    assert [i.kind for i in res.issues] == ["undecodable"]


def test_an_audio_unit_near_frame_2_to_the_32_is_refused(clip: bs.ParsedStream) -> None:
    """A valid AUDIO unit for audio frames 2^32 - 4096.. made audio_frames() list 4 billion tokens."""
    audio = _payloads(clip, bs.Audio)[-1]
    far = audio.model_copy(update={"first_frame": 2**32 - 4096})
    end = _payloads(clip, bs.EndOfStream)[0].model_copy(update={"audio_frame_count": 2**32 - 1,
                                                                 "audio_samples": 2**32 - 1})
    res = avfc.decode(_rewrite(clip, [*_body(clip), far, end]))
    assert [i.kind for i in res.issues] == ["undecodable"]
    assert len(res.frames) == 10
    assert res.audio is not None and len(res.audio) <= (10 + 10 * 25) * 640  # received + 10 s of silence


def test_audio_past_the_motion_reaches_further_frames(clip: bs.ParsedStream) -> None:
    """Audio is data too: frames its time covers count as reached, so a stream whose motion ends early
    but whose audio goes on is concealed up to the audio's end plus the gap."""
    audio = _payloads(clip, bs.Audio)[-1]
    later = audio.model_copy(update={"first_frame": 10 + GAP})  # 700C at 25 fps: one audio frame per frame
    end = _payloads(clip, bs.EndOfStream)[0].model_copy(update={"frame_count": bs.MAX_FRAME_COUNT})
    res = avfc.decode(_rewrite(clip, [*_body(clip), later, end]))
    reach = 10 + GAP + audio.num_frames
    assert len(res.frames) == reach + GAP
    assert [i.frames for i in res.issues if i.kind == "limit"] == [(reach + GAP, bs.MAX_FRAME_COUNT)]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_streaming_decoder_in_chunks_gives_the_same_bounded_frames(clip: bs.ParsedStream, chunk: int) -> None:
    end = _payloads(clip, bs.EndOfStream)[0]
    data = _rewrite(clip, [*_body(clip), end.model_copy(update={"frame_count": bs.MAX_FRAME_COUNT})])
    dec = Decoder()
    got = []
    try:
        for i in range(0, len(data), chunk):
            dec.push(data[i:i + chunk])
            got.append(dec.pull_frames())
        dec.close()
    except AvfcError as e:  # pragma: no cover - the stream is valid
        pytest.fail(f"{e!r}")
    got.append(dec.pull_frames())
    assert sum(len(g) for g in got) == 10 + GAP


@pytest.mark.parametrize("name", ["v1_1-lips-from-speech", "v1_3-diffusion-lips"])
def test_motion_from_speech_draws_up_to_the_data_and_conceals_the_rest(name: str) -> None:
    """A FROM_SPEECH stream draws every frame from its audio: with END_OF_STREAM declaring 10M frames its
    decoder drew 1,500 more from no audio (40 s for the tiny model at 64x64, days for 10M). Frames past the
    data's reach are held now, and the stream's own frames are as before."""
    parsed = bs.parse_stream((Path(__file__).parents[1] / "golden" / f"{name}.avfc").read_bytes())
    end = _payloads(parsed, bs.EndOfStream)[0]
    ref = avfc.decode(_rewrite(parsed, parsed.units))
    n = int(end.frame_count)
    assert ref.issues == [] and len(ref.frames) == n
    res = avfc.decode(_rewrite(parsed, [*_body(parsed), end.model_copy(update={"frame_count": bs.MAX_FRAME_COUNT})]))
    assert [i.frames for i in res.issues] == [(n + GAP, bs.MAX_FRAME_COUNT), (n, n + GAP)]
    np.testing.assert_array_equal(res.frames[:n], ref.frames)
    np.testing.assert_array_equal(res.frames[n:], np.broadcast_to(ref.frames[-1], res.frames[n:].shape))


@pytest.mark.parametrize("name", ["v1_1-lips-from-speech", "v1_3-diffusion-lips"])
def test_motion_from_speech_conceals_frames_with_no_audio_instead_of_drawing_them(name: str) -> None:
    """One audio unit placed just within the gap (E.6) made a FROM_SPEECH decoder render the 1,500 frames
    before it from no audio (about 50 s for tiny-test at 64x64). Frames whose window holds no received
    audio are concealed now; those before the gap are as in the honest stream."""
    parsed = bs.parse_stream((Path(__file__).parents[1] / "golden" / f"{name}.avfc").read_bytes())
    audio_units = [u for u in parsed.units if u.type in (bs.UnitType.AUDIO, bs.UnitType.AUDIO_CTX)]
    last = bs.decode_payload(audio_units[-1], parsed.version[0])
    n = int(parsed.header.frame_count)
    far = last.model_copy(update={"first_frame": n + GAP - 10})  # 700C at 25 fps: one audio frame a frame
    header = parsed.header.model_copy(update={"frame_count": 0})  # a live stream: drawn as audio arrives
    ref = avfc.decode(_rewrite(parsed, _body(parsed), header))
    res = avfc.decode(_rewrite(parsed, [*_body(parsed), far], header))
    lost = [i.frames for i in res.issues if i.kind == "lost_motion"]
    assert len(lost) == 1 and lost[0][1] - lost[0][0] > GAP - 100, res.issues
    assert lost[0][0] >= n == len(ref.frames)  # every frame with audio near it is drawn, as before
    np.testing.assert_array_equal(res.frames[:n], ref.frames)
    assert len(res.frames) > n + GAP - 20  # and the far unit's own frames are drawn after the gap


def test_issues_are_kept_up_to_a_limit_then_counted(clip: bs.ParsedStream, monkeypatch) -> None:
    """An hour of a lossy call must not grow Decoder.issues without bound: the first MAX_ISSUES are kept, one
    "limit" issue says so, and every issue is counted by kind."""
    from avfc.bitstream.units import encode_unit
    from avfc.codec import decoder as decoder_mod

    monkeypatch.setattr(decoder_mod, "MAX_ISSUES", 5)
    audio = next(u for u in clip.units if u.type == bs.UnitType.AUDIO)
    stray = encode_unit(int(audio.type), audio.payload, 2)  # an audio unit before the header: "ignored"
    body = encode_unit(1, clip.header.to_bytes(2), 2) + b"".join(encode_unit(int(u.type), u.payload, 2)
                                                                for u in clip.units)
    data = bs.MAGIC + bytes((2, 0)) + stray * 12 + body
    dec = Decoder()
    dec.push(data)
    dec.close()
    assert len(dec.issues) == 6 and [i.kind for i in dec.issues[:5]] == ["ignored"] * 5
    assert dec.issues[5].kind == "limit"
    assert dec.issues.counts["ignored"] == 12
    assert len(dec.pull_frames()) == 10  # everything after the stray units decodes
