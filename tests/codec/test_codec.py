"""End-to-end behaviour of the codec: encode() / decode(), streaming, damage, rate control."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder, Encoder, analyse
from avfc.codec.common import audio_codec_for_config
from avfc.config import EncoderConfig
from avfc.errors import AvfcError, FileAccessError, MediaError, ModelMismatchError
from avfc.models.zoo import load_model
from synthetic import speech_like, talking_face, write_clip

SIZE = 64  # small coded size keeps the tests fast; the codec does not care
MODEL = "tiny-test"  # the fast seeded model; the shipped default is covered in test_default_model.py


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("media") / "talk.mp4", n=50)


@pytest.fixture(scope="module")
def encoded(clip):
    return avfc.encode(clip, size=SIZE, model=MODEL, packet_frames=10, key_qp=30, effort="detector")


def test_encode_file_then_decode_round_trips_the_integers(clip, encoded):
    res = avfc.decode(encoded.data, keep_motion=True)
    assert encoded.frames == 50 and res.frames.shape == (50, SIZE, SIZE, 3)
    assert res.issues == []
    # the decoder's motion integers are exactly what the encoder computed from the frames
    media = avfc.media.read_media(clip, fps=25)
    frames, _ = avfc.api.prepare(media, EncoderConfig.make(size=SIZE, model=MODEL))
    cfg = EncoderConfig()
    expected = analyse(load_model("tiny-test"), frames, cfg.kp_precision, cfg.kp_hysteresis)
    np.testing.assert_array_equal(res.motion, expected)
    # audio: 2 s at 16 kHz, in sync with the video
    assert res.sample_rate == 16000 and res.audio is not None
    assert len(res.audio) == 50 * 16000 // 25


def test_decoded_key_frame_equals_encoder_closed_loop_picture():
    frames = talking_face(12, SIZE, SIZE)
    enc = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_qp=35))
    enc.push_frames(frames)
    enc.close()
    dec = Decoder()
    dec.push(enc.read())
    dec.close()
    out = dec.pull_frames()
    np.testing.assert_array_equal(out[0], enc.decoded_keys[0])
    assert out.shape == (12, SIZE, SIZE, 3)


def test_audio_tokens_round_trip_exactly():
    cfg = EncoderConfig.make(size=SIZE, model=MODEL, codec2_mode="700C")
    pcm = speech_like(1.2)
    enc = Encoder(cfg)
    enc.push_frames(talking_face(30, SIZE, SIZE))
    enc.push_audio(pcm)
    enc.close()
    dec = Decoder()
    dec.push(enc.read())
    dec.close()
    codec = audio_codec_for_config(cfg)
    assert codec is not None
    expected = codec.encode(pcm)  # the stream's packets hold exactly the whole signal's tokens
    got = [dec.audio_tokens[i] for i in range(len(dec.audio_tokens))]
    assert got == expected
    audio = dec.audio()
    assert audio is not None and len(audio) == len(pcm)


def test_streaming_encoder_in_chunks_gives_the_same_bytes():
    frames = talking_face(37, SIZE, SIZE)
    pcm = speech_like(37 / 25)
    cfg = EncoderConfig.make(size=SIZE, model=MODEL, packet_frames=8, key_qp=40)
    one = Encoder(cfg)
    one.push_frames(frames)
    one.push_audio(pcm)
    one.close()
    a = one.read()
    many = Encoder(cfg)
    out = b""
    for i in range(0, 37, 5):
        many.push_frames(frames[i:i + 5])
        many.push_audio(pcm[i * 640:(i + 5) * 640])
        out += many.read()  # units come out while frames are still arriving
    assert len(out) > 0
    many.close()
    out += many.read()
    # same units; only the interleaving of audio and video units may differ
    pa, pb = bs.parse_stream(a), bs.parse_stream(out)
    key = lambda u: (u.type, u.payload)  # noqa: E731
    assert sorted(map(key, pa.units)) == sorted(map(key, pb.units))


def test_keypoint_hysteresis_costs_fewer_motion_bits_and_streams_identically(clip):
    plain = avfc.encode(clip, size=SIZE, model=MODEL, packet_frames=10, key_qp=30, kp_hysteresis=0.0)
    held = avfc.encode(clip, size=SIZE, model=MODEL, packet_frames=10, key_qp=30, kp_hysteresis=0.5)
    assert held.stats.bytes_by_type["motion"] < plain.stats.bytes_by_type["motion"]
    dec = avfc.decode(held.data)
    assert not dec.issues and len(dec.frames) == held.frames
    # the streaming encoder carries the dead zone across push_frames calls: same bytes as one call
    frames = talking_face(30, SIZE, SIZE)
    cfg = EncoderConfig.make(size=SIZE, model=MODEL, packet_frames=8, key_qp=40, audio="none", kp_hysteresis=0.5)
    one, many = Encoder(cfg), Encoder(cfg)
    one.push_frames(frames)
    for i in range(0, 30, 7):
        many.push_frames(frames[i:i + 7])
    one.close()
    many.close()
    assert one.read() == many.read()


def test_decoder_fed_byte_by_byte_gives_the_same_frames(encoded):
    ref = avfc.decode(encoded.data)
    dec = Decoder()
    got = []
    for i in range(len(encoded.data)):
        dec.push(encoded.data[i:i + 1])
        got.append(dec.pull_frames())
    dec.close()
    got.append(dec.pull_frames())
    assert sum(len(g) > 0 for g in got) > 1  # frames come out while bytes are still arriving
    np.testing.assert_array_equal(np.concatenate([g for g in got if len(g)]), ref.frames)


def _units(data: bytes):
    return bs.parse_stream(data).units


def test_corrupted_motion_unit_is_reported_and_everything_else_decodes(encoded):
    data = bytearray(encoded.data)
    motion = [u for u in _units(encoded.data) if u.type == bs.UnitType.MOTION]
    victim = motion[2]  # frames 20..29
    data[victim.offset + 8] ^= 0x55
    res = avfc.decode(bytes(data))
    ref = avfc.decode(encoded.data)
    assert len(res.frames) == 50
    assert any(i.kind == "damage" for i in res.issues)
    assert any(i.kind == "lost_motion" and i.frames == (20, 30) for i in res.issues)
    # frames outside the lost packet are identical (intra packets: no dependency)
    np.testing.assert_array_equal(res.frames[:20], ref.frames[:20])
    np.testing.assert_array_equal(res.frames[30:], ref.frames[30:])
    # audio units are untouched (Codec2's decoder draws random phases, so compare the tokens)
    assert Decoder_tokens(bytes(data)) == Decoder_tokens(encoded.data)


def Decoder_tokens(data: bytes) -> dict:
    dec = Decoder()
    dec.push(data)
    dec.close()
    return dec.audio_tokens


def test_truncated_file_decodes_the_intact_prefix(encoded):
    units = _units(encoded.data)
    motion = [u for u in units if u.type == bs.UnitType.MOTION]
    cut = motion[3].offset + 5  # inside the 4th motion packet
    res = avfc.decode(encoded.data[:cut])
    ref = avfc.decode(encoded.data)
    assert len(res.frames) >= 30
    np.testing.assert_array_equal(res.frames[:30], ref.frames[:30])
    assert res.issues


def test_every_truncation_and_random_damage_gives_only_avfc_errors(encoded):
    data = encoded.data
    rng = np.random.default_rng(1)
    for cut in list(range(40)) + sorted(rng.integers(40, len(data), 25).tolist()):
        try:
            avfc.decode(data[:cut])
        except AvfcError:
            pass
    for _ in range(25):
        bad = bytearray(data)
        for pos in rng.integers(6, len(data), 3):
            bad[pos] = int(rng.integers(0, 256))
        try:
            res = avfc.decode(bytes(bad))
            assert res.frames.shape[1:] == (SIZE, SIZE, 3)
        except AvfcError:
            pass


def test_stream_naming_unknown_weights_is_refused_with_both_hashes(encoded):
    parsed = bs.parse_stream(encoded.data)
    fake = parsed.header.model_copy(update={"weights_sha256": "ab" * 32})
    import io
    buf = io.BytesIO()
    w = bs.StreamWriter(buf)
    w.write_header(fake)
    for u in parsed.units:
        w.write_unit(u.type, u.payload)
    with pytest.raises(ModelMismatchError) as e:
        avfc.decode(buf.getvalue())
    assert "ab" * 32 in str(e.value) and parsed.header.weights_sha256 in str(e.value)


def test_bitrate_targets_the_whole_file(clip):
    lo = avfc.encode(clip, size=SIZE, model=MODEL, bitrate_kbps=5.0)
    hi = avfc.encode(clip, size=SIZE, model=MODEL, bitrate_kbps=12.0)
    assert lo.kbps <= 5.0 and hi.kbps <= 12.0
    assert hi.kbps > lo.kbps
    assert hi.kbps > 0.7 * 12.0  # the budget is used, not wasted
    assert hi.stats.key_qps[0] < lo.stats.key_qps[0]
    assert lo.kbps == pytest.approx(len(lo.data) * 8 / 1000 / 2.0)


def test_unreachable_bitrate_warns_and_still_encodes(clip):
    res = avfc.encode(clip, size=SIZE, model=MODEL, bitrate_kbps=0.5)
    assert res.warnings and "cannot be reached" in res.warnings[0]
    assert avfc.decode(res.data).frames.shape[0] == 50


def test_video_only_input_gives_a_video_only_stream(tmp_path):
    clip = write_clip(tmp_path / "silent.mp4", n=20, audio=False)
    res = avfc.encode(clip, size=SIZE, model=MODEL)
    assert int(res.header.audio_codec) == int(bs.AudioCodecId.NONE)
    assert any("no audio" in w for w in res.warnings)
    out = avfc.decode(res.data)
    assert out.audio is None and len(out.frames) == 20


def test_arrays_in_arrays_out_and_square_input_is_not_recropped():
    frames = talking_face(20, SIZE, SIZE)
    res = avfc.encode(frames, pcm=speech_like(0.8), size=SIZE, model=MODEL, key_qp=20)
    assert (res.crop.x, res.crop.y, res.crop.w, res.crop.h) == (0, 0, SIZE, SIZE)
    out = avfc.decode(res.data)
    assert out.frames.shape == frames.shape
    # the key frame at high quality lines up with the input (wherever the encoder placed it)
    parsed = bs.parse_stream(res.data)
    k = next(int(bs.decode_payload(u, parsed.version[0]).frame_index) for u in parsed.units
             if u.type == bs.UnitType.KEY_FRAME)
    err = np.abs(out.frames[k].astype(int) - frames[k].astype(int)).mean()
    assert err < 6


def test_bad_inputs_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(MediaError):
        avfc.encode(junk)
    with pytest.raises(FileAccessError, match="missing.mp4: no such file"):  # as decode's: not a MediaError
        avfc.encode(tmp_path / "missing.mp4")
    with pytest.raises(FileAccessError, match="is a directory"):
        avfc.encode(tmp_path)
    with pytest.raises(AvfcError):
        avfc.decode(b"RIFF0000WAVEfmt ")
    with pytest.raises(AvfcError):
        avfc.encode(talking_face(3, SIZE, SIZE), size=SIZE, model=MODEL, packet_frames=0)


def test_side_info_describes_the_reference_structure_and_flags_a_lost_key_frame():
    frames = talking_face(30, SIZE, SIZE)
    enc = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_interval=10, max_refs=2, side_info=True,
                                     packet_frames=5))
    enc.push_frames(frames)
    enc.close()
    data = enc.read()
    dec = Decoder()
    dec.push(data)
    dec.close()
    assert [si.refs for si in dec.side_info] == [(0,), (0, 10), (10, 20)]
    assert all(si.base_picture and si.network_present for si in dec.side_info)
    assert not [i for i in dec.issues if i.kind == "side_info"]
    # drop the second key frame: the decoder notices through the side info, and still decodes all frames
    units = bs.parse_stream(data).units
    victim = [u for u in units if u.type == bs.UnitType.KEY_FRAME][1]
    cut = bytearray(data)
    cut[victim.offset + 10] ^= 0xFF
    dec = Decoder()
    dec.push(bytes(cut))
    dec.close()
    assert len(dec.pull_frames()) == 30
    assert any(i.kind == "side_info" for i in dec.issues)


def _decode_all(data: bytes) -> tuple[Decoder, np.ndarray]:
    dec = Decoder()
    dec.push(data)
    dec.close()
    return dec, dec.pull_frames()


def test_bidirectional_mode_codes_the_next_key_ahead_and_uses_both_references():
    frames = talking_face(45, SIZE, SIZE)
    cfg = EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_interval=20, reference_mode="bidirectional",
                             packet_frames=10, key_qp=30, place_keys=False)  # (placed: test_key_placement)
    enc = Encoder(cfg)
    out = b""
    enc.push_frames(frames[:19])
    out += enc.read()
    # frames 1..19 wait for key frame 20: only the header and key frame 0 are out
    assert [u.type for u in bs.parse_stream(out).units] == [bs.UnitType.KEY_FRAME]
    enc.push_frames(frames[19:])
    enc.close()
    out += enc.read()
    units = bs.parse_stream(out).units
    order = [(u.type, bs.decode_payload(u, 2)) for u in units]
    key20 = next(i for i, (t, p) in enumerate(order) if t == bs.UnitType.KEY_FRAME and p.frame_index == 20)
    first_motion = next(i for i, (t, p) in enumerate(order) if t == bs.UnitType.MOTION)
    assert key20 < first_motion  # the future reference precedes the frames that use it
    dec, got = _decode_all(out)
    assert int(dec.header.reference_mode) == 1 and got.shape == frames.shape and not dec.issues
    np.testing.assert_array_equal(got[20], enc.decoded_keys[20])
    # a frame between the keys is drawn from both: it differs from a low-delay decode of the same motion
    low = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_interval=20, packet_frames=10, key_qp=30))
    low.push_frames(frames)
    low.close()
    _, got_low = _decode_all(low.read())
    np.testing.assert_array_equal(got_low[:1], got[:1])
    assert np.abs(got[15].astype(int) - got_low[15].astype(int)).sum() > 0


class _DriftModel(torch.nn.Module):
    """Stand-in model: keypoints = mean colour, render = the nearest reference (a 'still' decoder)."""

    arch, num_kp, kp_dim, motion_channels = "drift", 1, 2, 2

    def detect(self, frames):
        return frames.mean(dim=(2, 3))[:, :2] * 2 - 1

    def prepare_reference(self, ref):
        return None

    def render(self, refs, kp, index):
        return refs[-1].frame.expand(len(kp), -1, -1, -1)


def test_adaptive_policy_codes_a_key_frame_when_the_reconstruction_falls():
    import torch  # noqa: F401

    rng = np.random.default_rng(0)
    still = np.repeat(talking_face(1, SIZE, SIZE), 60, axis=0).astype(int)
    frames = np.clip(still + rng.integers(-2, 3, still.shape), 0, 255).astype(np.uint8)
    frames[30:] = 255 - frames[30:]  # a scene change at frame 30: holding the reference fails there
    cfg = EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_policy="adaptive", key_min_distance=5,
                             key_drop_db=3.0, key_qp=30)
    enc = Encoder(cfg, model=_DriftModel())
    enc.push_frames(frames)
    enc.close()
    keys = sorted(enc.decoded_keys)
    assert keys == [0, 30]
    # and with a fixed policy nothing but frame 0 is a key
    fixed = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_qp=30), model=_DriftModel())
    fixed.push_frames(frames)
    assert sorted(fixed.decoded_keys) == [0]
