"""Format 1.1: the AVCC header extension, AUDIO_CTX and MOTION_PRED units, writer version and consistency."""

from __future__ import annotations

import io
import struct
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfc.bitstream import (
    FORMAT_VERSION,
    MAX_FRAME_COUNT,
    MAX_UNIT_PAYLOAD,
    MOTION_FLAG_INTRA,
    PAYLOAD_TYPES,
    VERSION_1_0,
    VERSION_1_1,
    Audio,
    AudioCodecId,
    AudioCoder,
    AudioCtx,
    Damage,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    Motion,
    MotionPred,
    MotionSource,
    SequenceHeader,
    SideInfo,
    StreamParser,
    StreamWriter,
    Unit,
    UnitType,
    decode_payload,
    encode_unit,
    parse_stream,
    unit_types_of,
)
from avfc.bitstream.units import encode_preamble
from avfc.errors import FormatError, LimitError

from .conftest import AVCC_FIELDS, HEADER_FIELDS, sample_payloads, sample_payloads_v1_1
from .test_payloads import raw_header

# The 1.1 example stream of docs/bitstream.md (part A, section 8.2), written by hand from the
# spec; CRC-32 values computed with zlib.crc32 over the hand-written bytes, not by the library.
GOLDEN_1_1_HEX = "".join(
    [
        "41564643 01 01",  # magic, version 1.1
        "01 74",  # SEQUENCE_HEADER, 116-byte payload
        "01 74" + "ab" * 32,  # model_name "t", weights_sha256
        "0100 0100 0019 0001 00000002",  # 256x256, 25/1 fps, 2 frames
        "0280 01e0 00c0 0070 0100 0100",  # 640x480 source, crop 192,112 256x256
        "01 01 00001f40 000002bc 0140",  # AV1; Codec2 8000 Hz, mode 700, 320 samples per frame
        "0a 02 06 01 00 02 0000",  # keypoints, coder, low delay, 2 refs, flags
        "01 63" + "cd" * 32,  # avcc_name "c", avcc_sha256
        "01 01 0000",  # audio_coder CONTEXT, motion_source PREDICTED, avcc_flags
        "2fe6a12f",
        "02 07 00000000 28 1234",  # KEY_FRAME: frame 0, QP 40, data 12 34
        "ad24a60f",
        "06 08 00000000 0002 00 5a",  # AUDIO_CTX: audio frames 0..1, flags 0, data 5a
        "dd76d6ad",
        "07 08 00000001 0001 01 aa",  # MOTION_PRED: frame 1, 1 frame, intra, data aa
        "a934e927",
        "0f 0c 00000002 00000002 00000280",  # END_OF_STREAM
        "962dee8e",
    ]
).replace(" ", "")


def golden_1_1_header() -> SequenceHeader:
    return SequenceHeader(
        model_name="t", weights_sha256="ab" * 32, width=256, height=256, fps_num=25, fps_den=1, frame_count=2,
        source_width=640, source_height=480, crop_x=192, crop_y=112, crop_w=256, crop_h=256,
        key_codec=KeyCodec.AV1, audio_codec=AudioCodecId.CODEC2, audio_sample_rate=8000, audio_param=700,
        audio_frame_samples=320, kp_count=10, kp_dim=2, kp_precision=6, max_refs=2,
        avcc_name="c", avcc_sha256="cd" * 32, audio_coder=AudioCoder.CONTEXT, motion_source=MotionSource.PREDICTED,
    )


def raw_extension(name: bytes = b"avcc-ctx_v1", digest: bytes = bytes.fromhex(AVCC_FIELDS["avcc_sha256"]),
                  audio_coder: int = 1, motion_source: int = 1, avcc_flags: int = 0) -> bytes:
    """Pack the 1.1 extension by hand."""
    return bytes([len(name)]) + name + digest + struct.pack(">BBH", audio_coder, motion_source, avcc_flags)


def write_stream(header: SequenceHeader, payloads: list) -> bytes:
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    writer.write_header(header)
    for payload in payloads:
        writer.write(payload)
    return fp.getvalue()


# ---- versions and unit types ---------------------------------------------------------------


