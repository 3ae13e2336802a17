"""Format 2.1: the REFRESH unit (09) and reading a stream from any byte (join mode)."""

from __future__ import annotations

import io
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avfc import bitstream as bs
from avfc.bitstream import (
    MAX_REFRESH_PAYLOAD,
    MOTION_FLAG_INTRA,
    VERSION_2_0,
    VERSION_2_1,
    Damage,
    DamageReason,
    EndOfStream,
    KeyFrame,
    Motion,
    Refresh,
    StreamParser,
    StreamWriter,
    Unit,
    UnitType,
    encode_unit,
    parse_stream,
    unit_types_of,
)
from avfc.bitstream.units import encode_preamble
from avfc.errors import FormatError, LimitError, UnsupportedVersionError

from .conftest import HEADER_FIELDS, sample_payloads

_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def live_header() -> bs.SequenceHeader:
    """The header of the 2.0 example (A.13.5) as a live stream: frame_count 0."""
    from .test_units import golden_header

    return golden_header().model_copy(update={"frame_count": 0})


# The example of docs/bitstream.md A.14.6: the 2.0 example as a live stream of 4 frames with a REFRESH at
# frame 2 (written by hand from the spec).
HEADER_HEX = ("01 74 ab ab ab ab ab ab ab ab 80 02 80 02 19 01 00 02 80 05 e0 03 c0 01 70 80 02 80 02"
              " 01 01 c0 3e bc 05 c0 02 0a 02 06 01 00 02")
EXAMPLE_2_1_HEX = " ".join([
    "41 56 46 43 02 01",  # preamble, version 2.1
    "01 2b", HEADER_HEX, "15 50",  # SEQUENCE_HEADER, 43 bytes
    "02 04 00 28 12 34 30 f7",  # KEY_FRAME: frame 0, QP 40, data 12 34
    "03 04 00 02 01 aa 00 07",  # MOTION: frames 0-1, INTRA, data aa
    "09 32 41 56 46 43 02 01 02", HEADER_HEX, "af af",  # REFRESH: 50 bytes: magic, 2.1, frame 2, the header
    "02 03 02 28 56 15 4f",  # KEY_FRAME: frame 2, QP 40, data 56
    "03 04 02 02 01 bb ef 7f",  # MOTION: frames 2-3, INTRA, data bb
    "0f 04 04 04 80 0a ee f6",  # END_OF_STREAM: 4 frames, 4 audio frames, 1280 samples
]).replace(" ", "")


