"""Format 2.0 through the codec: the same content as 1.x in fewer bytes, for every mode."""

from __future__ import annotations

import io

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder
from avfc.errors import ModelMismatchError
from avfc.media.synthetic import speech_like, talking_face

N, SIZE, MODEL = 50, 64, "tiny-test"

MODES = {
    "plain": {},
    "sparse": {"motion_stride": 3},
    "bidir": {"key_interval": 20, "max_refs": 2, "reference_mode": "bidirectional"},
    "avcc": {"audio_coder": "context", "motion_source": "predicted", "avcc": "avcc-mrdac-cpu-v1", "kp_precision": 6},
    "lips": {"audio_coder": "context", "motion_source": "speech", "avcc": "avcc-mrdac-cpu-v1", "kp_precision": 6},
    "diffusion": {"audio_coder": "context", "motion_source": "speech", "avcc": "avcc-mrdac-cpu-v3",
                  "lips_model": "diffusion", "diffusion_steps": 2},
    "opus-hevc": {"audio": "opus", "key_codec": "hevc"},
}


@pytest.fixture(scope="module")
def media():
    return talking_face(N, SIZE, SIZE, seed=11), speech_like(N / 25, seed=11)


def _decode(data: bytes) -> Decoder:
    dec = Decoder(keep_motion=True)
    dec.push(data)
    dec.close()
    return dec


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_2_0_stream_decodes_exactly_as_the_1_x_stream_of_the_same_content(media, mode):
    frames, pcm = media
    common = dict(pcm=pcm, model=MODEL, size=SIZE, key_qp=40, packet_frames=10, **MODES[mode])
    old = avfc.encode(frames, format_major=1, **common)
    new = avfc.encode(frames, **common)  # format 2.0 is the default
    assert old.data[4] == 1 and new.data[4:6] == b"\x02\x00"
    assert len(new.data) < len(old.data)
    a, b = _decode(old.data), _decode(new.data)
    assert a.issues == b.issues == []
    np.testing.assert_array_equal(a.motion_array(), b.motion_array())
    assert a.audio_tokens == b.audio_tokens
    np.testing.assert_array_equal(a.pull_frames(), b.pull_frames())
    assert a.audio().shape == b.audio().shape  # (the PCM is Codec2's: tokens are what is exact)
    # the units carry the same content: payload for payload, only the fixed fields shrink
    units_old, units_new = bs.parse_stream(old.data).units, bs.parse_stream(new.data).units
    assert [u.type for u in units_old] == [u.type for u in units_new]
    for u, v in zip(units_old, units_new):
        assert bs.decode_payload(u, 1) == bs.decode_payload(v, 2)


def test_the_saving_on_a_4_second_clip_is_about_100_bytes():
    frames, pcm = talking_face(100, SIZE, SIZE, seed=2), speech_like(4.0, seed=2)
    old = avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, key_qp=40, format_major=1)
    new = avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, key_qp=40)
    saved = len(old.data) - len(new.data)
    # header 48 fewer bytes (the 14-byte hash, fixed-width fields), EOS 9, 4 motion and 4 audio units 6-7 each,
    # the key frame 5
    assert 90 <= saved <= 130, saved
    assert new.stats.bytes_by_type["header"] <= 60


def test_with_a_bitrate_the_saved_bytes_go_to_the_key_frame(media):
    frames, pcm = talking_face(100, SIZE, SIZE, seed=4), speech_like(4.0, seed=4)
    kw = dict(pcm=pcm, model=MODEL, size=SIZE, bitrate_kbps=2.0)
    old, new = avfc.encode(frames, format_major=1, **kw), avfc.encode(frames, **kw)
    assert sum(new.stats.key_picture_bytes) > sum(old.stats.key_picture_bytes)
    assert len(new.data) <= 2.0 * 1000 / 8 * 4.0


def test_info_and_a_damaged_2_0_stream(media):
    from avfc.codec.info import stream_info

    frames, pcm = media
    data = avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, key_qp=40, packet_frames=10).data
    info = stream_info(data)
    assert info["version"] == "2.0" and info["frames"] == N
    assert sum(u["bytes"] for u in info["units"].values()) == len(data)
    # one motion unit's CRC broken: its frames are concealed, the rest decodes
    units = bs.parse_stream(data).units
    second_motion = [u for u in units if u.type == bs.UnitType.MOTION][1]
    damaged = bytearray(data)
    damaged[second_motion.offset + second_motion.size - 1] ^= 0xFF
    res = avfc.decode(bytes(damaged))
    assert len(res.frames) == N
    assert [i.kind for i in res.issues if i.kind != "lost_motion"] == ["damage"]
    lost = [i for i in res.issues if i.kind == "lost_motion"]
    assert lost and lost[0].frames[0] == 10


def test_a_2_0_header_whose_hash_prefix_names_other_weights_is_refused(media):
    frames, pcm = media
    data = avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, key_qp=40).data
    parsed = bs.parse_stream(data)
    assert len(parsed.header.weights_sha256) == 16
    fake = parsed.header.model_copy(update={"weights_sha256": "0" * 16})
    buf = io.BytesIO()
    w = bs.StreamWriter(buf, 2)
    w.write_header(fake)
    for u in parsed.units:
        w.write_unit(u.type, u.payload)
    with pytest.raises(ModelMismatchError, match="0000000000000000"):
        avfc.decode(buf.getvalue())