def test_versions_and_unit_type_numbers() -> None:
    assert FORMAT_VERSION == (2, 3) and VERSION_1_1 == (1, 1) and VERSION_1_0 == (1, 0)
    assert (int(UnitType.AUDIO_CTX), int(UnitType.MOTION_PRED)) == (0x06, 0x07)
    assert unit_types_of((1, 0)) == {0x01, 0x02, 0x03, 0x04, 0x05, 0x0F}
    assert unit_types_of((1, 1)) == {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0F}
    # every 1.x type from 1.2 on; REFRESH (0x09) only from 2.1 on, DECODER_PARAMS (0x0A) from 2.2 on
    assert unit_types_of((1, 2)) == unit_types_of((1, 9)) == {int(t) for t in UnitType} - {0x09, 0x0A}
    assert PAYLOAD_TYPES[UnitType.AUDIO_CTX] is AudioCtx and PAYLOAD_TYPES[UnitType.MOTION_PRED] is MotionPred
    assert [int(c) for c in AudioCoder] == [0, 1] and [int(m) for m in MotionSource] == [0, 1, 2]
    with pytest.raises(FormatError, match="version"):
        encode_preamble((1, 256))


# ---- the new payloads ------------------------------------------------------------------------


def test_new_payload_layouts() -> None:
    ctx = AudioCtx(first_frame=70000, num_frames=2, data=b"ab")
    assert ctx.to_bytes() == bytes.fromhex("00011170 0002 00") + b"ab"
    pred = MotionPred(first_frame=1, num_frames=300, flags=MOTION_FLAG_INTRA, data=b"\x99")
    assert pred.to_bytes() == bytes.fromhex("00000001 012c 01 99")
    assert pred.intra is True and MotionPred(first_frame=0, num_frames=1, data=b"").intra is False
    # same bytes as a Motion, but a different unit: a 1.0 decoder must not take it for a Motion
    assert not isinstance(pred, Motion) and not isinstance(ctx, Audio)
    assert pred.to_bytes() == Motion(first_frame=1, num_frames=300, flags=MOTION_FLAG_INTRA, data=b"\x99").to_bytes()


@pytest.mark.parametrize("payload", sample_payloads_v1_1(seed=4, count=8), ids=lambda p: type(p).__name__)
def test_round_trip_every_1_1_payload(payload) -> None:
    data = payload.to_bytes()
    assert type(payload).from_bytes(data, 1) == payload
    assert decode_payload(Unit(payload.UNIT_TYPE, data, 0), 1) == payload


@given(first=st.integers(0, 2**32 - 4096), count=st.integers(1, 4096), data=st.binary(max_size=64))
@settings(max_examples=60, deadline=None)
def test_audio_ctx_round_trip_property(first: int, count: int, data: bytes) -> None:
    ctx = AudioCtx(first_frame=first, num_frames=count, data=data)
    raw = ctx.to_bytes()
    assert raw[:7] == struct.pack(">IHB", first, count, 0) and raw[7:] == data
    assert AudioCtx.from_bytes(raw, 1) == ctx


@given(
    first=st.integers(0, MAX_FRAME_COUNT - 1024),
    count=st.integers(1, 1024),
    flags=st.sampled_from([0, MOTION_FLAG_INTRA]),
    data=st.binary(max_size=64),
)
@settings(max_examples=60, deadline=None)
def test_motion_pred_round_trip_property(first: int, count: int, flags: int, data: bytes) -> None:
    pred = MotionPred(first_frame=first, num_frames=count, flags=flags, data=data)
    assert pred.intra == bool(flags)
    assert MotionPred.from_bytes(pred.to_bytes(), 1) == pred


