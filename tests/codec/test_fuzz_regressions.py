"""Regressions found while fuzzing the public surface (benchmarks/fuzz.py, issue 19 part 3): each test is one
input that once escaped the AvfcError family or decoded wrongly. Hand-made from the golden tiny-test streams."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder
from avfc.codec.info import stream_info
from avfc.errors import ModelMismatchError

GOLDEN = Path(__file__).parents[1] / "golden"


def _parsed(name: str) -> bs.ParsedStream:
    return bs.parse_stream((GOLDEN / f"{name}.avfc").read_bytes())


def _rewrite(parsed: bs.ParsedStream, header: bs.SequenceHeader, units: list | None = None) -> bytes:
    buf = io.BytesIO()
    w = bs.StreamWriter(buf, major=parsed.version[0])
    w.write_header(header)
    for u in parsed.units if units is None else units:
        if isinstance(u, bs.Unit):
            w.write_unit(bs.UnitType(u.type), u.payload)
        else:
            w.write_unit(*u)
    return buf.getvalue()


def test_a_streaming_decoder_whose_header_was_refused_keeps_refusing() -> None:
    """After the header named weights this installation lacks, the next push() met ``assert self.model is not
    None`` (an AssertionError) and close() returned frames; now every later call raises the same error."""
    parsed = _parsed("v2_0-codec2-av1")
    data = _rewrite(parsed, parsed.header.model_copy(update={"weights_sha256": "ab" * 8}))
    dec = Decoder()
    raised = []
    for i in range(0, len(data), 50):
        with pytest.raises(ModelMismatchError) as e:
            dec.push(data[i:i + 50])
        raised.append(e.value)
    with pytest.raises(ModelMismatchError):
        dec.close()
    assert len(raised) == -(-len(data) // 50) and all(r is raised[0] for r in raised)


def test_the_decoded_audio_rate_is_the_codecs_not_the_header_field() -> None:
    """A Codec2 stream whose header says 8000 Hz decodes at Codec2's 16 kHz (part C.1): the result said
    8000, so a .wav of it played at half speed, and an .mp4 with an odd rate (8001) failed to write."""
    parsed = _parsed("v2_0-codec2-av1")
    ref = avfc.decode(_rewrite(parsed, parsed.header))
    res = avfc.decode(_rewrite(parsed, parsed.header.model_copy(update={"audio_sample_rate": 8000})))
    assert ref.sample_rate == res.sample_rate == 16000
    assert res.audio is not None and ref.audio is not None and len(res.audio) == len(ref.audio)
    assert [i.kind for i in res.issues] == ["ignored"] and "8000 Hz" in res.issues[0].message
    assert ref.issues == []


def test_info_takes_a_malformed_end_of_stream_as_damage() -> None:
    """An END_OF_STREAM unit with a valid CRC but a payload that does not parse made ``avfc info`` fail on a
    stream the decoder decodes (it treats the unit as damaged); info now falls back to the header's count."""
    parsed = _parsed("v2_0-codec2-av1")
    units = [u if u.type != bs.UnitType.END_OF_STREAM else (bs.UnitType.END_OF_STREAM, b"\x80")
             for u in parsed.units]
    data = _rewrite(parsed, parsed.header, units)
    info = stream_info(data)
    json.dumps(info)
    assert info["frames"] == parsed.header.frame_count
    assert info["units"]["end_of_stream"]["count"] == 1
    assert len(avfc.decode(data).frames) == parsed.header.frame_count
