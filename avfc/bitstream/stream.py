"""Writing whole streams unit by unit, and reading whole streams or files at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Union

from avfc.bitstream.parser import StreamParser
from avfc.bitstream.payloads import AudioCoder, MotionSource, Payload, SequenceHeader
from avfc.bitstream.units import (
    SUPPORTED_MAJORS,
    VERSION_2_0,
    Damage,
    Event,
    Unit,
    UnitType,
    encode_preamble,
    encode_unit,
)
from avfc.errors import FormatError, MediaError

_READ_CHUNK = 1 << 20

# unit type -> (header field, the value it must have for the unit to belong in the stream)
_UNIT_NEEDS = {
    UnitType.AUDIO: ("audio_coder", AudioCoder.RAW),
    UnitType.AUDIO_CTX: ("audio_coder", AudioCoder.CONTEXT),
    UnitType.MOTION: ("motion_source", MotionSource.TRANSMITTED),
    UnitType.MOTION_PRED: ("motion_source", MotionSource.PREDICTED),
    UnitType.MOTION_SPARSE: ("sparse_motion", True),
}


def _show(value: object) -> str:
    return getattr(value, "name", str(value))


class StreamWriter:
    """Write a stream to a binary file object as data becomes available (no seeking).

    The header comes first (:meth:`write_header`), then any units; END_OF_STREAM
    ends the stream. Misuse (units before the header, a second header, units after
    END_OF_STREAM, an audio or motion unit of a kind the header does not announce)
    raises FormatError, as the result would not be a valid stream.

    ``major`` picks the layout: 1 writes the oldest 1.x version that holds the stream (what every
    avfc reader reads), 2 writes version 2.0 (the compact layout; readers from avfc 0.2 on).
    """

    def __init__(self, fp: BinaryIO, major: int = 1) -> None:
        """Wrap ``fp``, any object with a ``write(bytes)`` method; FormatError on an unknown ``major``."""
        if isinstance(major, bool) or major not in SUPPORTED_MAJORS:
            raise FormatError(f"major version {major!r} is not one of {SUPPORTED_MAJORS}")
        self.major = major
        self._fp = fp
        self._header: SequenceHeader | None = None
        self._ended = False
        self.bytes_written = 0

    def write_header(self, header: SequenceHeader) -> int:
        """Write the preamble and the SEQUENCE_HEADER unit; return bytes written.

        Major 1: the preamble's version is ``header.min_version``: 1.3 with DIFFUSION_LIPS, 1.2 when
        the header has the SPARSE_MOTION flag, else 1.1 when it has the AVCC extension, else 1.0 (a
        stream that uses no 1.1 feature is a 1.0 stream, byte for byte). Major 2: version 2.0.
        """
        if not isinstance(header, SequenceHeader):
            raise FormatError(f"write_header expects a SequenceHeader, not {type(header).__name__}")
        if self._header is not None:
            raise FormatError("a stream has exactly one sequence header, already written")
        version = header.min_version if self.major == 1 else VERSION_2_0
        data = encode_preamble(version) + encode_unit(UnitType.SEQUENCE_HEADER, header.to_bytes(self.major),
                                                      self.major)
        self._header = header
        return self._emit(data)

    def write_unit(self, unit_type: UnitType, payload: bytes) -> int:
        """Write one unit of a known type other than SEQUENCE_HEADER; return bytes written.

        AUDIO / AUDIO_CTX must match the header's ``audio_coder`` (RAW / CONTEXT) and MOTION /
        MOTION_PRED its ``motion_source`` (TRANSMITTED / PREDICTED; FROM_SPEECH takes neither);
        MOTION_SPARSE needs the header flag SPARSE_MOTION (which needs TRANSMITTED).
        """
        if not isinstance(unit_type, UnitType):
            raise FormatError(f"write_unit expects a UnitType, not {unit_type!r}")
        if unit_type is UnitType.SEQUENCE_HEADER:
            raise FormatError("use write_header for the sequence header")
        if self._header is None:
            raise FormatError(f"{unit_type.name} written before the sequence header")
        if self._ended:
            raise FormatError(f"{unit_type.name} written after END_OF_STREAM")
        if unit_type in _UNIT_NEEDS:
            field, needed = _UNIT_NEEDS[unit_type]
            actual = getattr(self._header, field)
            if actual != needed:
                raise FormatError(
                    f"{unit_type.name} unit in a stream whose header has {field} {_show(actual)} "
                    f"({unit_type.name} needs {_show(needed)})"
                )
        data = encode_unit(unit_type, payload, self.major)
        self._ended = unit_type is UnitType.END_OF_STREAM
        return self._emit(data)

    def write(self, payload: Payload) -> int:
        """Write a payload model as a unit of its type (a SequenceHeader via write_header)."""
        if not isinstance(payload, Payload):
            raise FormatError(f"write expects a payload model, not {type(payload).__name__}")
        if isinstance(payload, SequenceHeader):
            return self.write_header(payload)
        return self.write_unit(payload.UNIT_TYPE, payload.to_bytes(self.major))

    def _emit(self, data: bytes) -> int:
        self._fp.write(data)
        self.bytes_written += len(data)
        return len(data)


@dataclass(frozen=True)
class ParsedStream:
    """A whole stream: its version, its header, the intact units after it, the damage."""

    version: tuple[int, int]
    header: SequenceHeader
    units: list[Unit]  # every intact unit after the sequence header, in file order
    damages: list[Damage]


def _assemble(version: tuple[int, int], events: list[Event]) -> ParsedStream:
    units = [e for e in events if isinstance(e, Unit)]
    damages = [e for e in events if isinstance(e, Damage)]
    if not units:
        raise FormatError("no intact sequence header: the stream holds no intact unit")
    first = units[0]
    if first.type != UnitType.SEQUENCE_HEADER:
        where = f"; damage at offset {damages[0].offset} ({damages[0].reason.value})" if damages else ""
        raise FormatError(
            f"no intact sequence header: the first intact unit is type {first.type!r} at offset {first.offset}{where}"
        )
    return ParsedStream(version, SequenceHeader.from_bytes(first.payload, version[0]), units[1:], damages)


def parse_stream(data: Union[bytes, bytearray, memoryview]) -> ParsedStream:
    """Parse a complete stream held in memory.

    Damaged or truncated units are reported in ``damages``; raises FormatError
    (or a subclass) on a bad preamble or when there is no intact SEQUENCE_HEADER
    as first intact unit, and on an invalid header payload.
    """
    parser = StreamParser()
    events = parser.feed(data)
    events += parser.close()
    assert parser.version is not None  # close() raised otherwise
    return _assemble(parser.version, events)


def read_file(path: Union[str, "os.PathLike[str]"]) -> ParsedStream:
    """Parse the .avfc file at ``path`` (read in chunks); MediaError if it cannot be read."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise MediaError(f"read_file expects a path, not {type(path).__name__}") from None
    parser = StreamParser()
    events: list[Event] = []
    try:
        with open(name, "rb") as fp:
            while chunk := fp.read(_READ_CHUNK):
                events += parser.feed(chunk)
    except OSError as exc:
        raise MediaError(f"cannot read {name!r}: {exc.strerror or exc}") from None
    events += parser.close()
    assert parser.version is not None  # close() raised otherwise
    return _assemble(parser.version, events)