NEW_BOUNDS = [
    (AudioCtx, dict(first_frame=0, num_frames=0, data=b""), FormatError, "num_frames"),
    (AudioCtx, dict(first_frame=0, num_frames=4097, data=b""), LimitError, "num_frames"),
    (AudioCtx, dict(first_frame=2**32 - 1, num_frames=2, data=b""), LimitError, "num_frames"),
    (AudioCtx, dict(first_frame=2**32, num_frames=1, data=b""), LimitError, "first_frame"),
    (AudioCtx, dict(first_frame=-1, num_frames=1, data=b""), FormatError, "first_frame"),
    (AudioCtx, dict(first_frame=0, num_frames=1, flags=1, data=b""), FormatError, "flags"),
    (AudioCtx, dict(first_frame=0, num_frames=1, flags=256, data=b""), LimitError, "flags"),
    (AudioCtx, dict(first_frame=0, num_frames=1, data="text"), FormatError, "data"),
    (AudioCtx, dict(first_frame=0, num_frames=1, data=bytes(MAX_UNIT_PAYLOAD - 6)), LimitError, "data"),
    (MotionPred, dict(first_frame=0, num_frames=0, data=b""), FormatError, "num_frames"),
    (MotionPred, dict(first_frame=0, num_frames=1025, data=b""), LimitError, "num_frames"),
    (MotionPred, dict(first_frame=MAX_FRAME_COUNT - 1, num_frames=2, data=b""), LimitError, "num_frames"),
    (MotionPred, dict(first_frame=MAX_FRAME_COUNT, num_frames=1, data=b""), LimitError, "first_frame"),
    (MotionPred, dict(first_frame=0, num_frames=1, flags=0x02, data=b""), FormatError, "flags"),
    (MotionPred, dict(first_frame=0, num_frames=1, flags=True, data=b""), FormatError, "flags"),
    (MotionPred, dict(first_frame=0, num_frames=1, data=bytes(MAX_UNIT_PAYLOAD - 6)), LimitError, "data"),
]


@pytest.mark.parametrize("model,fields,error,field", NEW_BOUNDS, ids=lambda v: str(v)[:40])
def test_new_payload_bounds_name_the_field(model: type, fields: dict, error: type, field: str) -> None:
    with pytest.raises(error, match=rf"{model.__name__}\.{field}"):
        model(**fields)


def test_new_payload_data_size_boundary() -> None:
    assert len(AudioCtx(first_frame=0, num_frames=1, data=bytes(MAX_UNIT_PAYLOAD - 7)).to_bytes()) == MAX_UNIT_PAYLOAD
    assert len(MotionPred(first_frame=0, num_frames=1, data=bytes(MAX_UNIT_PAYLOAD - 7)).to_bytes()) == MAX_UNIT_PAYLOAD


def test_new_payloads_on_read() -> None:
    with pytest.raises(LimitError, match=r"AudioCtx\.num_frames"):
        AudioCtx.from_bytes(bytes.fromhex("00000000 1001 00"), 1)
    with pytest.raises(LimitError, match=r"MotionPred\.num_frames"):
        MotionPred.from_bytes(bytes.fromhex("00000000 0401 00"), 1)
    with pytest.raises(LimitError, match=r"MotionPred\.first_frame"):
        MotionPred.from_bytes(MAX_FRAME_COUNT.to_bytes(4, "big") + bytes.fromhex("0001 00"), 1)
    for model, cut, field in ((AudioCtx, 3, "first_frame"), (AudioCtx, 5, "num_frames"), (AudioCtx, 6, "flags"),
                              (MotionPred, 0, "first_frame"), (MotionPred, 4, "num_frames"),
                              (MotionPred, 6, "flags")):
        with pytest.raises(FormatError, match=rf"{model.__name__}\.{field}\b"):
            model.from_bytes(bytes.fromhex("00000000 0001 01")[:cut], 1)
    with pytest.raises(FormatError):
        AudioCtx.from_bytes("00000000", 1)  # type: ignore[arg-type]


def test_new_payload_reserved_bits_masked_on_read() -> None:
    ctx = AudioCtx.from_bytes(bytes.fromhex("00000005 0003 ff") + b"tok", 1)
    assert (ctx.first_frame, ctx.num_frames, ctx.flags, ctx.data) == (5, 3, 0, b"tok")
    pred = MotionPred.from_bytes(bytes.fromhex("00000001 0001 fe") + b"x", 1)
    assert pred.flags == 0 and pred.data == b"x"
    assert MotionPred.from_bytes(bytes.fromhex("00000001 0001 ff"), 1).flags == MOTION_FLAG_INTRA


# ---- the header extension ------------------------------------------------------------------


