"""Format 1.2: the SPARSE_MOTION header flag and the MOTION_SPARSE unit (docs/bitstream.md A.8.3)."""

from __future__ import annotations

import io

from avfc.bitstream import (
    HEADER_FLAG_SPARSE_MOTION,
    MOTION_FLAG_INTRA,
    AudioCodecId,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    MotionSparse,
    SequenceHeader,
    StreamParser,
    StreamWriter,
    Unit,
    UnitType,
    decode_payload,
    parse_stream,
)

# The 1.2 example stream of docs/bitstream.md (part A, section 8.3), written by hand from the
# spec; CRC-32 values computed with zlib.crc32 over the hand-written bytes, not by the library.
GOLDEN_1_2_HEX = "".join(
    [
        "41564643 01 02",  # magic, version 1.2
        "01 4e",  # SEQUENCE_HEADER, 78-byte payload
        "01 74" + "ab" * 32,  # model_name "t", weights_sha256
        "0100 0100 0019 0001 00000002",  # 256x256, 25/1 fps, 2 frames
        "0280 01e0 00c0 0070 0100 0100",  # 640x480 source, crop 192,112 256x256
        "01 01 00001f40 000002bc 0140",  # AV1; Codec2 8000 Hz, mode 700, 320 samples per frame
        "0a 02 06 01 00 02 0001",  # keypoints, coder, low delay, 2 refs, flags: SPARSE_MOTION
        "fb1b6890",
        "02 07 00000000 28 1234",  # KEY_FRAME: frame 0, QP 40, data 12 34
        "ad24a60f",
        "08 09 00000001 0001 01 02 aa",  # MOTION_SPARSE: frame 1, 1 frame, intra, stride 2, data aa
        "5b468de0",
        "0f 0c 00000002 00000002 00000280",  # END_OF_STREAM
        "962dee8e",
    ]
).replace(" ", "")


def golden_1_2_header() -> SequenceHeader:
    return SequenceHeader(
        model_name="t", weights_sha256="ab" * 32, width=256, height=256, fps_num=25, fps_den=1, frame_count=2,
        source_width=640, source_height=480, crop_x=192, crop_y=112, crop_w=256, crop_h=256,
        key_codec=KeyCodec.AV1, audio_codec=AudioCodecId.CODEC2, audio_sample_rate=8000, audio_param=700,
        audio_frame_samples=320, kp_count=10, kp_dim=2, kp_precision=6, max_refs=2,
        flags=HEADER_FLAG_SPARSE_MOTION,
    )


def test_golden_1_2_stream_bytes_and_parse() -> None:
    payloads = [
        KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"),
        MotionSparse(first_frame=1, num_frames=1, flags=MOTION_FLAG_INTRA, stride=2, data=b"\xaa"),
        EndOfStream(frame_count=2, audio_frame_count=2, audio_samples=640),
    ]
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    writer.write_header(golden_1_2_header())
    for p in payloads:
        writer.write(p)
    data = fp.getvalue()
    assert data.hex() == GOLDEN_1_2_HEX
    parsed = parse_stream(data)
    assert parsed.version == (1, 2) and parsed.header == golden_1_2_header() and parsed.damages == []
    assert [u.type for u in parsed.units] == [UnitType.KEY_FRAME, UnitType.MOTION_SPARSE, UnitType.END_OF_STREAM]
    assert [decode_payload(u, 1) for u in parsed.units] == payloads


def test_a_1_1_labelled_stream_sees_type_08_as_unknown() -> None:
    data = bytearray(bytes.fromhex(GOLDEN_1_2_HEX))
    data[5] = 1
    events = StreamParser().feed(bytes(data))
    types = [e.type for e in events if isinstance(e, Unit)]
    assert types[1:] == [UnitType.KEY_FRAME, 0x08, UnitType.END_OF_STREAM]
    unknown = [e for e in events if isinstance(e, Unit) and e.type == 0x08][0]
    assert not unknown.known and decode_payload(unknown, 1) is None
