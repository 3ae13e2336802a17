"""Unit framing and the writer: varints, CRC, the golden stream, misuse."""

from __future__ import annotations

import io
import zlib

import pytest

from avfc.bitstream import (
    MAX_UNIT_PAYLOAD,
    MOTION_FLAG_INTRA,
    AudioCodecId,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    Motion,
    SequenceHeader,
    StreamWriter,
    Unit,
    UnitType,
    encode_unit,
    parse_stream,
)
from avfc.bitstream.units import encode_varint, read_length
from avfc.errors import FormatError, LimitError

# The golden stream, written by hand from the spec (docs/bitstream.md (part A)). The
# CRC-32 values were computed with zlib.crc32 over the hand-written type, length and
# payload bytes of each unit, not by the library.
GOLDEN_HEX = "".join(
    [
        "41564643 01 00",  # magic "AVFC", version 1.0
        "01 4e",  # SEQUENCE_HEADER, 78-byte payload
        "01 74" + "ab" * 32,  # model_name "t", weights_sha256
        "0100 0100 0019 0001 00000002",  # 256x256, 25/1 fps, 2 frames
        "0280 01e0 00c0 0070 0100 0100",  # 640x480 source, crop 192,112 256x256
        "01 01 00001f40 000002bc 0140",  # AV1; Codec2 8000 Hz, mode 700, 320 samples per frame
        "0a 02 06 01 00 02 0000",  # 10 keypoints x 2, 6 fractional bits, laplace-v1, low delay, 2 refs, flags
        "8c1c5806",
        "02 07 00000000 28 1234",  # KEY_FRAME: frame 0, QP 40, data 12 34
        "ad24a60f",
        "03 08 00000001 0001 01 aa",  # MOTION: frame 1, 1 frame, intra, data aa
        "a0df495d",
        "0f 0c 00000002 00000002 00000280",  # END_OF_STREAM: 2 frames, 2 audio frames, 640 samples
        "962dee8e",
    ]
).replace(" ", "")


def golden_header() -> SequenceHeader:
    return SequenceHeader(
        model_name="t", weights_sha256="ab" * 32, width=256, height=256, fps_num=25, fps_den=1, frame_count=2,
        source_width=640, source_height=480, crop_x=192, crop_y=112, crop_w=256, crop_h=256,
        key_codec=KeyCodec.AV1, audio_codec=AudioCodecId.CODEC2, audio_sample_rate=8000, audio_param=700,
        audio_frame_samples=320, kp_count=10, kp_dim=2, kp_precision=6, max_refs=2,
    )


def test_golden_stream_bytes() -> None:
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    sizes = [
        writer.write_header(golden_header()),
        writer.write(KeyFrame(frame_index=0, quality=40, data=b"\x12\x34")),
        writer.write(Motion(first_frame=1, num_frames=1, flags=MOTION_FLAG_INTRA, data=b"\xaa")),
        writer.write(EndOfStream(frame_count=2, audio_frame_count=2, audio_samples=640)),
    ]
    assert fp.getvalue().hex() == GOLDEN_HEX
    assert sizes == [6 + 2 + 78 + 4, 13, 14, 18]
    assert writer.bytes_written == len(bytes.fromhex(GOLDEN_HEX))


def test_golden_stream_parses() -> None:
    parsed = parse_stream(bytes.fromhex(GOLDEN_HEX))
    assert parsed.version == (1, 0)
    assert parsed.header == golden_header()
    assert parsed.damages == []
    assert [(u.type, u.offset, u.size) for u in parsed.units] == [
        (UnitType.KEY_FRAME, 90, 13),
        (UnitType.MOTION, 103, 14),
        (UnitType.END_OF_STREAM, 117, 18),
    ]


def test_crc_is_standard_crc32() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    unit = encode_unit(0x42, b"")
    assert unit[:2] == b"\x42\x00" and unit[2:] == zlib.crc32(b"\x42\x00").to_bytes(4, "big")