def test_header_without_extension_is_the_1_0_header(make_header) -> None:
    header = make_header()
    assert header.min_version == (1, 0)
    assert (header.avcc_name, header.avcc_sha256) == (None, None)
    assert (header.audio_coder, header.motion_source, header.avcc_flags) == (AudioCoder.RAW,
                                                                              MotionSource.TRANSMITTED, 0)
    assert header.to_bytes() == raw_header()  # the 1.0 bytes, nothing appended
    assert SequenceHeader.from_bytes(raw_header(), 1) == header


def test_header_extension_layout(make_avcc_header) -> None:
    header = make_avcc_header()
    assert header.min_version == (1, 1)
    assert header.to_bytes() == raw_header() + raw_extension()
    assert len(header.to_bytes()) == 77 + len(header.model_name) + 37 + len(header.avcc_name)
    assert SequenceHeader.from_bytes(raw_header() + raw_extension(), 1) == header


@pytest.mark.parametrize(
    "overrides",
    [
        dict(audio_coder=AudioCoder.RAW, motion_source=MotionSource.TRANSMITTED),  # a bundle, 1.0 coding
        dict(audio_coder=AudioCoder.RAW, motion_source=MotionSource.FROM_SPEECH),
        dict(audio_coder=AudioCoder.CONTEXT, motion_source=MotionSource.FROM_SPEECH),
        dict(audio_coder=AudioCoder.RAW, audio_codec=AudioCodecId.OPUS, audio_sample_rate=16000,
             audio_param=6000, audio_frame_samples=640, motion_source=MotionSource.FROM_SPEECH),
        dict(audio_coder=AudioCoder.RAW, audio_codec=AudioCodecId.NONE, audio_sample_rate=0, audio_param=0,
             audio_frame_samples=0),
        dict(avcc_name="x" * 64, avcc_sha256="0" * 64),
    ],
    ids=str,
)
def test_header_extension_variants_round_trip(make_avcc_header, overrides: dict) -> None:
    header = make_avcc_header(**overrides)
    assert header.min_version == (1, 1)
    assert SequenceHeader.from_bytes(header.to_bytes(), 1) == header


EXTENSION_ERRORS = [
    (dict(avcc_sha256=None), FormatError, "avcc_sha256"),
    (dict(avcc_name=None), FormatError, "avcc_name"),
    (dict(avcc_name=None, avcc_sha256=None), FormatError, "audio_coder"),
    (dict(avcc_name=None, avcc_sha256=None, audio_coder=AudioCoder.RAW), FormatError, "motion_source"),
    (dict(avcc_name=""), FormatError, "avcc_name"),
    (dict(avcc_name="a" * 65), LimitError, "avcc_name"),
    (dict(avcc_name="bad name"), FormatError, "avcc_name"),
    (dict(avcc_sha256="AB" * 32), FormatError, "avcc_sha256"),
    (dict(avcc_sha256=b"\x00" * 32), FormatError, "avcc_sha256"),
    (dict(audio_coder=2), FormatError, "audio_coder"),
    (dict(motion_source=3), FormatError, "motion_source"),
    (dict(avcc_flags=1), FormatError, "avcc_flags"),
    (dict(avcc_flags=65536), LimitError, "avcc_flags"),
    (dict(audio_codec=AudioCodecId.OPUS, audio_sample_rate=16000, audio_param=6000), FormatError, "audio_coder"),
    (dict(audio_param=1300), FormatError, "audio_coder"),
    (dict(audio_coder=AudioCoder.RAW, motion_source=MotionSource.FROM_SPEECH, audio_codec=AudioCodecId.NONE,
          audio_sample_rate=0, audio_param=0, audio_frame_samples=0), FormatError, "motion_source"),
]


@pytest.mark.parametrize("overrides,error,field", EXTENSION_ERRORS, ids=lambda v: str(v)[:50])
def test_header_extension_validation(make_avcc_header, overrides: dict, error: type, field: str) -> None:
    with pytest.raises(error, match=rf"SequenceHeader\.{field}\b"):
        make_avcc_header(**overrides)


