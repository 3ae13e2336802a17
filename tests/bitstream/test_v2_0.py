"""Format 2.0: the compact layout of every 1.x feature (CRC-16 units, varint fields, 8-byte hash prefixes)."""

from __future__ import annotations

import binascii
import io
from typing import Any

import pytest

from avfc import bitstream as bs
from avfc.bitstream import (
    AVCC_FLAG_DIFFUSION_LIPS,
    HEADER2_FLAG_AVCC,
    HEADER2_FLAG_CROP,
    HEADER_FLAG_SPARSE_MOTION,
    MOTION_FLAG_INTRA,
    VERSION_2_0,
    Audio,
    AudioCodecId,
    AudioCtx,
    EndOfStream,
    KeyFrame,
    Motion,
    MotionPred,
    MotionSource,
    MotionSparse,
    SequenceHeader,
    SideInfo,
    StreamParser,
    StreamWriter,
    Unit,
    UnitType,
    encode_unit,
    parse_stream,
    sha256_names,
)
from avfc.bitstream.units import encode_preamble
from avfc.errors import FormatError, LimitError, UnsupportedVersionError

from .conftest import AVCC_FIELDS, HEADER_FIELDS, sample_payloads


def _round_trip(payload: Any) -> Any:
    return type(payload).from_bytes(payload.to_bytes(2), 2)


def _prefixed(header: SequenceHeader) -> SequenceHeader:
    """What a 2.0 reader gets back: the same header with the digests cut to their 8-byte prefixes."""
    update = {"weights_sha256": header.weights_sha256[:16]}
    if header.avcc_sha256 is not None:
        update["avcc_sha256"] = header.avcc_sha256[:16]
    return header.model_copy(update=update)


# ---------------------------------------------------------------------------- framing


def test_units_of_a_2_0_stream_end_with_a_crc_16() -> None:
    unit = encode_unit(UnitType.MOTION, b"123456789", 2)
    assert unit[:2] == bytes((3, 9)) and unit[2:-2] == b"123456789"
    assert int.from_bytes(unit[-2:], "big") == binascii.crc_hqx(unit[:-2], 0xFFFF)
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1  # CRC-16/CCITT-FALSE check value
    assert len(encode_unit(UnitType.MOTION, b"", 2)) == 4 and len(encode_unit(UnitType.MOTION, b"", 1)) == 6
    with pytest.raises(FormatError):
        encode_unit(UnitType.MOTION, b"", 3)


def test_a_2_0_stream_is_read_and_a_damaged_unit_skipped(make_header) -> None:
    fp = io.BytesIO()
    w = StreamWriter(fp, 2)
    w.write_header(make_header())
    payloads = sample_payloads()
    for p in payloads:
        w.write(p)
    data = fp.getvalue()
    assert data[:6] == b"AVFC\x02\x00"
    parsed = parse_stream(data)
    assert parsed.version == VERSION_2_0 and not parsed.damages
    assert parsed.header == _prefixed(make_header())
    assert [bs.decode_payload(u, 2) for u in parsed.units] == payloads
    assert all(u.crc_size == 2 for u in parsed.units)
    assert sum(u.size for u in parsed.units) + 6 + parsed.units[0].offset - 6 == len(data)
    # flip a byte inside the third unit: it alone is lost
    third = parsed.units[2]
    damaged = bytearray(data)
    damaged[third.offset + 3] ^= 0x20
    again = parse_stream(bytes(damaged))
    assert len(again.damages) == 1 and again.damages[0].offset == third.offset
    assert [u.payload for u in again.units] == [u.payload for u in parsed.units if u is not third]


