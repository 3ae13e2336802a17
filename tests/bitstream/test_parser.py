"""The incremental reader: streaming, damage, resynchronisation, truncation, versions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from avfc.bitstream import (
    Damage,
    DamageReason,
    EndOfStream,
    Motion,
    StreamParser,
    StreamWriter,
    Unit,
    UnitType,
    decode_payload,
    encode_unit,
    parse_stream,
    read_file,
)
from avfc.bitstream.units import encode_preamble
from avfc.errors import AvfcError, ConfigError, FormatError, MediaError, TruncatedError, UnsupportedVersionError


def all_events(data: bytes, chunk: int | None = None, **kwargs) -> list:
    parser = StreamParser(**kwargs)
    events: list = []
    if chunk is None:
        events += parser.feed(data)
    else:
        for i in range(0, len(data), chunk):
            events += parser.feed(data[i : i + chunk])
    return events + parser.close()


def units_of(events: list) -> list[Unit]:
    return [e for e in events if isinstance(e, Unit)]


def test_whole_stream_parses(stream_bytes: bytes) -> None:
    parsed = parse_stream(stream_bytes)
    assert parsed.damages == []
    assert parsed.header.model_name == "mrdac-256_v1.0"
    assert len(parsed.units) == 13
    assert parsed.units[-1].type == UnitType.END_OF_STREAM
    offset = 6 + 1 + 1 + len(parsed.header.to_bytes()) + 4
    for unit in parsed.units:  # units tile the file in order
        assert unit.offset == offset
        assert stream_bytes[offset : offset + unit.size] == encode_unit(unit.type, unit.payload)
        offset += unit.size
    assert offset == len(stream_bytes)
    assert all(decode_payload(u, 1) is not None for u in parsed.units)


def test_one_byte_at_a_time_gives_the_same_units(stream_bytes: bytes) -> None:
    parser = StreamParser()
    incremental: list = []
    for i in range(len(stream_bytes)):
        got = parser.feed(stream_bytes[i : i + 1])
        for event in got:  # a unit is reported as soon as its last byte arrives
            assert isinstance(event, Unit) and event.offset + event.size == i + 1
        incremental += got
    assert parser.close() == []
    assert incremental == all_events(stream_bytes)
    assert parser.version == (1, 0) and parser.bytes_fed == len(stream_bytes)


def test_flipped_byte_in_a_middle_unit(stream_bytes: bytes) -> None:
    reference = units_of(all_events(stream_bytes))
    victim = reference[6]
    for pos in range(victim.offset, victim.offset + victim.size):
        for bit in (0x01, 0x80):
            data = bytearray(stream_bytes)
            data[pos] ^= bit
            events = all_events(bytes(data))
            damages = [e for e in events if isinstance(e, Damage)]
            assert len(damages) == 1, (pos, bit, damages)
            assert (damages[0].offset, damages[0].length) == (victim.offset, victim.size)
            assert damages[0].reason in (DamageReason.CRC_MISMATCH, DamageReason.BAD_LENGTH)
            assert units_of(events) == [u for u in reference if u is not victim and u != victim]


@pytest.mark.parametrize("new_length", [b"\x00", b"\x7f", b"\xff\xff\x03", b"\x80\x00", b"\xff\xff\xff\xff"])
def test_corrupted_length_resyncs_to_the_following_units(stream_bytes: bytes, new_length: bytes) -> None:
    reference = units_of(all_events(stream_bytes))
    victim = reference[4]
    assert len(victim.payload) < 128  # one length byte in the original
    data = stream_bytes[: victim.offset + 1] + new_length + stream_bytes[victim.offset + 2 :]
    shift = len(new_length) - 1
    for chunk in (None, 1, 7):
        events = all_events(data, chunk)
        damages = [e for e in events if isinstance(e, Damage)]
        assert [(d.offset, d.length) for d in damages] == [(victim.offset, victim.size + shift)]
        assert damages[0].reason in (DamageReason.CRC_MISMATCH, DamageReason.BAD_LENGTH)
        after = [u.payload for u in units_of(events) if u.offset > victim.offset]
        assert after == [u.payload for u in reference[5:]]


def test_garbage_between_units_is_one_damage(stream_bytes: bytes) -> None:
    reference = units_of(all_events(stream_bytes))
    cut = reference[3].offset
    garbage = bytes(range(256)) * 8 + b"\x03\x05\x0f" * 50
    events = all_events(stream_bytes[:cut] + garbage + stream_bytes[cut:])
    assert [e for e in events if isinstance(e, Damage)] == [Damage(cut, len(garbage), DamageReason.CRC_MISMATCH)]
    assert [u.payload for u in units_of(events)] == [u.payload for u in reference]


def test_truncation_at_every_position(stream_bytes: bytes) -> None:
    reference = units_of(all_events(stream_bytes))  # the header unit first
    header_end = reference[1].offset
    for n in range(len(stream_bytes) + 1):
        try:
            events = all_events(stream_bytes[:n])
        except AvfcError as exc:
            assert n < 6 and isinstance(exc, TruncatedError)
            continue
        got = units_of(events)
        assert got == [u for u in reference if u.offset + u.size <= n]
        damages = [e for e in events if isinstance(e, Damage)]
        end = 6 if not got else got[-1].offset + got[-1].size
        if n == end:
            assert damages == []
        else:
            assert damages == [Damage(end, n - end, DamageReason.TRUNCATED)]
        if n >= header_end:
            assert parse_stream(stream_bytes[:n]).units == got[1:]


def test_truncated_tail_with_chunks_is_damage(stream_bytes: bytes) -> None:
    data = stream_bytes[:-3]
    for chunk in (None, 1, 5, 64):
        events = all_events(data, chunk)
        assert isinstance(events[-1], Damage) and events[-1].reason is DamageReason.TRUNCATED
        assert events[-1].offset + events[-1].length == len(data)


@pytest.mark.parametrize(
    "data,error,text",
    [
        (b"RIFF\x01\x00", FormatError, "not an .avfc file"),
        (b"AVFX", FormatError, "not an .avfc file"),
        (b"AVFC\x03\x00", UnsupportedVersionError, "3.0"),
        (b"AVFC\x00\x09", UnsupportedVersionError, "0.9"),
        (b"AVF", TruncatedError, "preamble"),
        (b"", TruncatedError, "preamble"),
    ],
)
def test_preamble_errors(data: bytes, error: type, text: str) -> None:
    with pytest.raises(error, match=text) as info:
        all_events(data)
    if error is UnsupportedVersionError:
        assert "1." in str(info.value)


def test_bad_magic_is_reported_early_and_sticks() -> None:
    parser = StreamParser()
    with pytest.raises(FormatError):
        parser.feed(b"X")
    with pytest.raises(FormatError):
        parser.feed(b"VFC\x01\x00")
    parser2 = StreamParser()
    assert parser2.feed(b"AVF") == []  # a valid prefix waits


def test_newer_minor_version_unknown_units_and_appended_fields(make_avcc_header) -> None:
    header = make_avcc_header()  # fields a later minor appends follow the 1.1 extension
    body = encode_unit(UnitType.SEQUENCE_HEADER, header.to_bytes() + b"\x07new fields")
    body += encode_unit(0x42, b"unknown unit") + encode_unit(UnitType.END_OF_STREAM, bytes(12) + b"\x01")
    parsed = parse_stream(encode_preamble((1, 7)) + body)
    assert parsed.version == (1, 7)
    assert parsed.header == header
    assert [u.type for u in parsed.units] == [0x42, UnitType.END_OF_STREAM]
    assert parsed.units[0].known is False and decode_payload(parsed.units[0], 1) is None
    assert decode_payload(parsed.units[1], 1) == EndOfStream(frame_count=0)


def test_missing_or_damaged_header(make_header, stream_bytes: bytes) -> None:
    with pytest.raises(FormatError, match="no intact sequence header"):
        parse_stream(encode_preamble())
    with pytest.raises(FormatError, match="no intact sequence header"):
        parse_stream(encode_preamble() + encode_unit(UnitType.END_OF_STREAM, bytes(12)))
    damaged = bytearray(stream_bytes)
    damaged[20] ^= 0x10  # inside the header payload
    with pytest.raises(FormatError, match="damage at offset 6"):
        parse_stream(bytes(damaged))
    invalid = encode_preamble() + encode_unit(UnitType.SEQUENCE_HEADER, bytes(77))  # empty name
    with pytest.raises(FormatError, match="model_name"):
        parse_stream(invalid)


def test_lowered_max_unit_payload(stream_bytes: bytes) -> None:
    big = encode_unit(UnitType.MOTION, Motion(first_frame=0, num_frames=1, data=bytes(2000)).to_bytes())
    cut = units_of(all_events(stream_bytes))[2].offset
    data = stream_bytes[:cut] + big + stream_bytes[cut:]
    events = all_events(data, max_unit_payload=1024)
    assert [e for e in events if isinstance(e, Damage)] == [Damage(cut, len(big), DamageReason.BAD_LENGTH)]
    assert len(units_of(events)) == len(units_of(all_events(stream_bytes)))
    for bad in (-1, 2**30, 1.5, True):
        with pytest.raises(ConfigError):
            StreamParser(max_unit_payload=bad)  # type: ignore[arg-type]


def test_closed_parser_and_bad_feed() -> None:
    parser = StreamParser()
    with pytest.raises(FormatError):
        parser.feed("AVFC")  # type: ignore[arg-type]
    parser.feed(encode_preamble())
    assert parser.close() == []
    with pytest.raises(AvfcError, match="closed"):
        parser.feed(b"")
    with pytest.raises(AvfcError, match="closed"):
        parser.close()


def test_read_file(tmp_path: Path, stream_bytes: bytes) -> None:
    path = tmp_path / "clip.avfc"
    path.write_bytes(stream_bytes)
    assert read_file(path) == parse_stream(stream_bytes)
    assert read_file(str(path)).header.width == 256
    with pytest.raises(MediaError, match="cannot read"):
        read_file(tmp_path / "missing.avfc")
    with pytest.raises(MediaError):
        read_file(tmp_path)  # a directory
    with pytest.raises(MediaError):
        read_file(3.5)  # type: ignore[arg-type]


def test_writer_output_is_readable_while_written(make_header) -> None:
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    parser = StreamParser()
    writer.write_header(make_header())
    seen = parser.feed(fp.getvalue())
    assert [u.type for u in seen] == [UnitType.SEQUENCE_HEADER]
    for frame in range(3):
        start = fp.tell()
        writer.write(Motion(first_frame=frame, num_frames=1, data=bytes([frame])))
        (unit,) = parser.feed(fp.getvalue()[start:])
        assert decode_payload(unit, 1) == Motion(first_frame=frame, num_frames=1, data=bytes([frame]))
