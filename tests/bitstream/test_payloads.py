"""Payload models: round trips, exact layouts, every bound, forward compatibility."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfc.bitstream import (
    MAX_FRAME_COUNT,
    HEADER_FLAG_SPARSE_MOTION,
    MOTION_FLAG_INTRA,
    SIDE_INFO_FLAG_BASE_PICTURE,
    SIDE_INFO_FLAG_DRIVE_PICTURE_FUSION,
    SIDE_INFO_FLAG_KP_PREDICTION,
    SIDE_INFO_FLAG_LOW_CONFIDENCE,
    MAX_UNIT_PAYLOAD,
    PAYLOAD_TYPES,
    Audio,
    AudioCodecId,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    Motion,
    MotionCoder,
    ReferenceMode,
    SequenceHeader,
    SideInfo,
    Unit,
    UnitType,
    decode_payload,
)
from avfc.errors import FormatError, LimitError

from .conftest import HEADER_FIELDS, sample_payloads

# independent description of the fixed part of the header (after name and digest)
_HEADER_STRUCT = ">HHHHIHHHHHHBBIIHBBBBBBH"
_HEADER_ORDER = (
    "width height fps_num fps_den frame_count source_width source_height crop_x crop_y crop_w crop_h "
    "key_codec audio_codec audio_sample_rate audio_param audio_frame_samples kp_count kp_dim kp_precision "
    "motion_coder reference_mode max_refs flags"
).split()


def raw_header(**overrides: Any) -> bytes:
    """Pack a header payload by hand from HEADER_FIELDS (flags 0), overriding raw values."""
    values = {**HEADER_FIELDS, "flags": 0, **overrides}
    name = values["model_name"].encode() if isinstance(values["model_name"], str) else values["model_name"]
    digest = bytes.fromhex(values["weights_sha256"])
    return bytes([len(name)]) + name + digest + struct.pack(_HEADER_STRUCT, *(int(values[k]) for k in _HEADER_ORDER))


def test_header_layout_matches_hand_packing(make_header) -> None:
    header = make_header()
    assert header.to_bytes() == raw_header()
    assert len(header.to_bytes()) == 1 + len(header.model_name) + 32 + 44
    assert header.fps == 25
    assert SequenceHeader.from_bytes(raw_header(), 1) == header


@pytest.mark.parametrize("payload", sample_payloads(seed=3, count=8), ids=lambda p: type(p).__name__)
def test_round_trip_every_payload_type(payload) -> None:
    data = payload.to_bytes()
    again = type(payload).from_bytes(data, 1)
    assert again == payload
    assert again.to_bytes() == data
    assert decode_payload(Unit(payload.UNIT_TYPE, data, 0), 1) == payload


def test_round_trip_header_variants(make_header) -> None:
    for overrides in (
        {},
        dict(audio_codec=AudioCodecId.NONE, audio_sample_rate=0, audio_param=0, audio_frame_samples=0),
        dict(audio_codec=AudioCodecId.OPUS, audio_sample_rate=48000, audio_param=6000, audio_frame_samples=960),
        dict(key_codec=KeyCodec.HEVC, reference_mode=ReferenceMode.BIDIRECTIONAL, max_refs=16, frame_count=0),
        dict(width=4096, height=16, fps_num=240, fps_den=1, model_name="a" * 64, kp_count=64, kp_dim=16),
    ):
        header = make_header(**overrides)
        assert SequenceHeader.from_bytes(header.to_bytes(), 1) == header


def test_fixed_layouts_of_small_payloads() -> None:
    assert KeyFrame(frame_index=258, quality=40, data=b"\x12").to_bytes() == bytes.fromhex("00000102 28 12")
    assert Motion(first_frame=1, num_frames=300, flags=MOTION_FLAG_INTRA, data=b"").to_bytes() == bytes.fromhex(
        "00000001 012c 01"
    )
    assert Audio(first_frame=70000, num_frames=2, data=b"ab").to_bytes() == bytes.fromhex("00011170 0002") + b"ab"
    side = SideInfo(
        info_id=0x0102, counter=3,
        flags=SIDE_INFO_FLAG_BASE_PICTURE | SIDE_INFO_FLAG_LOW_CONFIDENCE | SIDE_INFO_FLAG_KP_PREDICTION,
        kp_precision=6, kp_count=10, kp_dim=2, applies_from_frame=5, refs=(0, 9),
    )
    assert side.to_bytes() == bytes.fromhex("0102 0003 19 06 0a 02 00000005 02 00000000 00000009")
    assert (side.base_picture, side.network_present, side.drive_picture_fusion) == (True, False, False)
    assert (side.low_confidence, side.kp_prediction) == (True, True)
    eos = EndOfStream(frame_count=1, audio_frame_count=2, audio_samples=0x10000)
    assert eos.to_bytes() == bytes.fromhex("00000001 00000002 00010000")


@given(
    first=st.integers(0, MAX_FRAME_COUNT - 1024),
    count=st.integers(1, 1024),
    flags=st.sampled_from([0, MOTION_FLAG_INTRA]),
    data=st.binary(max_size=64),
)
@settings(max_examples=60, deadline=None)
def test_motion_round_trip_property(first: int, count: int, flags: int, data: bytes) -> None:
    motion = Motion(first_frame=first, num_frames=count, flags=flags, data=data)
    assert motion.intra == bool(flags)
    assert Motion.from_bytes(motion.to_bytes(), 1) == motion


def test_trailing_bytes_ignored_for_extensible_payloads(make_avcc_header) -> None:
    header = make_avcc_header()  # bytes after the 1.0 fields are the 1.1 extension; after it, ignored
    assert SequenceHeader.from_bytes(header.to_bytes() + b"\x01\x02future", 1) == header
    side = sample_payloads()[3]
    assert isinstance(side, SideInfo)
    assert SideInfo.from_bytes(side.to_bytes() + b"\xff" * 9, 1) == side
    eos = EndOfStream(frame_count=3)
    assert EndOfStream.from_bytes(eos.to_bytes() + b"\x00", 1) == eos


def test_reserved_flag_bits_ignored_on_read(make_header) -> None:
    assert SequenceHeader.from_bytes(raw_header(flags=0xFFFE), 1) == make_header()
    # bit 0 is defined since 1.2 (SPARSE_MOTION), the other 15 are reserved
    assert SequenceHeader.from_bytes(raw_header(flags=0xFFFF), 1) == make_header(flags=HEADER_FLAG_SPARSE_MOTION)
    motion = Motion.from_bytes(bytes.fromhex("00000001 0001 fe") + b"x", 1)
    assert motion.flags == 0 and motion.intra is False and motion.data == b"x"
    assert Motion.from_bytes(bytes.fromhex("00000001 0001 ff"), 1).flags == MOTION_FLAG_INTRA
    side = SideInfo.from_bytes(bytes.fromhex("0000 0000 e5 00 01 01 00000000 00"), 1)
    assert side.flags == SIDE_INFO_FLAG_BASE_PICTURE | SIDE_INFO_FLAG_DRIVE_PICTURE_FUSION


def test_reserved_flag_bits_rejected_on_construction(make_header) -> None:
    with pytest.raises(FormatError, match="SequenceHeader.flags"):
        make_header(flags=2)
    with pytest.raises(FormatError, match="Motion.flags"):
        Motion(first_frame=0, num_frames=1, flags=0x02, data=b"")
    with pytest.raises(FormatError, match="SideInfo.flags"):
        SideInfo(**{**_SIDE, "flags": 0x20})


def test_unknown_unit_type_decodes_to_none() -> None:
    assert decode_payload(Unit(0x42, b"anything", 6), 1) is None
    assert set(PAYLOAD_TYPES) == set(UnitType)


# ---- bounds: (field overrides, expected error) ------------------------------------------

HEADER_BOUNDS = [
    (dict(model_name=""), FormatError),
    (dict(model_name="a" * 65), LimitError),
    (dict(model_name="bad name"), FormatError),
    (dict(model_name="naïve"), FormatError),
    (dict(weights_sha256="AB" * 32), FormatError),
    (dict(weights_sha256="ab" * 31), FormatError),
    (dict(width=14), FormatError),
    (dict(width=4098), LimitError),
    (dict(width=258, height=255), FormatError),
    (dict(height=4100), LimitError),
    (dict(fps_num=0), FormatError),
    (dict(fps_den=0), FormatError),
    (dict(fps_num=241, fps_den=1), LimitError),
    (dict(fps_num=481, fps_den=2), LimitError),
    (dict(frame_count=MAX_FRAME_COUNT + 1), LimitError),
    (dict(source_width=0), FormatError),
    (dict(crop_x=400, crop_w=256), FormatError),
    (dict(crop_y=300, crop_h=181), FormatError),
    (dict(crop_w=0), FormatError),
    (dict(key_codec=3), FormatError),
    (dict(audio_codec=3), FormatError),
    (dict(audio_codec=0, audio_sample_rate=8000, audio_param=0, audio_frame_samples=0), FormatError),
    (dict(audio_codec=0, audio_sample_rate=0, audio_param=0, audio_frame_samples=320), FormatError),
    (dict(audio_sample_rate=0), FormatError),
    (dict(audio_sample_rate=7999), FormatError),
    (dict(audio_sample_rate=48001), LimitError),
    (dict(audio_param=0), FormatError),
    (dict(audio_frame_samples=0), FormatError),
    (dict(kp_count=0), FormatError),
    (dict(kp_count=65), LimitError),
    (dict(kp_dim=0), FormatError),
    (dict(kp_dim=17), LimitError),
    (dict(kp_precision=16), LimitError),
    (dict(motion_coder=0), FormatError),
    (dict(motion_coder=2), FormatError),
    (dict(reference_mode=2), FormatError),
    (dict(max_refs=0), FormatError),
    (dict(max_refs=17), LimitError),
]


@pytest.mark.parametrize("overrides,error", HEADER_BOUNDS, ids=lambda v: str(v)[:40])
def test_header_bounds_on_construction_and_read(make_header, overrides: dict, error: type) -> None:
    with pytest.raises(error) as info:
        make_header(**overrides)
    field = next(iter(overrides)) if len(overrides) == 1 else None
    if field is not None:
        assert field in str(info.value)
    if "weights_sha256" in overrides:
        return  # a hex spelling: the raw 32 bytes cannot express it
    with pytest.raises(error):
        SequenceHeader.from_bytes(raw_header(**overrides), 1)


@pytest.mark.parametrize(
    "overrides",
    [dict(width=True), dict(width=256.0), dict(model_name=b"abc"), dict(frame_count="7"), dict(crop_x=-1)],
    ids=str,
)
def test_header_rejects_wrong_python_types(make_header, overrides: dict) -> None:
    with pytest.raises(FormatError):
        make_header(**overrides)


def test_header_boundaries_accepted(make_header) -> None:
    make_header(fps_num=480, fps_den=2, frame_count=MAX_FRAME_COUNT, crop_x=384, crop_y=224)
    make_header(width=16, height=16, kp_precision=0, kp_count=1, kp_dim=1, max_refs=1)
    make_header(audio_sample_rate=48000)


def test_header_non_ascii_name_on_read() -> None:
    with pytest.raises(FormatError, match="model_name"):
        SequenceHeader.from_bytes(raw_header(model_name="x\xe9y".encode("latin-1")), 1)


def test_header_truncated_payload_names_the_field() -> None:
    raw = raw_header()
    cases = {0: "model_name_length", 5: "model_name", 20: "weights_sha256", 48: "width", 57: "frame_count",
             len(raw) - 1: "flags"}
    for cut, field in cases.items():
        with pytest.raises(FormatError, match=rf"SequenceHeader\.{field}\b"):
            SequenceHeader.from_bytes(raw[:cut], 1)


OTHER_BOUNDS = [
    (KeyFrame, dict(frame_index=MAX_FRAME_COUNT, quality=1, data=b"x"), LimitError),
    (KeyFrame, dict(frame_index=-1, quality=1, data=b"x"), FormatError),
    (KeyFrame, dict(frame_index=0, quality=256, data=b"x"), LimitError),
    (KeyFrame, dict(frame_index=0, quality=1, data=b""), FormatError),
    (KeyFrame, dict(frame_index=0, quality=1, data="text"), FormatError),
    (Motion, dict(first_frame=0, num_frames=0, data=b""), FormatError),
    (Motion, dict(first_frame=0, num_frames=1025, data=b""), LimitError),
    (Motion, dict(first_frame=MAX_FRAME_COUNT - 1, num_frames=2, data=b""), LimitError),
    (Motion, dict(first_frame=0, num_frames=1, flags=True, data=b""), FormatError),
    (Motion, dict(first_frame=0, num_frames=1, flags=256, data=b""), LimitError),
    (Audio, dict(first_frame=0, num_frames=0, data=b""), FormatError),
    (Audio, dict(first_frame=0, num_frames=4097, data=b""), LimitError),
    (Audio, dict(first_frame=2**32 - 1, num_frames=2, data=b""), LimitError),
    (Audio, dict(first_frame=2**32, num_frames=1, data=b""), LimitError),
    (EndOfStream, dict(frame_count=MAX_FRAME_COUNT + 1), LimitError),
    (EndOfStream, dict(frame_count=1, audio_samples=2**32), LimitError),
    (EndOfStream, dict(frame_count=1, audio_frame_count=-1), FormatError),
]
_SIDE = dict(info_id=1, counter=1, kp_precision=6, kp_count=10, kp_dim=2, applies_from_frame=0)
SIDE_BOUNDS = [
    (dict(refs=tuple(range(17))), LimitError),
    (dict(refs=(MAX_FRAME_COUNT,)), LimitError),
    (dict(kp_count=0), FormatError),
    (dict(kp_dim=17), LimitError),
    (dict(kp_precision=16), LimitError),
    (dict(info_id=65536), LimitError),
    (dict(applies_from_frame=MAX_FRAME_COUNT), LimitError),
    (dict(flags="yes"), FormatError),
    (dict(flags=256), LimitError),
]


@pytest.mark.parametrize("model,fields,error", OTHER_BOUNDS, ids=lambda v: str(v)[:40])
def test_other_payload_bounds(model: type, fields: dict, error: type) -> None:
    with pytest.raises(error, match=model.__name__):
        model(**fields)


@pytest.mark.parametrize("overrides,error", SIDE_BOUNDS, ids=lambda v: str(v)[:40])
def test_side_info_bounds(overrides: dict, error: type) -> None:
    with pytest.raises(error, match="SideInfo"):
        SideInfo(**{**_SIDE, **overrides})


def test_bounds_enforced_on_read() -> None:
    with pytest.raises(LimitError, match="num_frames"):
        Motion.from_bytes(bytes.fromhex("00000000 0401 00"), 1)
    with pytest.raises(LimitError, match="frame_index"):
        KeyFrame.from_bytes(MAX_FRAME_COUNT.to_bytes(4, "big") + b"\x00x", 1)
    with pytest.raises(FormatError, match="KeyFrame.data"):
        KeyFrame.from_bytes(bytes.fromhex("00000000 00"), 1)
    with pytest.raises(LimitError, match="num_refs"):
        SideInfo.from_bytes(bytes.fromhex("0000 0000 00 00 01 01 00000000 11"), 1)
    with pytest.raises(FormatError, match=r"refs\[1\]"):
        SideInfo.from_bytes(bytes.fromhex("0000 0000 00 00 01 01 00000000 02 00000001 0000"), 1)
    with pytest.raises(FormatError, match="Audio.num_frames"):
        Audio.from_bytes(bytes.fromhex("00000000 00"), 1)
    with pytest.raises(FormatError, match="EndOfStream.audio_samples"):
        EndOfStream.from_bytes(bytes(10), 1)


def test_data_size_bounded_by_unit_payload() -> None:
    KeyFrame(frame_index=0, quality=0, data=bytes(MAX_UNIT_PAYLOAD - 5))
    with pytest.raises(LimitError, match="KeyFrame.data"):
        KeyFrame(frame_index=0, quality=0, data=bytes(MAX_UNIT_PAYLOAD - 4))


def test_models_are_frozen(make_header) -> None:
    header = make_header()
    with pytest.raises(Exception) as info:
        header.width = 512  # type: ignore[misc]
    assert header.width == 256 and info.value is not None


def test_from_bytes_rejects_non_bytes() -> None:
    with pytest.raises(FormatError):
        Motion.from_bytes("00000000", 1)  # type: ignore[arg-type]


def test_enum_values_are_the_spec_values() -> None:
    assert [int(c) for c in KeyCodec] == [1, 2]
    assert [int(c) for c in AudioCodecId] == [0, 1, 2]
    assert int(MotionCoder.LAPLACE_V1) == 1
    assert [int(m) for m in ReferenceMode] == [0, 1]
