"""Format 1.3: the AVCC flag DIFFUSION_LIPS and its header fields (docs/bitstream.md A.5.1.1, A.8.4, A.12)."""

from __future__ import annotations

import io
import struct

import pytest

from avfc.bitstream import (
    AVCC_FLAG_DIFFUSION_LIPS,
    FORMAT_VERSION,
    MAX_DIFFUSION_STEPS,
    VERSION_1_3,
    AudioCodecId,
    AudioCoder,
    AudioCtx,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    MotionSource,
    SequenceHeader,
    StreamWriter,
    UnitType,
    decode_payload,
    parse_stream,
    unit_types_of,
)
from avfc.errors import FormatError, LimitError

from .conftest import AVCC_FIELDS, HEADER_FIELDS
from .test_payloads import raw_header
from .test_v1_1 import raw_extension

# The 1.3 example stream of docs/bitstream.md (part A, section 8.4), written by hand from the
# spec; CRC-32 values computed with zlib.crc32 over the hand-written bytes, not by the library.
GOLDEN_1_3_HEX = "".join(
    [
        "41564643 01 03",  # magic, version 1.3
        "01 79",  # SEQUENCE_HEADER, 121-byte payload
        "01 74" + "ab" * 32,  # model_name "t", weights_sha256
        "0100 0100 0019 0001 00000002",  # 256x256, 25/1 fps, 2 frames
        "0280 01e0 00c0 0070 0100 0100",  # 640x480 source, crop 192,112 256x256
        "01 01 00001f40 000002bc 0140",  # AV1; Codec2 8000 Hz, mode 700, 320 samples per frame
        "0a 02 06 01 00 02 0000",  # keypoints, coder, low delay, 2 refs, flags
        "01 63" + "cd" * 32,  # avcc_name "c", avcc_sha256
        "01 02 0001",  # audio_coder CONTEXT, motion_source FROM_SPEECH, avcc_flags DIFFUSION_LIPS
        "08 00003039",  # diffusion_steps 8, diffusion_seed 12345
        "e6c20198",
        "02 07 00000000 28 1234",  # KEY_FRAME: frame 0, QP 40, data 12 34
        "ad24a60f",
        "06 08 00000000 0002 00 5a",  # AUDIO_CTX: audio frames 0..1, flags 0, data 5a
        "dd76d6ad",
        "0f 0c 00000002 00000002 00000280",  # END_OF_STREAM
        "962dee8e",
    ]
).replace(" ", "")


def golden_1_3_header(**overrides) -> SequenceHeader:
    fields = dict(
        model_name="t", weights_sha256="ab" * 32, width=256, height=256, fps_num=25, fps_den=1, frame_count=2,
        source_width=640, source_height=480, crop_x=192, crop_y=112, crop_w=256, crop_h=256,
        key_codec=KeyCodec.AV1, audio_codec=AudioCodecId.CODEC2, audio_sample_rate=8000, audio_param=700,
        audio_frame_samples=320, kp_count=10, kp_dim=2, kp_precision=6, max_refs=2,
        avcc_name="c", avcc_sha256="cd" * 32, audio_coder=AudioCoder.CONTEXT, motion_source=MotionSource.FROM_SPEECH,
        avcc_flags=AVCC_FLAG_DIFFUSION_LIPS, diffusion_steps=8, diffusion_seed=12345,
    )
    fields.update(overrides)
    return SequenceHeader(**fields)


def test_versions() -> None:
    assert VERSION_1_3 == (1, 3) and FORMAT_VERSION == (2, 3)
    assert AVCC_FLAG_DIFFUSION_LIPS == 1 and MAX_DIFFUSION_STEPS == 64
    # 1.3 adds no unit type
    assert unit_types_of((1, 3)) == unit_types_of((1, 2)) == {int(t) for t in UnitType} - {0x09, 0x0A}


def test_golden_1_3_stream_bytes_and_parse() -> None:
    payloads = [
        KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"),
        AudioCtx(first_frame=0, num_frames=2, data=b"\x5a"),
        EndOfStream(frame_count=2, audio_frame_count=2, audio_samples=640),
    ]
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    writer.write_header(golden_1_3_header())
    for p in payloads:
        writer.write(p)
    data = fp.getvalue()
    assert data.hex() == GOLDEN_1_3_HEX and len(data) == 178
    parsed = parse_stream(data)
    assert parsed.version == (1, 3) and parsed.header == golden_1_3_header() and parsed.damages == []
    assert parsed.header.diffusion_lips and parsed.header.min_version == (1, 3)
    assert [decode_payload(u, 1) for u in parsed.units] == payloads


