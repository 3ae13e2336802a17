"""Format 1.2 sparse motion: every ``stride``-th frame's keypoints coded, the rest interpolated."""

from __future__ import annotations

import io

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder, Encoder, analyse
from avfc.config import EncoderConfig
from avfc.entropy import interpolate_track, sparse_positions
from avfc.errors import ConfigError, FormatError, LimitError
from avfc.models.zoo import load_model
from synthetic import talking_face

SIZE = 64
MODEL = "tiny-test"


# ---------------------------------------------------------------- entropy layer: positions, interpolation

@pytest.mark.parametrize("n,stride,expected", [
    (25, 3, [0, 3, 6, 9, 12, 15, 18, 21, 24]),
    (25, 2, list(range(0, 25, 2))),
    (10, 4, [0, 4, 8, 9]),
    (1, 5, [0]),
    (2, 5, [0, 1]),
    (7, 1, list(range(7))),
    (0, 3, []),
])
def test_sparse_positions(n, stride, expected):
    assert sparse_positions(n, stride) == expected


def test_sparse_positions_rejects_bad_stride():
    with pytest.raises(FormatError):
        sparse_positions(10, 0)


def test_interpolation_is_exact_integer_rounding_half_up():
    coded = np.array([[0, 10, -7], [3, -5, -7], [4, -4, 8], [10, 10, 9]])
    out = interpolate_track(coded, 10, 4)
    assert out.dtype == np.int32 and out.shape == (10, 3)
    # coded frames keep their values
    np.testing.assert_array_equal(out[[0, 4, 8, 9]], coded)
    # between: nearest integer of the straight line, halves rounded up (towards +infinity)
    for a, b, k in ((0, 4, 0), (4, 8, 1)):
        for j in range(a + 1, b):
            line = coded[k] + (coded[k + 1] - coded[k]) * (j - a) / (b - a)
            np.testing.assert_array_equal(out[j], np.floor(line + 0.5).astype(int))
    assert out[2, 1] == 3  # 10 -> -5: halfway is 2.5, rounded up to 3
    assert out[2, 0] == 2  # 0 -> 3: halfway is 1.5, rounded up to 2


def test_interpolation_rejects_a_wrong_number_of_coded_frames():
    with pytest.raises(FormatError, match="4 coded frames"):
        interpolate_track(np.zeros((3, 2), np.int32), 10, 4)


# ---------------------------------------------------------------- container: header flag, unit, version

def _header(**kw):
    base = dict(model_name="tiny-test", weights_sha256="0" * 64, width=64, height=64, fps_num=25, fps_den=1,
                source_width=64, source_height=64, crop_x=0, crop_y=0, crop_w=64, crop_h=64,
                key_codec=bs.KeyCodec.AV1, kp_count=10, kp_dim=2, kp_precision=5, max_refs=1)
    base.update(kw)
    return bs.SequenceHeader(**base)


def test_header_flag_sets_version_1_2_and_round_trips():
    h = _header(flags=bs.HEADER_FLAG_SPARSE_MOTION)
    assert h.sparse_motion and h.min_version == bs.VERSION_1_2 == (1, 2)
    assert bs.SequenceHeader.from_bytes(h.to_bytes(), 1) == h
    assert _header().min_version == (1, 0) and not _header().sparse_motion
    with pytest.raises(FormatError, match="reserved bits"):
        _header(flags=0x0002)


def test_header_flag_needs_transmitted_motion():
    with pytest.raises(FormatError, match="SPARSE_MOTION needs motion_source TRANSMITTED"):
        _header(flags=bs.HEADER_FLAG_SPARSE_MOTION, avcc_name="b", avcc_sha256="1" * 64,
                motion_source=bs.MotionSource.PREDICTED)


def test_motion_sparse_payload_layout():
    m = bs.MotionSparse(first_frame=3, num_frames=25, flags=bs.MOTION_FLAG_INTRA, stride=3, data=b"\x01\x02")
    raw = m.to_bytes()
    assert raw == bytes.fromhex("00000003" "0019" "01" "03" "0102")
    assert bs.MotionSparse.from_bytes(raw, 1) == m
    assert bs.MotionSparse.from_bytes(raw[:6] + b"\xff" + raw[7:], 1).flags == bs.MOTION_FLAG_INTRA  # reserved masked
    with pytest.raises(FormatError, match="stride"):
        bs.MotionSparse.from_bytes(raw[:7] + b"\x00" + raw[8:], 1)
    with pytest.raises(LimitError, match="stride"):
        bs.MotionSparse.from_bytes(raw[:7] + bytes([bs.MAX_MOTION_STRIDE + 1]) + raw[8:], 1)
    with pytest.raises(FormatError, match="stride"):
        bs.MotionSparse.from_bytes(raw[:7], 1)  # ends inside the fixed fields


def test_writer_needs_the_flag_for_sparse_units():
    w = bs.StreamWriter(io.BytesIO())
    w.write_header(_header())
    with pytest.raises(FormatError, match="MOTION_SPARSE unit in a stream whose header has sparse_motion False"):
        w.write(bs.MotionSparse(first_frame=0, num_frames=5, stride=2, data=b""))


