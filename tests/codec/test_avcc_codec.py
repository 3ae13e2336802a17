"""AVCC modes end to end (format 1.1): context-coded audio, speech-predicted motion, lips from speech."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.avcc.zoo import AVCC_ZOO, DEFAULT_AVCC, default_avcc_for, load_avcc
from avfc.codec import Decoder
from avfc.codec.common import audio_rows, last_two
from avfc.errors import ConfigError
from synthetic import speech_like, talking_face

SIZE = 64
MODEL = "tiny-test"  # 20 motion channels like the shipped model: the bundle fits it (named explicitly)
N = 60


@pytest.fixture(scope="module")
def media():
    return talking_face(N, SIZE, SIZE, seed=5), speech_like(N / 25, seed=5)


def _encode(media, **mode):
    frames, pcm = media
    if mode.get("audio_coder", "raw") != "raw" or mode.get("motion_source", "transmitted") != "transmitted":
        mode.setdefault("avcc", DEFAULT_AVCC)
    mode.setdefault("format_major", 1)  # the 1.1 layout (2.0: tests/codec/test_format_2.py)
    return avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, key_qp=40, packet_frames=25, **mode)


@pytest.fixture(scope="module")
def streams(media):
    return {
        "plain": _encode(media, first_key=0),  # (predicted motion keeps its key frame at 0: the same keypoints)
        "context": _encode(media, audio_coder="context"),
        "predicted": _encode(media, motion_source="predicted"),
        "both": _encode(media, audio_coder="context", motion_source="predicted"),
        "speech": _encode(media, audio_coder="context", motion_source="speech"),
    }


def _units(data):
    parsed = bs.parse_stream(data)
    return [(u.type, bs.decode_payload(u, parsed.version[0])) for u in parsed.units]


def test_plain_streams_stay_version_1_0_and_avcc_streams_are_1_1(streams):
    assert bs.parse_stream(streams["plain"].data).version == (1, 0)
    for name in ("context", "predicted", "both", "speech"):
        parsed = bs.parse_stream(streams[name].data)
        assert parsed.version == (1, 1), name
        assert parsed.header.avcc_name == DEFAULT_AVCC
        assert parsed.header.avcc_sha256 == load_avcc(DEFAULT_AVCC).entry.sha256


@pytest.mark.parametrize("name", ["context", "predicted", "both", "speech"])
def test_each_mode_writes_only_its_own_unit_types(streams, name):
    types = {t for t, _ in _units(streams[name].data)}
    audio = bs.UnitType.AUDIO_CTX if name in ("context", "both", "speech") else bs.UnitType.AUDIO
    assert audio in types and ({bs.UnitType.AUDIO, bs.UnitType.AUDIO_CTX} - {audio}).isdisjoint(types)
    motion = {"context": bs.UnitType.MOTION, "predicted": bs.UnitType.MOTION_PRED,
              "both": bs.UnitType.MOTION_PRED, "speech": None}[name]
    assert {bs.UnitType.MOTION, bs.UnitType.MOTION_PRED} & types == ({motion} if motion else set())


def test_context_audio_decodes_to_the_same_tokens_in_fewer_bytes(streams):
    plain, ctx = avfc.decode(streams["plain"].data), avfc.decode(streams["context"].data)
    dec_plain, dec_ctx = Decoder(), Decoder()
    for dec, res in ((dec_plain, streams["plain"]), (dec_ctx, streams["context"])):
        dec.push(res.data)
        dec.close()
    assert dec_ctx.audio_tokens == dec_plain.audio_tokens and len(dec_ctx.audio_tokens) == N
    assert streams["context"].stats.bytes_by_type["audio"] < streams["plain"].stats.bytes_by_type["audio"]
    assert ctx.issues == [] and len(ctx.audio) == len(plain.audio)


def test_predicted_motion_decodes_to_exactly_the_transmitted_keypoints(streams):
    plain = avfc.decode(streams["plain"].data, keep_motion=True)
    pred = avfc.decode(streams["predicted"].data, keep_motion=True)
    assert pred.issues == []
    np.testing.assert_array_equal(pred.motion, plain.motion)
    assert pred.frames.shape == (N, SIZE, SIZE, 3)


def test_predicted_motion_packet_follows_the_audio_it_depends_on(streams):
    seen_audio = 0
    for t, p in _units(streams["both"].data):
        if t == bs.UnitType.AUDIO_CTX:
            seen_audio = p.first_frame + p.num_frames
        elif t == bs.UnitType.MOTION_PRED:
            end = p.first_frame + p.num_frames
            assert seen_audio >= min(end, N), "a predicted-motion packet came before its audio"


def test_lips_from_speech_sends_no_motion_and_draws_every_frame(streams):
    res = avfc.decode(streams["speech"].data, keep_motion=True)
    assert res.issues == [] and res.frames.shape == (N, SIZE, SIZE, 3)
    assert res.motion.shape == (N - 1, 20)  # frame 0 is the key picture itself
    assert streams["speech"].stats.bytes_by_type.get("motion", 0) == 0
    assert len(streams["speech"].data) < len(streams["both"].data)


def test_decoding_in_another_process_gives_the_same_integers(streams, tmp_path):
    path = tmp_path / "s.avfc"
    path.write_bytes(streams["both"].data)
    code = ("import json,sys,avfc;from avfc.codec import Decoder;d=Decoder(keep_motion=True);"
            f"d.push(open({str(path)!r},'rb').read());d.close();"
            "print(json.dumps([d.motion_array().tolist(),[d.audio_tokens[i] for i in sorted(d.audio_tokens)]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    motion, tokens = json.loads(out.stdout)
    dec = Decoder(keep_motion=True)
    dec.push(streams["both"].data)
    dec.close()
    assert motion == dec.motion_array().tolist()
    assert tokens == [dec.audio_tokens[i] for i in sorted(dec.audio_tokens)]


def test_lost_audio_packet_conceals_only_the_motion_that_needs_it(streams):
    data = streams["both"].data
    parsed = bs.parse_stream(data)
    # rebuild the stream without the first AUDIO_CTX unit
    writer_out = []
    dropped = False
    w = bs.StreamWriter(type("F", (), {"write": lambda self, b: writer_out.append(b)})())
    w.write_header(parsed.header)
    for u in parsed.units:
        if u.type == bs.UnitType.AUDIO_CTX and not dropped:
            dropped = True
            continue
        w.write_unit(u.type, u.payload)
    res = avfc.decode(b"".join(writer_out), keep_motion=True)
    assert dropped and len(res.frames) == N
    concealed = [i for i in res.issues if i.kind == "lost_motion"]
    assert concealed and concealed[0].frames[0] == 0
    # the later packets still decode to the true keypoints
    full = avfc.decode(data, keep_motion=True)
    dec_rows = {i: r for i, r in enumerate(full.motion)}
    assert len(res.motion) < len(full.motion)
    np.testing.assert_array_equal(res.motion[-10:], np.stack([dec_rows[len(full.motion) - 10 + i]
                                                              for i in range(10)]))


def test_avcc_modes_need_codec2_700c_and_the_bundle_grid(media):
    with pytest.raises(ConfigError):
        _encode(media, audio="opus", audio_coder="context")
    with pytest.raises(ConfigError):
        _encode(media, codec2_mode="1300", motion_source="predicted")
    with pytest.raises(ConfigError):
        _encode(media, motion_source="predicted", kp_precision=7)
    with pytest.raises(ConfigError):
        _encode(media, motion_source="speech", key_policy="adaptive")


def test_the_default_bundle_is_the_one_trained_for_the_model(media):
    frames, pcm = media
    # tiny-test has no bundle of its own: the encoder asks for one by name instead of guessing
    with pytest.raises(ConfigError, match="no AVCC bundle trained for model 'tiny-test'"):
        avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, key_qp=40, audio_coder="context")
    for name, entry in AVCC_ZOO.items():
        assert default_avcc_for(entry.animation_model) is not None
        assert AVCC_ZOO[default_avcc_for(entry.animation_model)].animation_model == entry.animation_model


def test_audio_rows_and_last_two_helpers():
    fields = np.arange(12).reshape(3, 4)
    rows = audio_rows(fields, -2, 4)
    assert rows.shape == (6, 4) and (rows[:2] == -1).all() and (rows[5] == -1).all()
    np.testing.assert_array_equal(rows[2:5], fields)
    q = np.array([[1, 1], [2, 2], [3, 3]])
    np.testing.assert_array_equal(last_two(None, q), [[3, 3], [2, 2]])
    np.testing.assert_array_equal(last_two(last_two(None, q), q[:1] + 10), [[11, 11], [3, 3]])
    np.testing.assert_array_equal(last_two(None, q[:1]), [[1, 1], [1, 1]])


def test_streaming_lips_encoder_never_sends_audio_ahead_of_the_video(media):
    from avfc.codec import Encoder
    from avfc.config import EncoderConfig

    frames, pcm = media
    cfg = EncoderConfig.make(model=MODEL, size=SIZE, key_qp=40, key_interval=20, max_refs=2,
                             audio_coder="context", motion_source="speech", avcc=DEFAULT_AVCC)
    enc = Encoder(cfg, frame_count=N)
    enc.push_audio(pcm)  # all the audio first, as a live source may deliver it
    enc.push_frames(frames)
    enc.close()
    data = enc.read()
    types = [u.type for u in bs.parse_stream(data).units]
    assert types.index(bs.UnitType.KEY_FRAME) < types.index(bs.UnitType.AUDIO_CTX)
    dec = Decoder()
    dec.push(data)
    dec.close()
    assert dec.issues == [] and len(dec.pull_frames()) == N


def test_avcc_modes_need_25_fps(media):
    with pytest.raises(ConfigError):
        _encode(media, audio_coder="context", fps=30)
