"""Format 2.2: the DECODER_PARAMS unit (0A), its signed Exp-Golomb values, and the writer's version rule."""

from __future__ import annotations

import io
import random

import pytest

from avfc.bitstream import (
    MAX_DECODER_PARAMS,
    MOTION_FLAG_INTRA,
    VERSION_2_1,
    VERSION_2_2,
    DecoderParams,
    EndOfStream,
    KeyFrame,
    Motion,
    StreamWriter,
    UnitType,
    decode_payload,
    encode_unit,
    parse_stream,
    unit_types_of,
)
from avfc.bitstream.payloads import (
    MAX_DECODER_PARAM,
    golomb_order,
    pack_signed_golomb,
    pack_varint,
    unpack_signed_golomb,
)
from avfc.bitstream.units import encode_preamble
from avfc.errors import FormatError, LimitError

from .test_units import golden_header

# The example of docs/bitstream.md A.15.5: the 2.0 example (A.13.5) with decoder parameters for frame 0
# (written by hand from the spec; the header unit is that of A.13.5)
HEADER_UNIT_HEX = ("01 2b 01 74 ab ab ab ab ab ab ab ab 80 02 80 02 19 01 02 02 80 05 e0 03 c0 01 70 80 02 80"
                   " 02 01 01 c0 3e bc 05 c0 02 0a 02 06 01 00 02 3f 9c")
EXAMPLE_2_2_HEX = " ".join([
    "41 56 46 43 02 02",  # preamble, version 2.2
    HEADER_UNIT_HEX,
    "0a 09 00 01 06 07 00 b4 70 50 50 6a e9",  # DECODER_PARAMS: frame 0, set 1, 6 values, shift 7, order 0
    "02 04 00 28 12 34 30 f7",  # KEY_FRAME: frame 0, QP 40, data 12 34
    "03 04 01 01 01 aa 2f e3",  # MOTION: frame 1, INTRA, data aa
    "0f 04 02 02 80 05 8a 20",  # END_OF_STREAM
]).replace(" ", "")
VALUES = (0, 1, -1, 3, -20, 2)


def example_stream() -> bytes:
    fp = io.BytesIO()
    w = StreamWriter(fp, 2, decoder_params=True)
    w.write_header(golden_header())
    assert w.write(DecoderParams(frame_index=0, shift=7, values=VALUES)) == 13
    w.write(KeyFrame(frame_index=0, quality=40, data=b"\x12\x34"))
    w.write(Motion(first_frame=1, num_frames=1, flags=MOTION_FLAG_INTRA, data=b"\xaa"))
    w.write(EndOfStream(frame_count=2, audio_frame_count=2, audio_samples=640))
    return fp.getvalue()


def test_the_example_stream_of_the_spec_byte_for_byte() -> None:
    data = example_stream()
    assert len(data) == 90 and data.hex() == EXAMPLE_2_2_HEX
    parsed = parse_stream(data)
    assert parsed.version == VERSION_2_2 and not parsed.damages
    p = decode_payload(parsed.units[0], 2)
    assert isinstance(p, DecoderParams)
    assert (p.frame_index, p.param_set, p.shift, p.order, p.values) == (0, 1, 7, 0, VALUES)


def test_versions_and_unit_types() -> None:
    assert VERSION_2_2 == (2, 2) and int(UnitType.DECODER_PARAMS) == 0x0A
    assert 0x0A in unit_types_of((2, 2)) and 0x0A in unit_types_of((2, 9))
    for version in ((2, 1), (2, 0), (1, 3), (1, 0)):
        assert 0x0A not in unit_types_of(version)
    assert 0x09 in unit_types_of((2, 2))


def test_a_2_1_stream_keeps_0x0a_unknown() -> None:
    data = bytearray(example_stream())
    data[5] = 1  # the same units under a 2.1 preamble (no CRC covers the preamble)
    parsed = parse_stream(bytes(data))
    assert parsed.version == VERSION_2_1
    assert parsed.units[0].type == 0x0A and not parsed.units[0].known
    assert decode_payload(parsed.units[0], 2) is None