def test_without_the_flag_the_stream_stays_1_1() -> None:
    header = golden_1_3_header(avcc_flags=0, diffusion_steps=0, diffusion_seed=0)
    assert header.min_version == (1, 1) and not header.diffusion_lips
    assert len(header.to_bytes()) == 116  # no diffusion fields are written


@pytest.mark.parametrize("steps,seed", [(1, 0), (64, 0xFFFF_FFFF), (8, 7)])
def test_header_round_trip(steps: int, seed: int) -> None:
    header = golden_1_3_header(diffusion_steps=steps, diffusion_seed=seed)
    assert SequenceHeader.from_bytes(header.to_bytes(), 1) == header


HEADER_ERRORS = [
    (dict(motion_source=MotionSource.PREDICTED), FormatError, "avcc_flags"),
    (dict(motion_source=MotionSource.TRANSMITTED), FormatError, "avcc_flags"),
    (dict(diffusion_steps=0), FormatError, "diffusion_steps"),
    (dict(diffusion_steps=65), LimitError, "diffusion_steps"),
    (dict(diffusion_seed=1 << 32), LimitError, "diffusion_seed"),
    (dict(avcc_flags=0), FormatError, "diffusion_steps"),  # steps and seed without the flag
    (dict(avcc_flags=0, diffusion_steps=0), FormatError, "diffusion_steps"),  # a seed without the flag
    (dict(avcc_flags=2), FormatError, "avcc_flags"),  # a reserved bit
]


@pytest.mark.parametrize("overrides,error,field", HEADER_ERRORS, ids=lambda v: str(v)[:40])
def test_header_validation(overrides: dict, error: type, field: str) -> None:
    with pytest.raises(error, match=rf"SequenceHeader\.{field}\b"):
        golden_1_3_header(**overrides)


def _ext(avcc_flags: int, tail: bytes = b"") -> bytes:
    return raw_header() + raw_extension(motion_source=2, avcc_flags=avcc_flags) + tail


def test_reading_the_diffusion_fields() -> None:
    header = SequenceHeader.from_bytes(_ext(0x0001, struct.pack(">BI", 16, 99)), 1)
    assert header.diffusion_lips and (header.diffusion_steps, header.diffusion_seed) == (16, 99)
    assert header == SequenceHeader(**HEADER_FIELDS, **{**AVCC_FIELDS, "motion_source": MotionSource.FROM_SPEECH},
                                    avcc_flags=1, diffusion_steps=16, diffusion_seed=99)
    # reserved avcc bits are ignored, bytes after the known fields too (a later minor version)
    assert SequenceHeader.from_bytes(_ext(0xFFFF, struct.pack(">BI", 16, 99) + b"later"), 1) == header
    with pytest.raises(LimitError, match=r"SequenceHeader\.diffusion_steps"):
        SequenceHeader.from_bytes(_ext(0x0001, struct.pack(">BI", 65, 0)), 1)
    with pytest.raises(FormatError, match=r"SequenceHeader\.diffusion_steps"):
        SequenceHeader.from_bytes(_ext(0x0001, struct.pack(">BI", 0, 0)), 1)


def test_truncated_diffusion_fields_name_the_field() -> None:
    full = _ext(0x0001, struct.pack(">BI", 8, 12345))
    cases = {5: "diffusion_steps", 4: "diffusion_seed", 1: "diffusion_seed"}
    for cut, field in cases.items():
        with pytest.raises(FormatError, match=rf"SequenceHeader\.{field}\b"):
            SequenceHeader.from_bytes(full[:-cut], 1)


def test_what_a_1_2_reader_sees() -> None:
    """A 1.2 reader masks every avcc_flags bit and ignores the bytes after avcc_flags: it sees the
    FROM_SPEECH regressor stream of the same bundle (section A.12)."""
    data = bytearray(golden_1_3_header().to_bytes())
    flags_at = len(data) - 5 - 2
    assert data[flags_at:flags_at + 2] == b"\x00\x01"
    data[flags_at + 1] = 0  # what masking the reserved bit gives a 1.2 reader
    seen = SequenceHeader.from_bytes(bytes(data), 1)
    assert seen == golden_1_3_header(avcc_flags=0, diffusion_steps=0, diffusion_seed=0)