@pytest.mark.parametrize(
    "value,encoded",
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16383, "ff7f"), (16384, "808001"),
     (2**21 - 1, "ffff7f"), (2**21, "80808001"), (MAX_UNIT_PAYLOAD, "80808008")],
)
def test_varint_encoding(value: int, encoded: str) -> None:
    data = bytes.fromhex(encoded)
    assert encode_varint(value) == data
    assert read_length(data, 0, len(data), MAX_UNIT_PAYLOAD) == (len(data), value)


@pytest.mark.parametrize(
    "encoded,max_payload,expected",
    [
        ("8000", MAX_UNIT_PAYLOAD, (-1, 0)),  # not minimal
        ("ff8000", MAX_UNIT_PAYLOAD, (-1, 0)),  # not minimal
        ("8180808000", MAX_UNIT_PAYLOAD, (-1, 0)),  # five bytes
        ("81808008", MAX_UNIT_PAYLOAD, (-1, 0)),  # MAX_UNIT_PAYLOAD + 1
        ("ff7f", 1000, (-1, 0)),  # above a lowered bound
        ("ff", MAX_UNIT_PAYLOAD, (0, 0)),  # ends inside the varint
        ("", MAX_UNIT_PAYLOAD, (0, 0)),
    ],
)
def test_varint_rejections(encoded: str, max_payload: int, expected: tuple) -> None:
    data = bytes.fromhex(encoded)
    assert read_length(data, 0, len(data), max_payload) == expected


def test_encode_unit_bounds() -> None:
    assert len(encode_unit(UnitType.AUDIO, bytes(MAX_UNIT_PAYLOAD))) == 1 + 4 + MAX_UNIT_PAYLOAD + 4
    with pytest.raises(LimitError):
        encode_unit(UnitType.AUDIO, bytes(MAX_UNIT_PAYLOAD + 1))
    for bad_type in (-1, 256, True, "3"):
        with pytest.raises(FormatError):
            encode_unit(bad_type, b"")  # type: ignore[arg-type]
    with pytest.raises(FormatError):
        encode_unit(3, "text")  # type: ignore[arg-type]
    with pytest.raises(LimitError):
        encode_varint(MAX_UNIT_PAYLOAD + 1)


def test_unit_size_and_known() -> None:
    assert Unit(UnitType.MOTION, bytes(200), 6).size == 1 + 2 + 200 + 4
    assert Unit(0x42, b"", 6).known is False and Unit(UnitType.AUDIO, b"", 6).known is True


def test_writer_misuse() -> None:
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    with pytest.raises(FormatError, match="before the sequence header"):
        writer.write(KeyFrame(frame_index=0, quality=0, data=b"x"))
    writer.write(golden_header())  # write() routes the header to write_header
    with pytest.raises(FormatError, match="exactly one"):
        writer.write_header(golden_header())
    with pytest.raises(FormatError, match="write_header"):
        writer.write_unit(UnitType.SEQUENCE_HEADER, golden_header().to_bytes())
    with pytest.raises(FormatError):
        writer.write_unit(0x42, b"")  # type: ignore[arg-type]
    with pytest.raises(FormatError):
        writer.write(b"raw")  # type: ignore[arg-type]
    with pytest.raises(FormatError):
        writer.write_header(KeyFrame(frame_index=0, quality=0, data=b"x"))  # type: ignore[arg-type]
    writer.write_unit(UnitType.END_OF_STREAM, EndOfStream(frame_count=0).to_bytes())
    with pytest.raises(FormatError, match="after END_OF_STREAM"):
        writer.write(Motion(first_frame=0, num_frames=1, data=b""))
    parsed = parse_stream(fp.getvalue())
    assert [u.type for u in parsed.units] == [UnitType.END_OF_STREAM]


def test_writer_streams_without_seeking() -> None:
    class AppendOnly:
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def write(self, data: bytes) -> int:
            self.chunks.append(data)
            return len(data)

    sink = AppendOnly()
    writer = StreamWriter(sink)  # type: ignore[arg-type]
    writer.write_header(golden_header())
    writer.write(KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"))
    assert len(sink.chunks) == 2
    assert b"".join(sink.chunks).hex() == GOLDEN_HEX[: 2 * (90 + 13)]