def test_writer_version_rule() -> None:
    for refresh in (False, True):
        fp = io.BytesIO()
        w = StreamWriter(fp, 2, refresh=refresh, decoder_params=True)
        w.write_header(golden_header())
        w.write(DecoderParams(frame_index=0, shift=7, values=VALUES))
        if refresh:
            w.write_refresh(1)
        assert fp.getvalue()[:6] == encode_preamble(VERSION_2_2)
    fp = io.BytesIO()
    w = StreamWriter(fp, 2, refresh=True)
    w.write_header(golden_header())
    with pytest.raises(FormatError, match="2.2"):
        w.write(DecoderParams(frame_index=0, shift=7, values=VALUES))
    with pytest.raises(FormatError, match="major 2"):
        StreamWriter(io.BytesIO(), 1, decoder_params=True)
    with pytest.raises(FormatError):
        DecoderParams(frame_index=0, shift=7, values=VALUES).to_bytes(1)
    with pytest.raises(FormatError):
        DecoderParams.from_bytes(DecoderParams(frame_index=0, shift=7, values=VALUES).to_bytes(2), 1)


def test_signed_golomb_round_trips_every_order() -> None:
    rng = random.Random(7)
    for order in range(16):
        values = [rng.randint(-MAX_DECODER_PARAM, MAX_DECODER_PARAM) for _ in range(40)]
        values += [0, 1, -1, MAX_DECODER_PARAM, -MAX_DECODER_PARAM]
        assert unpack_signed_golomb(pack_signed_golomb(values, order), len(values), order) == tuple(values)
    small = [rng.randint(-3, 3) for _ in range(168)]
    assert golomb_order(small) <= 1 and len(pack_signed_golomb(small, golomb_order(small))) < 100
    p = DecoderParams(frame_index=3, shift=5, values=tuple(small))
    assert DecoderParams.from_bytes(p.to_bytes(2), 2) == p


def _payload(count: int, shift: int = 7, order: int = 0, data: bytes = b"", param_set: int = 1) -> bytes:
    return pack_varint(4) + bytes((param_set,)) + pack_varint(count) + bytes((shift, order)) + data


def test_bad_payloads_are_avfc_errors() -> None:
    good = pack_signed_golomb(VALUES, 0)
    assert DecoderParams.from_bytes(_payload(6, data=good), 2).values == VALUES
    cases = {
        "ends inside": _payload(7, data=good),  # one value more than the data hold
        "after the last value": _payload(6, data=good + b"\x00"),
        "padding": _payload(6, data=good[:-1] + bytes((good[-1] | 1,))),
        "prefix": _payload(1, data=b"\x00" * 8),  # a run of zero bits longer than any value needs
        "order": _payload(6, order=16, data=good),
        "set": _payload(6, data=good, param_set=2),
        "shift": _payload(6, shift=25, data=good),
    }
    for what, payload in cases.items():
        with pytest.raises(FormatError):
            DecoderParams.from_bytes(payload, 2)
    with pytest.raises(FormatError):
        DecoderParams.from_bytes(_payload(6, data=good)[:2], 2)  # ends inside the fixed fields
    with pytest.raises(LimitError):
        DecoderParams(frame_index=0, shift=7, values=(MAX_DECODER_PARAM + 1,))
    with pytest.raises(LimitError):
        DecoderParams(frame_index=0, shift=7, values=(0,) * (MAX_DECODER_PARAMS + 1))


def test_the_parser_refuses_oversized_counts_before_reading_values() -> None:
    # a count of 2^34 with no data: refused at the count, nothing allocated or read
    with pytest.raises(LimitError, match="MAX_DECODER_PARAMS"):
        DecoderParams.from_bytes(_payload(1 << 34), 2)
    with pytest.raises(LimitError):
        DecoderParams.from_bytes(_payload(MAX_DECODER_PARAMS + 1, data=b"\xff" * 200), 2)
    # framed as a unit of a 2.2 stream: the decoder sees a malformed unit (an avfc error), not a crash
    unit = encode_unit(UnitType.DECODER_PARAMS, _payload(1 << 34), 2)
    data = bytearray(example_stream())
    parsed = parse_stream(bytes(data[:53]) + unit + bytes(data[66:]))
    with pytest.raises(LimitError):
        decode_payload(parsed.units[0], 2)