def test_non_default_coding_needs_the_bundle_on_read_too() -> None:
    # an extension is only written with a bundle, so a read header always has one; its checks apply on read
    with pytest.raises(FormatError, match="audio_coder"):
        SequenceHeader.from_bytes(raw_header(audio_param=1300) + raw_extension(), 1)
    with pytest.raises(FormatError, match="avcc_name"):
        SequenceHeader.from_bytes(raw_header() + raw_extension(name=b""), 1)
    with pytest.raises(LimitError, match="avcc_name"):
        SequenceHeader.from_bytes(raw_header() + raw_extension(name=b"a" * 65), 1)
    with pytest.raises(FormatError, match="avcc_name: not ASCII"):
        SequenceHeader.from_bytes(raw_header() + raw_extension(name=b"x\xe9"), 1)
    with pytest.raises(FormatError, match="motion_source"):
        SequenceHeader.from_bytes(raw_header() + raw_extension(motion_source=3), 1)


def test_header_extension_reserved_flags_and_trailing_bytes_ignored(make_avcc_header) -> None:
    header = make_avcc_header()
    assert SequenceHeader.from_bytes(raw_header() + raw_extension(avcc_flags=0xFFFE), 1) == header
    # bit 0 is defined since 1.3 (DIFFUSION_LIPS: two more fields follow), the other 15 are reserved
    assert SequenceHeader.from_bytes(raw_header() + raw_extension() + b"\x09later minor", 1) == header


def test_truncated_extension_names_the_field() -> None:
    fixed = raw_header()
    ext = raw_extension()  # name "avcc-ctx_v1": 11 bytes
    cases = {1: "avcc_name", 5: "avcc_name", 12: "avcc_sha256", 43: "avcc_sha256", 44: "audio_coder",
             45: "motion_source", 46: "avcc_flags", 47: "avcc_flags"}
    assert len(ext) == 48
    for cut, field in cases.items():
        with pytest.raises(FormatError, match=rf"SequenceHeader\.{field}\b"):
            SequenceHeader.from_bytes(fixed + ext[:cut], 1)


# ---- the writer --------------------------------------------------------------------------


def test_golden_1_1_stream_bytes_and_parse() -> None:
    payloads = [
        KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"),
        AudioCtx(first_frame=0, num_frames=2, data=b"\x5a"),
        MotionPred(first_frame=1, num_frames=1, flags=MOTION_FLAG_INTRA, data=b"\xaa"),
        EndOfStream(frame_count=2, audio_frame_count=2, audio_samples=640),
    ]
    data = write_stream(golden_1_1_header(), payloads)
    assert data.hex() == GOLDEN_1_1_HEX
    parsed = parse_stream(data)
    assert parsed.version == (1, 1) and parsed.header == golden_1_1_header() and parsed.damages == []
    assert [u.type for u in parsed.units] == [UnitType.KEY_FRAME, UnitType.AUDIO_CTX, UnitType.MOTION_PRED,
                                              UnitType.END_OF_STREAM]
    assert [decode_payload(u, 1) for u in parsed.units] == payloads


def test_writer_chooses_the_oldest_version(make_header, make_avcc_header) -> None:
    plain = write_stream(make_header(), sample_payloads())
    assert plain[:6] == b"AVFC\x01\x00"
    assert parse_stream(plain).version == (1, 0)
    # a bundle alone (1.0 coding of audio and motion) still needs 1.1: a 1.0 reader could not see it
    bundle = make_avcc_header(audio_coder=AudioCoder.RAW, motion_source=MotionSource.TRANSMITTED)
    data = write_stream(bundle, sample_payloads())
    assert data[:6] == b"AVFC\x01\x01"
    assert parse_stream(data).header == bundle