def example_stream() -> bytes:
    fp = io.BytesIO()
    w = StreamWriter(fp, 2, refresh=True)
    w.write_header(live_header())
    w.write(KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"))
    w.write(Motion(first_frame=0, num_frames=2, flags=MOTION_FLAG_INTRA, data=b"\xaa"))
    assert w.write_refresh(2) == 54
    w.write(KeyFrame(frame_index=2, quality=40, data=b"\x56"))
    w.write(Motion(first_frame=2, num_frames=2, flags=MOTION_FLAG_INTRA, data=b"\xbb"))
    w.write(EndOfStream(frame_count=4, audio_frame_count=4, audio_samples=1280))
    return fp.getvalue()


def test_the_example_stream_of_the_spec_byte_for_byte() -> None:
    data = example_stream()
    assert len(data) == 146 and data.hex() == EXAMPLE_2_1_HEX
    parsed = parse_stream(data)
    assert parsed.version == VERSION_2_1 and not parsed.damages and parsed.first_frame == 0
    refresh = bs.decode_payload(parsed.units[2], 2)
    assert isinstance(refresh, Refresh) and refresh.frame_index == 2 and refresh.version == (2, 1)
    assert refresh.header == bytes.fromhex(HEADER_HEX) == live_header().to_bytes(2)
    assert refresh.sequence_header() == parsed.header


def test_versions_and_unit_types() -> None:
    assert VERSION_2_1 == (2, 1) and int(UnitType.REFRESH) == 0x09
    assert 0x09 in unit_types_of((2, 1)) and 0x09 in unit_types_of((2, 7))
    for version in ((2, 0), (1, 0), (1, 1), (1, 2), (1, 3), (1, 9)):
        assert 0x09 not in unit_types_of(version)
    assert unit_types_of((2, 1)) == unit_types_of((2, 0)) | {0x09}
    assert bs.PAYLOAD_TYPES[UnitType.REFRESH] is Refresh


def test_a_2_0_stream_keeps_0x09_unknown() -> None:
    """A 2.0 stream's 0x09 unit is unknown, exactly as for a 2.0 reader (and as avfc 0.2 reads a 2.1 one)."""
    fp = io.BytesIO()
    w = StreamWriter(fp, 2)
    w.write_header(live_header())
    payload = Refresh(frame_index=2, header=live_header().to_bytes(2)).to_bytes(2)
    data = fp.getvalue() + encode_unit(0x09, payload, 2)
    parsed = parse_stream(data)
    assert parsed.version == VERSION_2_0 and parsed.units[0].type == 9 and not parsed.units[0].known
    assert bs.decode_payload(parsed.units[0], 2) is None


def test_streams_without_refresh_are_2_0() -> None:
    fp = io.BytesIO()
    w = StreamWriter(fp, 2)
    w.write_header(live_header())
    assert fp.getvalue()[:6] == b"AVFC\x02\x00"
    with pytest.raises(FormatError, match="refresh=True"):
        w.write(Refresh(frame_index=2, header=live_header().to_bytes(2)))
    with pytest.raises(FormatError, match="2.1"):
        StreamWriter(io.BytesIO(), 1, refresh=True)
    w1 = StreamWriter(io.BytesIO(), 1)
    w1.write_header(live_header())
    with pytest.raises(FormatError, match="major 2"):
        w1.write_refresh(3)


def test_a_refresh_repeats_the_header_exactly() -> None:
    fp = io.BytesIO()
    w = StreamWriter(fp, 2, refresh=True)
    with pytest.raises(FormatError, match="before the sequence header"):
        w.write_refresh(0)
    w.write_header(live_header())
    other = live_header().model_copy(update={"frame_count": 9}).to_bytes(2)
    with pytest.raises(FormatError, match="cannot change its header"):
        w.write(Refresh(frame_index=5, header=other))
    with pytest.raises(FormatError, match="cannot change its header"):
        w.write_unit(UnitType.REFRESH, Refresh(frame_index=5, header=other).to_bytes(2))
    with pytest.raises(FormatError, match="cannot change its header"):
        w.write(Refresh(frame_index=5, header=live_header().to_bytes(2), minor=2))
    n = fp.tell()
    assert w.write_refresh(5) == len(fp.getvalue()) - n


def test_refresh_payload_checks() -> None:
    header = live_header().to_bytes(2)
    good = Refresh(frame_index=300, header=header).to_bytes(2)
    assert good[:9] == b"AVFC\x02\x01\xac\x02" + header[:1]
    assert Refresh.from_bytes(good, 2) == Refresh(frame_index=300, header=header)
    with pytest.raises(FormatError, match="major"):
        Refresh.from_bytes(good, 1)
    with pytest.raises(FormatError, match="major"):
        Refresh(frame_index=0, header=header).to_bytes(1)
    with pytest.raises(FormatError, match="magic"):
        Refresh.from_bytes(b"AVFX" + good[4:], 2)
    with pytest.raises(FormatError):
        Refresh.from_bytes(good[:3], 2)
    with pytest.raises(FormatError):
        Refresh.from_bytes(b"AVFC\x03\x01\x00" + header, 2)  # major 3
    with pytest.raises(FormatError):
        Refresh.from_bytes(b"AVFC\x02\x00\x00" + header, 2)  # a 2.0 stream has no REFRESH
    with pytest.raises(FormatError):
        Refresh.from_bytes(b"AVFC\x02\x01\x00", 2)  # no header bytes
    with pytest.raises(LimitError):
        Refresh(frame_index=0, header=b"x" * MAX_REFRESH_PAYLOAD)
    with pytest.raises(LimitError):
        Refresh(frame_index=10_000_000, header=header)


# ---------------------------------------------------------------------------- join mode


def events_of(data: bytes, chunks: list[int] | None = None, join: bool = True) -> list:
    parser = StreamParser(join=join)
    out: list = []
    if chunks is None:
        out += parser.feed(data)
    else:
        pos, k = 0, 0
        while pos < len(data):
            size = chunks[k % len(chunks)]
            out += parser.feed(data[pos:pos + size])
            pos, k = pos + size, k + 1
    return out + parser.close()


def check_tiling(data: bytes, events: list, start: int) -> None:
    """Events are in order and cover every byte from ``start`` (0 when joined, 6 after a preamble) once."""
    offset = start
    for event in events:
        assert event.offset == offset
        if isinstance(event, Unit):
            assert data[offset:offset + event.size] == encode_unit(event.type, event.payload, 2)
            offset += event.size
        else:
            assert isinstance(event, Damage) and event.length > 0
            offset += event.length
    assert offset == len(data)


def long_stream(seed: int = 3) -> bytes:
    """A 2.1 stream with sample units and a REFRESH every few units (frames 0, 10, 20, 30)."""
    fp = io.BytesIO()
    w = StreamWriter(fp, 2, refresh=True)
    w.write_header(bs.SequenceHeader(**HEADER_FIELDS))
    payloads = sample_payloads(seed=seed, count=12)
    for i, p in enumerate(payloads):
        if i and i % 4 == 0:
            w.write_refresh(10 * (i // 4))
        w.write(p)
    return fp.getvalue()


def test_join_from_every_byte_starts_at_the_next_refresh() -> None:
    data = example_stream()
    refresh_at = data.index(bytes.fromhex("0932"))
    for cut in range(len(data)):
        tail = data[cut:]
        events = events_of(tail)
        parser_start = 6 if tail[:4] == b"AVFC" and tail[4] in (1, 2) else 0
        check_tiling(tail, events, parser_start)
        assert events_of(tail, [1]) == events
        if cut == 0:
            assert parse_stream(tail, join=True).first_frame == 0
        elif cut <= refresh_at:
            parsed = parse_stream(tail, join=True)
            assert parsed.first_frame == 2 and parsed.version == VERSION_2_1
            assert parsed.header == parse_stream(data).header
            assert [u.type for u in parsed.units] == [UnitType.KEY_FRAME, UnitType.MOTION, UnitType.END_OF_STREAM]
            assert parsed.damages == ([Damage(0, refresh_at - cut, DamageReason.JOIN)] if cut < refresh_at else [])
        else:
            with pytest.raises(FormatError, match="no intact sequence header"):
                parse_stream(tail, join=True)


def test_join_finds_the_first_intact_refresh() -> None:
    data = long_stream()
    full = parse_stream(data)
    refreshes = [u for u in full.units if u.type == UnitType.REFRESH]
    assert len(refreshes) >= 2
    for k, r in enumerate(refreshes):
        for cut in (r.offset - 17, r.offset - 1, r.offset):
            parsed = parse_stream(data[cut:], join=True)
            assert parsed.first_frame == 10 * (k + 1)
            assert [u.payload for u in parsed.units] == [u.payload for u in full.units if u.offset > r.offset]
    # a damaged first REFRESH: the joiner starts at the second
    broken = bytearray(data)
    broken[refreshes[0].offset + 20] ^= 0x10
    assert parse_stream(bytes(broken[refreshes[0].offset - 3:]), join=True).first_frame == 20


def test_join_with_a_preamble_reads_normally_and_joins_when_the_header_is_damaged() -> None:
    data = long_stream()
    assert parse_stream(data, join=True) == parse_stream(data)
    broken = bytearray(data)
    broken[12] ^= 0x01  # inside the sequence header
    with pytest.raises(FormatError, match="no intact sequence header"):
        parse_stream(bytes(broken))
    parsed = parse_stream(bytes(broken), join=True)
    assert parsed.first_frame == 10 and parsed.version == VERSION_2_1 and parsed.damages[0].reason == "crc_mismatch"


def test_without_join_nothing_changes() -> None:
    data = long_stream()
    with pytest.raises(FormatError, match="not an .avfc file"):
        parse_stream(data[1:])
    with pytest.raises(UnsupportedVersionError):
        parse_stream(b"AVFC\x03\x00" + data[6:])
    # join: input that is not a preamble is searched, never refused
    assert parse_stream(b"AVFC\x03\x00" + data[6:], join=True).first_frame == 10
    assert events_of(b"AVF") == [Damage(0, 3, DamageReason.JOIN)]
    assert events_of(b"") == []
    assert StreamParser(join=True).close() == []


def test_join_ignores_refresh_like_bytes_that_are_not_intact() -> None:
    data = long_stream()
    r = data.index(b"\x09", data.index(b"AVFC", 6) - 3)
    for mutate in (lambda b: b.__setitem__(r + 6, 3),  # major 3
                   lambda b: b.__setitem__(r + 7, 0),  # minor 0
                   lambda b: b.__setitem__(r, 8),  # type byte
                   lambda b: b.__setitem__(r + 30, b[r + 30] ^ 1)):  # CRC
        broken = bytearray(data)
        mutate(broken)
        assert parse_stream(bytes(broken[r:]), join=True).first_frame == 20


def test_join_search_buffer_and_work_are_bounded() -> None:
    data = long_stream()
    second = [u for u in parse_stream(data).units if u.type == UnitType.REFRESH][1]
    # crafted: magic after a type byte and a long length, over and over, then a real REFRESH
    trap = (b"\x09\xff\x07" + b"AVFC\x02\x01" + b"\x00" * 3) * 30000  # each claims 1023 bytes
    parser = StreamParser(join=True)
    events = []
    t0 = time.perf_counter()
    for i in range(0, len(trap), 4096):
        events += parser.feed(trap[i:i + 4096])
        assert len(parser._buf) <= 4096 + MAX_REFRESH_PAYLOAD + 16
    assert time.perf_counter() - t0 < 20
    events += parser.feed(data[second.offset:])
    events += parser.close()
    assert events[0] == Damage(0, len(trap), DamageReason.JOIN)
    assert decode_frame(events[1]) == 20


def decode_frame(unit: Unit) -> int:
    assert unit.type == UnitType.REFRESH
    return bs.decode_payload(unit, 2).frame_index


@st.composite
def joined_inputs(draw: st.DrawFn) -> bytes:
    data = bytearray(long_stream(seed=draw(st.integers(0, 3))))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        else:
            del data[pos:pos + draw(st.integers(1, 40))]
    cut = draw(st.integers(0, len(data)))
    prefix = draw(st.binary(max_size=30))
    return prefix + bytes(data[cut:])


@given(joined_inputs(), st.lists(st.integers(1, 97), min_size=1, max_size=8))
@_FUZZ
def test_joined_inputs_tile_and_ignore_chunking(data: bytes, chunks: list[int]) -> None:
    whole = events_of(data)
    start = 6 if data[:4] == b"AVFC" and len(data) >= 6 and data[4] in (1, 2) else 0
    if start == 0 and whole:
        assert whole[0].offset == 0
        if isinstance(whole[0], Damage):
            assert whole[0].reason == DamageReason.JOIN
            assert len(whole) == 1 or decode_frame(whole[1]) in (10, 20, 30)
    if start:
        offset = 6
    else:
        offset = 0
    for event in whole:  # tiling (units framed with CRC-16 once joined)
        assert event.offset == offset
        offset += event.size if isinstance(event, Unit) else event.length
    assert offset == len(data)
    assert events_of(data, chunks) == whole


def test_random_garbage_joins_nothing_quickly() -> None:
    garbage = random.Random(9).randbytes(1 << 20)
    events = events_of(garbage)
    assert sum(e.size if isinstance(e, Unit) else e.length for e in events) == len(garbage)
    data = long_stream()
    second = [u for u in parse_stream(data).units if u.type == UnitType.REFRESH][1]
    events = events_of(garbage + data[second.offset:])
    assert [decode_frame(e) for e in events if isinstance(e, Unit) and e.type == UnitType.REFRESH][:1] == [20]


def test_preamble_helper_unchanged() -> None:
    assert encode_preamble(VERSION_2_1) == b"AVFC\x02\x01"
