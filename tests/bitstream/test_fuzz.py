"""Fuzzing and speed: only AvfcError escapes, events tile the input, chunking does not matter."""

from __future__ import annotations

import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avfc.bitstream import (
    PAYLOAD_TYPES,
    VERSION_1_0,
    VERSION_1_1,
    VERSION_2_0,
    Damage,
    SequenceHeader,
    StreamParser,
    Unit,
    decode_payload,
    encode_unit,
    parse_stream,
)
from avfc.bitstream.parser import MAX_PENDING_CANDIDATES
from avfc.bitstream.units import encode_preamble
from avfc.errors import AvfcError

from .conftest import AVCC_FIELDS, HEADER_FIELDS, sample_payloads, sample_payloads_v1_1

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_stream(version: tuple[int, int]) -> bytes:
    if version == VERSION_1_0:
        header, payloads = SequenceHeader(**HEADER_FIELDS), sample_payloads(seed=7, count=8)
    else:
        header, payloads = SequenceHeader(**HEADER_FIELDS, **AVCC_FIELDS), sample_payloads_v1_1(seed=7, count=8)
    major = version[0]
    units = [encode_unit(SequenceHeader.UNIT_TYPE, header.to_bytes(major), major)]
    units += [encode_unit(p.UNIT_TYPE, p.to_bytes(major), major) for p in payloads]
    return encode_preamble(version) + b"".join(units)


VALID = _valid_stream(VERSION_1_0)
VALID_1_1 = _valid_stream(VERSION_1_1)
VALID_2_0 = _valid_stream(VERSION_2_0)  # the compact layout (CRC-16 units), AVCC header
STREAMS = [VALID, VALID_1_1, VALID_2_0]
# valid payloads of every type, the 1.1 header extension included, with their major version, to mutate
VALID_PAYLOADS = [(u.type, u.payload, v[4]) for v in STREAMS for u in StreamParser().feed(v)]


def _events(data: bytes, chunks: list[int] | None = None) -> list:
    parser = StreamParser()
    out: list = []
    if chunks is None:
        out += parser.feed(data)
    else:
        pos, k = 0, 0
        while pos < len(data):
            size = chunks[k % len(chunks)]
            out += parser.feed(data[pos : pos + size])
            pos, k = pos + size, k + 1
    return out + parser.close()


def _check_tiling(data: bytes, events: list) -> None:
    """Events are in file order and cover every byte after the preamble exactly once."""
    offset = 6
    for event in events:
        assert event.offset == offset
        if isinstance(event, Unit):
            assert data[offset : offset + event.size] == encode_unit(event.type, event.payload, data[4])
            offset += event.size
        else:
            assert isinstance(event, Damage) and event.length > 0
            offset += event.length
    assert offset == len(data)


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(STREAMS)))
    for _ in range(draw(st.integers(0, 6))):
        if len(data) <= 6:
            break
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(6, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 40))]
        else:
            del data[pos:]
    return bytes(data)


@given(st.binary(max_size=3000))
@_FUZZ
def test_random_bytes_only_raise_avfc_errors(data: bytes) -> None:
    for candidate in (data, encode_preamble() + data, encode_preamble(VERSION_2_0) + data):
        try:
            parse_stream(candidate)
        except AvfcError:
            pass


@given(mutated_streams(), st.lists(st.integers(1, 97), min_size=1, max_size=8))
@_FUZZ
def test_mutated_streams_tile_and_ignore_chunking(data: bytes, chunks: list[int]) -> None:
    whole = _events(data)
    _check_tiling(data, whole)
    assert _events(data, chunks) == whole
    try:
        parsed = parse_stream(data)
    except AvfcError:
        return
    assert parsed.units == [e for e in whole if isinstance(e, Unit)][1:]


@given(
    st.binary(min_size=1, max_size=600),
    st.lists(st.integers(1, 50), min_size=1, max_size=5),
    st.sampled_from(STREAMS),
)
@_FUZZ
def test_garbage_after_preamble_tiles_and_ignores_chunking(garbage: bytes, chunks: list[int], valid: bytes) -> None:
    data = valid[:6] + garbage + valid[6:]
    whole = _events(data)
    _check_tiling(data, whole)
    assert _events(data, chunks) == whole
    # every unit of the valid stream after the garbage is found again
    tail = [e.payload for e in _events(valid)]
    found = [e.payload for e in whole if isinstance(e, Unit)]
    assert found[len(found) - len(tail) :] == tail


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[int, bytes, int]:
    unit_type, payload, major = draw(st.sampled_from(VALID_PAYLOADS))
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "truncate", "append"]))
        pos = draw(st.integers(0, len(data)))
        if op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "truncate":
            del data[pos:]
        else:
            data += draw(st.binary(min_size=1, max_size=40))
    return unit_type, bytes(data), major


@given(mutated_payloads())
@_FUZZ
def test_mutated_payloads_raise_only_avfc_errors_and_reencode(case: tuple[int, bytes, int]) -> None:
    unit_type, data, major = case
    try:
        payload = decode_payload(Unit(unit_type, data, 0), major)
    except AvfcError:
        return
    assert payload is not None
    assert PAYLOAD_TYPES[unit_type].from_bytes(payload.to_bytes(major), major) == payload  # what was read is valid


def test_two_megabytes_of_random_garbage_is_fast() -> None:
    garbage = random.Random(5).randbytes(2 << 20)
    data = VALID[:6] + garbage + VALID[6:]
    start = time.perf_counter()
    events = _events(data)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, elapsed
    assert isinstance(events[0], Damage) and events[0].length == len(garbage)
    assert sum(isinstance(e, Unit) for e in events) == len(_events(VALID))


def test_two_megabytes_of_random_garbage_in_a_2_0_stream_is_fast() -> None:
    garbage = random.Random(6).randbytes(2 << 20)
    data = VALID_2_0[:6] + garbage + VALID_2_0[6:]
    start = time.perf_counter()
    events = _events(data)
    assert time.perf_counter() - start < 10.0
    # with a 16-bit CRC a random candidate passes once in 65536 checks: the stream's own units are all
    # found again, after at most a few false ones inside the garbage
    units = [(e.type, e.payload) for e in events if isinstance(e, Unit)]
    own = [(e.type, e.payload) for e in _events(VALID_2_0)]
    assert units[-len(own):] == own and len(units) <= len(own) + 3


def test_adversarial_garbage_is_bounded() -> None:
    # every byte a candidate (MOTION, length 3); a candidate every 4 bytes claiming 128 KiB
    # (the CRC work bound); one every 5 bytes claiming 16 MiB, more than MAX_PENDING_CANDIDATES
    patterns = [b"\x03", b"\x03\xff\xff\x07", b"\x02\x80\x80\x80\x08"]
    for pattern in patterns:
        garbage = pattern * ((384 << 10) // len(pattern))
        assert len(pattern) < 5 or len(garbage) // len(pattern) > MAX_PENDING_CANDIDATES
        data = VALID[:6] + garbage + VALID[6:]
        start = time.perf_counter()
        events = _events(data)
        assert time.perf_counter() - start < 10.0
        assert sum(isinstance(e, Unit) for e in events) == len(_events(VALID))