@pytest.mark.parametrize(
    "coding,allowed,refused",
    [
        ((AudioCoder.RAW, MotionSource.TRANSMITTED), {"AUDIO", "MOTION"}, {"AUDIO_CTX", "MOTION_PRED"}),
        ((AudioCoder.CONTEXT, MotionSource.PREDICTED), {"AUDIO_CTX", "MOTION_PRED"}, {"AUDIO", "MOTION"}),
        ((AudioCoder.CONTEXT, MotionSource.FROM_SPEECH), {"AUDIO_CTX"}, {"AUDIO", "MOTION", "MOTION_PRED"}),
        ((AudioCoder.RAW, MotionSource.FROM_SPEECH), {"AUDIO"}, {"AUDIO_CTX", "MOTION", "MOTION_PRED"}),
        ((AudioCoder.RAW, MotionSource.PREDICTED), {"AUDIO", "MOTION_PRED"}, {"AUDIO_CTX", "MOTION"}),
        (None, {"AUDIO", "MOTION"}, {"AUDIO_CTX", "MOTION_PRED"}),  # a 1.0 header
    ],
    ids=str,
)
def test_writer_refuses_units_the_header_does_not_announce(make_header, make_avcc_header, coding, allowed: set,
                                                           refused: set) -> None:
    if coding is None:
        header = make_header()
    else:
        header = make_avcc_header(audio_coder=coding[0], motion_source=coding[1])
    samples = {
        "AUDIO": Audio(first_frame=0, num_frames=1, data=b"a"),
        "AUDIO_CTX": AudioCtx(first_frame=0, num_frames=1, data=b"c"),
        "MOTION": Motion(first_frame=0, num_frames=1, data=b"m"),
        "MOTION_PRED": MotionPred(first_frame=0, num_frames=1, data=b"p"),
    }
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    writer.write_header(header)
    written = fp.tell()
    for name in sorted(refused):
        with pytest.raises(FormatError, match=name):
            writer.write(samples[name])
        with pytest.raises(FormatError, match=name):
            writer.write_unit(UnitType[name], samples[name].to_bytes())
    assert fp.tell() == written == writer.bytes_written  # nothing was written
    for name in sorted(allowed):
        writer.write(samples[name])
    writer.write(KeyFrame(frame_index=0, quality=1, data=b"k"))
    writer.write(SideInfo(info_id=0, counter=0, kp_precision=6, kp_count=10, kp_dim=2, applies_from_frame=0))
    writer.write(EndOfStream(frame_count=1))
    parsed = parse_stream(fp.getvalue())
    assert {u.type.name for u in parsed.units} == allowed | {"KEY_FRAME", "SIDE_INFO", "END_OF_STREAM"}


# ---- reading 1.1 streams -----------------------------------------------------------------


def test_1_1_stream_parses(stream_bytes_v1_1: bytes, make_avcc_header) -> None:
    parsed = parse_stream(stream_bytes_v1_1)
    assert parsed.version == (1, 1) and parsed.header == make_avcc_header() and parsed.damages == []
    assert [decode_payload(u, 1) for u in parsed.units] == sample_payloads_v1_1()
    assert {UnitType.AUDIO_CTX, UnitType.MOTION_PRED} <= {u.type for u in parsed.units}
    assert all(u.known for u in parsed.units)


def test_1_1_stream_resyncs_onto_new_units(stream_bytes_v1_1: bytes) -> None:
    units = parse_stream(stream_bytes_v1_1).units
    for kind in (UnitType.AUDIO_CTX, UnitType.MOTION_PRED):
        k = next(i for i, u in enumerate(units) if u.type == kind and i > 0)
        victim = units[k - 1]
        data = bytearray(stream_bytes_v1_1)
        data[victim.offset + victim.size - 1] ^= 0x01  # its CRC: the resync must find the next unit
        for chunk in (None, 1, 5):
            parser = StreamParser()
            if chunk is None:
                events = parser.feed(bytes(data))
            else:
                events = [e for i in range(0, len(data), chunk) for e in parser.feed(bytes(data[i : i + chunk]))]
            events += parser.close()
            damages = [e for e in events if isinstance(e, Damage)]
            assert [(d.offset, d.length) for d in damages] == [(victim.offset, victim.size)]
            after = [e for e in events if isinstance(e, Unit) and e.offset > victim.offset]
            assert after == units[k:]


