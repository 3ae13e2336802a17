"""Format 2.3: no new unit; a stream with REFRESH units and the AVCC extension says 2.3 (its cross-modal
histories restart at each REFRESH, docs/bitstream.md A.14.7), every other stream is what it was."""

from __future__ import annotations

import io

import pytest

from avfc import bitstream as bs
from avfc.bitstream.units import encode_preamble, unit_types_of

from .conftest import AVCC_FIELDS, HEADER_FIELDS


@pytest.mark.parametrize("avcc, refresh, params, version", [
    (False, False, False, (2, 0)), (False, True, False, (2, 1)), (False, True, True, (2, 2)),
    (False, False, True, (2, 2)), (True, False, False, (2, 0)), (True, False, True, (2, 2)),
    (True, True, False, (2, 3)), (True, True, True, (2, 3)),
])
def test_the_writer_writes_2_3_exactly_for_refresh_with_avcc(avcc, refresh, params, version) -> None:
    header = bs.SequenceHeader(**HEADER_FIELDS, **(AVCC_FIELDS if avcc else {}))
    fp = io.BytesIO()
    w = bs.StreamWriter(fp, 2, refresh=refresh, decoder_params=params)
    w.write_header(header)
    if refresh:
        w.write_refresh(5)
    assert fp.getvalue()[:6] == encode_preamble(version)
    parsed = bs.parse_stream(fp.getvalue())
    assert parsed.version == version
    assert all(bs.decode_payload(u, 2).version == version for u in parsed.units)  # each REFRESH repeats it
    if refresh:  # a joining reader takes the version from the REFRESH
        joined = bs.parse_stream(fp.getvalue()[parsed.units[0].offset:], join=True)
        assert joined.version == version and joined.first_frame == 5


def test_2_3_adds_no_unit_type_and_is_the_newest_version() -> None:
    assert bs.VERSION_2_3 == (2, 3) and bs.FORMAT_VERSION == bs.VERSION_2_3
    assert unit_types_of((2, 3)) == unit_types_of((2, 2))