def test_chunked_feeding_of_a_2_0_stream_gives_the_same_events(make_header) -> None:
    fp = io.BytesIO()
    w = StreamWriter(fp, 2)
    w.write_header(make_header())
    for p in sample_payloads(seed=3):
        w.write(p)
    data = fp.getvalue()[:-3]  # truncated inside the last unit
    whole = StreamParser()
    events = whole.feed(data) + whole.close()
    byte_by_byte = StreamParser()
    events2 = [e for i in range(len(data)) for e in byte_by_byte.feed(data[i:i + 1])] + byte_by_byte.close()
    assert events == events2 and isinstance(events[-1], bs.Damage)


def test_major_3_is_refused_and_the_writer_knows_only_1_and_2() -> None:
    with pytest.raises(UnsupportedVersionError, match="1.x and 2.x"):
        StreamParser().feed(b"AVFC\x03\x00")
    with pytest.raises(FormatError):
        StreamWriter(io.BytesIO(), 3)


# ---------------------------------------------------------------------------- the header


def test_the_2_0_header_is_a_third_smaller_and_reads_back_with_hash_prefixes(make_header) -> None:
    for extra in ({}, AVCC_FIELDS, {**AVCC_FIELDS, "motion_source": MotionSource.FROM_SPEECH,
                                     "avcc_flags": AVCC_FLAG_DIFFUSION_LIPS, "diffusion_steps": 16,
                                     "diffusion_seed": 2**32 - 1}):
        h = make_header(**extra)
        raw = h.to_bytes(2)
        assert len(raw) <= 0.65 * len(h.to_bytes(1)), (len(raw), len(h.to_bytes(1)))
        back = SequenceHeader.from_bytes(raw, 2)
        assert back == _prefixed(h)
        assert back.weights_sha256 == h.weights_sha256[:16]
        assert SequenceHeader.from_bytes(back.to_bytes(2), 2) == back  # a prefix header writes itself again


def test_crop_fields_are_written_only_for_a_cropped_picture(make_header) -> None:
    whole = make_header(source_width=256, source_height=256, crop_x=0, crop_y=0)
    cropped = make_header()
    assert not whole.cropped and cropped.cropped
    assert len(cropped.to_bytes(2)) - len(whole.to_bytes(2)) == 2 + 2 + 2 + 1 + 2 + 2  # six varints
    flags_at = 1 + len(whole.model_name) + 8 + 7  # name, prefix, 256, 256, 25, 1, 100 as varints
    assert whole.to_bytes(2)[flags_at] == 0 and cropped.to_bytes(2)[flags_at] == HEADER2_FLAG_CROP
    back = SequenceHeader.from_bytes(whole.to_bytes(2), 2)
    assert (back.source_width, back.source_height, back.crop_w, back.crop_h) == (256, 256, 256, 256)


def test_audio_fields_are_written_only_with_an_audio_codec(make_header) -> None:
    silent = make_header(audio_codec=AudioCodecId.NONE, audio_sample_rate=0, audio_param=0, audio_frame_samples=0)
    assert len(make_header().to_bytes(2)) - len(silent.to_bytes(2)) == 2 + 2 + 2  # 8000, 700, 320
    assert SequenceHeader.from_bytes(silent.to_bytes(2), 2) == _prefixed(silent)


def test_header_flags_of_2_0(make_header) -> None:
    h = make_header(flags=HEADER_FLAG_SPARSE_MOTION, **{**AVCC_FIELDS, "motion_source": MotionSource.TRANSMITTED})
    raw = bytearray(h.to_bytes(2))
    at = 1 + len(h.model_name) + 8 + 7
    assert raw[at] == HEADER_FLAG_SPARSE_MOTION | HEADER2_FLAG_CROP | HEADER2_FLAG_AVCC
    raw[at] |= 0x40  # a reserved bit: ignored
    back = SequenceHeader.from_bytes(bytes(raw), 2)
    assert back.flags == HEADER_FLAG_SPARSE_MOTION and back.avcc_name == h.avcc_name