def test_sparse_units_are_unknown_in_older_versions():
    assert int(bs.UnitType.MOTION_SPARSE) not in bs.unit_types_of((1, 1))
    assert int(bs.UnitType.MOTION_SPARSE) not in bs.unit_types_of((1, 0))
    assert int(bs.UnitType.MOTION_SPARSE) in bs.unit_types_of((1, 2))
    assert int(bs.UnitType.MOTION_PRED) in bs.unit_types_of((1, 2))


# ---------------------------------------------------------------- codec

def _encode(frames, **kw) -> bytes:
    kw.setdefault("format_major", 1)  # the 1.2 layout (2.0: tests/codec/test_format_2.py)
    enc = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_qp=35, packet_frames=10, **kw))
    enc.push_frames(frames)
    enc.close()
    return enc.read()


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_sparse_stream_decodes_to_the_interpolated_keypoints(stride):
    frames = talking_face(23, SIZE, SIZE)
    cfg = EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_qp=35, packet_frames=10, effort="detector",
                             motion_stride=stride, format_major=1)
    enc = Encoder(cfg)
    enc.push_frames(frames)
    enc.close()
    data = enc.read()
    assert data[4:6] == bytes((1, 2))  # version 1.2
    parsed = bs.parse_stream(data)
    assert parsed.header.sparse_motion
    packets = [bs.decode_payload(u, parsed.version[0]) for u in parsed.units if u.type == bs.UnitType.MOTION_SPARSE]
    assert [(p.first_frame, p.num_frames, p.stride) for p in packets] == [(0, 10, stride), (10, 10, stride),
                                                                          (20, 3, stride)]
    assert not any(u.type == bs.UnitType.MOTION for u in parsed.units)
    dec = Decoder(keep_motion=True)
    dec.push(data)
    dec.close()
    assert dec.issues == [] and dec.pull_frames().shape == (23, SIZE, SIZE, 3)
    # what the decoder holds is the encoder's analysis on the coded frames, interpolated in between
    q = analyse(load_model(MODEL), frames, cfg.kp_precision, cfg.kp_hysteresis)
    expected = np.concatenate([interpolate_track(q[s:s + 10][sparse_positions(len(q[s:s + 10]), stride)],
                                                 len(q[s:s + 10]), stride) for s in (0, 10, 20)])
    np.testing.assert_array_equal(dec.motion_array(), expected)
    for s in (0, 10, 20):  # the coded frames are exact
        pos = [s + p for p in sparse_positions(len(q[s:s + 10]), stride)]
        np.testing.assert_array_equal(dec.motion_array()[pos], q[pos])


def test_sparse_motion_costs_fewer_bytes_than_dense():
    frames = talking_face(50, SIZE, SIZE)
    sizes = {}
    for stride in (1, 3):
        res = avfc.encode(frames, size=SIZE, model=MODEL, audio="none", key_qp=35, kp_hysteresis=0.0,
                          kp_precision=7, motion_stride=stride, format_major=1)
        sizes[stride] = res.stats.bytes_by_type["motion"]
        assert res.data[5] == (2 if stride > 1 else 0)
    assert sizes[3] < 0.7 * sizes[1], sizes


def test_predicted_packets_follow_sparse_ones_from_the_coded_last_frame():
    # intra_period 3: packets 1 and 2 predict from the last frame of the packet before
    frames = talking_face(30, SIZE, SIZE)
    data = _encode(frames, intra_period=3, motion_stride=3)
    parsed = bs.parse_stream(data)
    flags = [bs.decode_payload(u, parsed.version[0]).flags for u in parsed.units
             if u.type == bs.UnitType.MOTION_SPARSE]
    assert flags == [bs.MOTION_FLAG_INTRA, 0, 0]
    res = avfc.decode(data)
    assert res.issues == [] and len(res.frames) == 30


def test_a_1_1_reader_skips_sparse_units_and_conceals():
    """What an older reader does: type 08 is unknown in a 1.1 stream, so its frames are concealed."""
    frames = talking_face(20, SIZE, SIZE)
    data = bytearray(_encode(frames, motion_stride=2))
    data[5] = 1  # relabel as 1.1: MOTION_SPARSE becomes an unknown unit type
    res = avfc.decode(bytes(data))
    assert len(res.frames) == 20
    assert any(i.kind == "lost_motion" for i in res.issues)
    np.testing.assert_array_equal(res.frames[5], res.frames[0])  # the key frame held


def test_damaged_sparse_packet_is_concealed_and_the_rest_decodes():
    frames = talking_face(30, SIZE, SIZE)
    data = bytearray(_encode(frames, motion_stride=3))
    units = bs.parse_stream(bytes(data)).units
    second = [u for u in units if u.type == bs.UnitType.MOTION_SPARSE][1]
    data[second.offset + 12] ^= 0xFF  # inside its payload: the CRC fails
    res = avfc.decode(bytes(data))
    assert len(res.frames) == 30
    lost = [i.frames for i in res.issues if i.kind == "lost_motion"]
    assert lost == [(10, 20)]


def test_config_rejects_stride_with_other_motion_sources():
    with pytest.raises(ConfigError, match="motion_stride"):
        EncoderConfig.make(motion_stride=2, motion_source="predicted", audio_coder="raw")