def test_in_a_1_0_stream_types_06_and_07_stay_unknown(make_header) -> None:
    # a 1.0 stream has no AUDIO_CTX / MOTION_PRED: such type bytes are unknown, as for a 1.0 reader,
    # and, being unknown, are no resync candidates
    header_unit = encode_unit(UnitType.SEQUENCE_HEADER, make_header().to_bytes())
    ctx = encode_unit(0x06, AudioCtx(first_frame=0, num_frames=1, data=b"c").to_bytes())
    pred = encode_unit(0x07, MotionPred(first_frame=0, num_frames=1, data=b"p").to_bytes())
    eos = encode_unit(UnitType.END_OF_STREAM, EndOfStream(frame_count=1).to_bytes())
    parsed = parse_stream(encode_preamble(VERSION_1_0) + header_unit + ctx + pred + eos)
    assert [u.type for u in parsed.units] == [0x06, 0x07, UnitType.END_OF_STREAM]
    assert [type(u.type) for u in parsed.units[:2]] == [int, int]
    assert [decode_payload(u, 1) for u in parsed.units[:2]] == [None, None]
    damaged = bytearray(encode_preamble(VERSION_1_0) + header_unit + b"\x99" + ctx + pred + eos)
    parsed = parse_stream(bytes(damaged))
    assert [(d.offset, d.length) for d in parsed.damages] == [(6 + len(header_unit), 1 + len(ctx) + len(pred))]
    assert [u.type for u in parsed.units] == [UnitType.END_OF_STREAM]
    # in a 1.1 stream the same bytes are known units and are found again after the damage
    damaged[5] = 1
    parsed = parse_stream(bytes(damaged))
    assert [(d.offset, d.length) for d in parsed.damages] == [(6 + len(header_unit), 1)]
    assert [u.type for u in parsed.units] == [UnitType.AUDIO_CTX, UnitType.MOTION_PRED, UnitType.END_OF_STREAM]


def test_old_reader_simulation(stream_bytes_v1_1: bytes, make_avcc_header) -> None:
    """What a 1.0 reader sees in a 1.1 stream: the same framing, 1.0 header fields, unknown new units.

    A 1.0 reader accepts any minor, frames units identically, knows only the 1.0 types and reads
    only the 1.0 header fields. Telling our parser the stream is 1.0 (the preamble is outside every
    CRC) gives it exactly that type table.
    """
    header = make_avcc_header()
    old_view = bytearray(stream_bytes_v1_1)
    assert old_view[4:6] == b"\x01\x01"
    old_view[5] = 0
    events = StreamParser().feed(bytes(old_view))
    units = [e for e in events if isinstance(e, Unit)]
    assert len(units) == len(events) == 14  # header, 12 units, END_OF_STREAM: no damage
    new_view = StreamParser().feed(stream_bytes_v1_1)
    assert [(u.offset, u.payload) for u in units] == [(u.offset, u.payload) for u in new_view]
    # the 1.0 fields of the header are a prefix of its payload; a 1.0 reader ignores the rest
    plain = SequenceHeader(**HEADER_FIELDS)
    assert units[0].payload.startswith(plain.to_bytes())
    assert SequenceHeader.from_bytes(units[0].payload[: len(plain.to_bytes())], 1) == plain
    assert plain == header.model_copy(update=dict(avcc_name=None, avcc_sha256=None, audio_coder=AudioCoder.RAW,
                                                  motion_source=MotionSource.TRANSMITTED))
    # the new units come back as unknown types, which a 1.0 decoder skips (decode_payload -> None)
    new = [u for u in units[1:] if u.type in (0x06, 0x07)]
    assert new and all(type(u.type) is int and not u.known and decode_payload(u, 1) is None for u in new)
    kept = [decode_payload(u, 1) for u in units[1:] if u.known]
    assert kept == [p for p in sample_payloads_v1_1() if not isinstance(p, (AudioCtx, MotionPred))]
    assert {type(p) for p in kept} == {KeyFrame, SideInfo, EndOfStream}  # key frames held, no audio


def test_extension_presence_is_read_from_the_header_bytes(make_avcc_header) -> None:
    # a stream declaring 1.0 whose header carries the extension still reads its extension:
    # the header's bytes, not the preamble, say whether it is there
    body = encode_unit(UnitType.SEQUENCE_HEADER, make_avcc_header().to_bytes())
    assert parse_stream(encode_preamble(VERSION_1_0) + body).header == make_avcc_header()