def test_bad_2_0_headers_raise_naming_the_field(make_header) -> None:
    raw = make_header().to_bytes(2)
    for cut in (0, 5, 20, 25, len(raw) - 1):
        with pytest.raises(FormatError):
            SequenceHeader.from_bytes(raw[:cut], 2)
    at = 1 + len("mrdac-256_v1.0") + 8  # width, 256: 80 02
    with pytest.raises(FormatError, match="width: varint is not minimal"):
        SequenceHeader.from_bytes(raw[:at] + b"\x80\x82\x00" + raw[at + 2:], 2)
    with pytest.raises(FormatError, match="width: varint longer"):
        SequenceHeader.from_bytes(raw[:at] + b"\xff" * 6 + raw[at + 2:], 2)
    with pytest.raises(LimitError, match="width"):
        SequenceHeader.from_bytes(raw[:at] + b"\x80\x40" + raw[at + 2:], 2)  # 8192
    with pytest.raises(FormatError, match="holds the whole SHA-256"):
        SequenceHeader.from_bytes(raw, 2).to_bytes(1)
    with pytest.raises(FormatError):
        make_header().to_bytes(3)


def test_a_digest_names_a_file_by_its_whole_sha_or_its_8_byte_prefix() -> None:
    full = "0123456789abcdef" * 4
    assert sha256_names(full, full) and sha256_names(full, full[:16])
    assert not sha256_names(full, full[:15]) and not sha256_names(full, full[:20])
    assert not sha256_names(full, "f" * 16)
    with pytest.raises(FormatError):
        SequenceHeader(**{**HEADER_FIELDS, "weights_sha256": full[:20]})


# ---------------------------------------------------------------------------- the other payloads


@pytest.mark.parametrize("payload", [
    KeyFrame(frame_index=9_999_999, quality=63, data=b"\x01\x02"),
    Motion(first_frame=250, num_frames=25, flags=MOTION_FLAG_INTRA, data=b"xyz"),
    MotionPred(first_frame=0, num_frames=1024, data=b""),
    MotionSparse(first_frame=75, num_frames=25, stride=3, data=b"abc"),
    Audio(first_frame=2**32 - 26, num_frames=25, data=b"\x00" * 7),
    AudioCtx(first_frame=100, num_frames=25, data=b"q"),
    SideInfo(info_id=1, counter=2, kp_precision=5, kp_count=10, kp_dim=2, applies_from_frame=7, refs=(0, 50)),
    EndOfStream(frame_count=100, audio_frame_count=100, audio_samples=64000),
], ids=lambda p: type(p).__name__)
def test_every_payload_round_trips_in_2_0_and_is_no_longer(payload) -> None:
    assert _round_trip(payload) == payload
    assert len(payload.to_bytes(2)) <= len(payload.to_bytes(1))


def test_small_packets_lose_most_of_their_fixed_fields() -> None:
    motion = Motion(first_frame=75, num_frames=25, data=b"")
    audio = Audio(first_frame=100, num_frames=25, data=b"")
    eos = EndOfStream(frame_count=100, audio_frame_count=100, audio_samples=64000)
    assert [len(p.to_bytes(2)) for p in (motion, audio, eos)] == [3, 2, 5]
    assert [len(p.to_bytes(1)) for p in (motion, audio, eos)] == [7, 6, 12]


def test_truncated_or_bad_2_0_payloads_raise() -> None:
    raw = Motion(first_frame=300, num_frames=25, data=b"").to_bytes(2)  # ac 02 19 00
    with pytest.raises(FormatError, match="first_frame"):
        Motion.from_bytes(raw[:1], 2)
    with pytest.raises(FormatError, match="flags"):
        Motion.from_bytes(raw[:3], 2)
    with pytest.raises(LimitError, match="num_frames"):
        Motion.from_bytes(raw[:2] + b"\x81\x08" + raw[3:], 2)  # 1025
    with pytest.raises(LimitError, match="frame_index"):
        KeyFrame.from_bytes(b"\x80\xad\xe2\x04\x00\x01", 2)  # 10 000 000
    # what a 1.x reader would make of 2.0 bytes: not the same packet
    with pytest.raises(FormatError):
        Motion.from_bytes(raw, 1)


def test_decode_payload_reads_the_layout_of_the_streams_major() -> None:
    p = Audio(first_frame=5, num_frames=3, data=b"abc")
    assert bs.decode_payload(Unit(UnitType.AUDIO, p.to_bytes(2), 0, 2), 2) == p
    assert bs.decode_payload(Unit(UnitType.AUDIO, p.to_bytes(1), 0), 1) == p


def test_readers_have_no_default_major() -> None:
    """A 2.0 payload read as 1.x is garbage (a key frame of frame 0 read as frame 2296326, issue 19), so every
    payload reader takes the stream's major version explicitly: leaving it out is a TypeError."""
    key = KeyFrame(frame_index=0, quality=40, data=b"av1 bytes")
    unit = Unit(UnitType.KEY_FRAME, key.to_bytes(2), 0, 2)
    with pytest.raises(TypeError):
        bs.decode_payload(unit)  # type: ignore[call-arg]
    for payload in [key, *sample_payloads()]:
        with pytest.raises(TypeError):
            type(payload).from_bytes(payload.to_bytes(2))  # type: ignore[call-arg]
    with pytest.raises(FormatError, match="major version"):
        bs.decode_payload(unit, True)  # a bool is not a major version
    assert bs.decode_payload(unit, 2) == key


def test_a_1_x_preamble_default_and_2_0_preamble() -> None:
    assert encode_preamble() == b"AVFC\x01\x03" and encode_preamble(VERSION_2_0) == b"AVFC\x02\x00"
    assert bs.unit_types_of(VERSION_2_0) == bs.unit_types_of((1, 3))


# The example of docs/bitstream.md A.13.5, written by hand from the spec: the 1.0 example stream of
# A.8.1 in the 2.0 layout. The CRC-16 values were computed with binascii.crc_hqx(..., 0xFFFF) over the
# hand-written type, length and payload bytes, not by the library.
EXAMPLE_2_0_HEX = "".join([
    "41564643 02 00",  # magic "AVFC", version 2.0
    "01 2b",  # SEQUENCE_HEADER, 43-byte payload
    "01 74" + "ab" * 8,  # model_name "t", the first 8 bytes of weights_sha256
    "8002 8002 19 01 02",  # 256x256, 25/1 fps, 2 frames (varints)
    "02",  # flags: CROP
    "8005 e003 c001 70 8002 8002",  # 640x480 source, crop 192,112 256x256
    "01 01 c03e bc05 c002",  # AV1; Codec2 8000 Hz, mode 700, 320 samples per frame
    "0a 02 06 01 00 02",  # 10 keypoints x 2, 6 fractional bits, laplace-v1, low delay, 2 refs
    "3f9c",
    "02 04 00 28 1234", "30f7",  # KEY_FRAME: frame 0, QP 40, data 12 34
    "03 04 01 01 01 aa", "2fe3",  # MOTION: frame 1, 1 frame, intra, data aa
    "0f 04 02 02 8005", "8a20",  # END_OF_STREAM: 2 frames, 2 audio frames, 640 samples
]).replace(" ", "")


def test_the_example_stream_of_the_spec_byte_for_byte() -> None:
    from .test_units import golden_header

    fp = io.BytesIO()
    w = StreamWriter(fp, 2)
    w.write_header(golden_header())
    w.write(KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"))
    w.write(Motion(first_frame=1, num_frames=1, flags=MOTION_FLAG_INTRA, data=b"\xaa"))
    w.write(EndOfStream(frame_count=2, audio_frame_count=2, audio_samples=640))
    assert fp.getvalue().hex() == EXAMPLE_2_0_HEX
    assert len(fp.getvalue()) == 77  # the 1.0 stream: 135
    parsed = parse_stream(bytes.fromhex(EXAMPLE_2_0_HEX))
    assert parsed.header == _prefixed(golden_header()) and not parsed.damages
