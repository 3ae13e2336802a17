"""Writing whole streams unit by unit, and reading whole streams or files at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Optional, Union

from avfc.bitstream.parser import StreamParser
from avfc.bitstream.payloads import AudioCoder, MotionSource, Payload, Refresh, SequenceHeader
from avfc.bitstream.units import (
    SUPPORTED_MAJORS,
    VERSION_2_0,
    VERSION_2_1,
    VERSION_2_2,
    VERSION_2_3,
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
    ``refresh=True`` (major 2 only) writes version 2.1 and allows :meth:`write_refresh`: the version is
    in the preamble, written first, so a writer that may write a REFRESH unit says so up front.
    ``decoder_params=True`` (major 2 only) writes version 2.2 and allows DECODER_PARAMS units (with or
    without ``refresh``). ``refresh=True`` with a header that has the AVCC extension writes version 2.3
    (every cross-modal history restarts at each REFRESH; with or without ``decoder_params``).
    """

    def __init__(self, fp: BinaryIO, major: int = 1, *, refresh: bool = False, decoder_params: bool = False) -> None:
        """Wrap ``fp``, any object with a ``write(bytes)`` method; FormatError on an unknown ``major`` and on
        ``refresh`` or ``decoder_params`` with major 1 (REFRESH exists from 2.1 on, DECODER_PARAMS from 2.2)."""
        if isinstance(major, bool) or major not in SUPPORTED_MAJORS:
            raise FormatError(f"major version {major!r} is not one of {SUPPORTED_MAJORS}")
        if refresh and major != 2:
            raise FormatError("REFRESH units (random access) need format 2.1: major 2, not 1")
        if decoder_params and major != 2:
            raise FormatError("DECODER_PARAMS units need format 2.2: major 2, not 1")
        self.major = major
        self.refresh = bool(refresh)
        self.decoder_params = bool(decoder_params)
        self._fp = fp
        self._header: SequenceHeader | None = None
        self._header_bytes = b""  # the header's payload, repeated by every REFRESH
        self._ended = False
        self.bytes_written = 0

    def write_header(self, header: SequenceHeader) -> int:
        """Write the preamble and the SEQUENCE_HEADER unit; return bytes written.

        Major 1: the preamble's version is ``header.min_version``: 1.3 with DIFFUSION_LIPS, 1.2 when
        the header has the SPARSE_MOTION flag, else 1.1 when it has the AVCC extension, else 1.0 (a
        stream that uses no 1.1 feature is a 1.0 stream, byte for byte). Major 2: version 2.3 when the
        writer was made with ``refresh=True`` and the header has the AVCC extension, else 2.2 when it was
        made with ``decoder_params=True``, else 2.1 with ``refresh=True``, else 2.0.
        """
        if not isinstance(header, SequenceHeader):
            raise FormatError(f"write_header expects a SequenceHeader, not {type(header).__name__}")
        if self._header is not None:
            raise FormatError("a stream has exactly one sequence header, already written")
        version = self.version_for(header)
        payload = header.to_bytes(self.major)
        data = encode_preamble(version) + encode_unit(UnitType.SEQUENCE_HEADER, payload, self.major)
        self._header = header
        self._header_bytes = payload
        return self._emit(data)

    def version_for(self, header: SequenceHeader) -> tuple[int, int]:
        """The version this writer writes a stream with ``header`` as."""
        if self.major == 1:
            return header.min_version
        if self.refresh and header.avcc_name is not None:  # cross-modal histories restart at a REFRESH
            return VERSION_2_3
        if self.decoder_params:
            return VERSION_2_2
        return VERSION_2_1 if self.refresh else VERSION_2_0

    def write_refresh(self, frame_index: int) -> int:
        """Write a REFRESH unit (format 2.1) for the key frame at ``frame_index``: the stream's version and
        its header's payload, byte for byte; return bytes written. The caller writes that KEY_FRAME next
        and codes it with an empty reference buffer (docs/bitstream.md A.14). FormatError in major 1, in a
        writer made without ``refresh=True``, before the header or after END_OF_STREAM."""
        if self.major != 2:
            raise FormatError("REFRESH units (random access) need format 2.1: major 2, not 1")
        if self._header is None:
            raise FormatError("REFRESH written before the sequence header")
        return self.write(Refresh(frame_index=frame_index, header=self._header_bytes,
                                  minor=self.version_for(self._header)[1]))

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
        if unit_type is UnitType.DECODER_PARAMS and not self.decoder_params:
            raise FormatError("DECODER_PARAMS in a stream below 2.2: make the writer with decoder_params=True "
                              "(version 2.2), the preamble states the version before any unit")
        if unit_type is UnitType.REFRESH:
            if self.major != 2:
                raise FormatError("REFRESH units (random access) need format 2.1: major 2, not 1")
            self._check_refresh(Refresh.from_bytes(payload, self.major))
        data = encode_unit(unit_type, payload, self.major)
        self._ended = unit_type is UnitType.END_OF_STREAM
        return self._emit(data)

    def write(self, payload: Payload) -> int:
        """Write a payload model as a unit of its type (a SequenceHeader via write_header)."""
        if not isinstance(payload, Payload):
            raise FormatError(f"write expects a payload model, not {type(payload).__name__}")
        if isinstance(payload, SequenceHeader):
            return self.write_header(payload)
        if isinstance(payload, Refresh):
            self._check_refresh(payload)
        return self.write_unit(payload.UNIT_TYPE, payload.to_bytes(self.major))

    def _check_refresh(self, refresh: Refresh) -> None:
        """A REFRESH must repeat the stream's version and header payload exactly, in a 2.1 writer."""
        if self.major != 2:
            raise FormatError("REFRESH units (random access) need format 2.1: major 2, not 1")
        if not self.refresh:
            raise FormatError("REFRESH in a 2.0 stream: make the writer with refresh=True (version 2.1), "
                              "the preamble states the version before any unit")
        if self._header is None:
            raise FormatError("REFRESH written before the sequence header")
        if refresh.version != self.version_for(self._header) or refresh.header != self._header_bytes:
            raise FormatError("a REFRESH repeats the stream's version and sequence header byte for byte; "
                              "this one differs (a stream cannot change its header)")

    def _emit(self, data: bytes) -> int:
        self._fp.write(data)
        self.bytes_written += len(data)
        return len(data)


@dataclass(frozen=True)
class ParsedStream:
    """A whole stream: its version, its header, the intact units after it, the damage."""

    version: tuple[int, int]
    header: SequenceHeader
    units: list[Unit]  # every intact unit after the sequence header (or joined REFRESH), in file order
    damages: list[Damage]
    #: the first frame the stream holds: 0, or, for a stream joined at a REFRESH, that REFRESH's frame
    first_frame: int = 0


def _assemble(version: Optional[tuple[int, int]], events: list[Event], join: bool = False) -> ParsedStream:
    units = [e for e in events if isinstance(e, Unit)]
    damages = [e for e in events if isinstance(e, Damage)]
    if not units or version is None:
        what = "intact REFRESH unit" if join else "intact unit"
        raise FormatError(f"no intact sequence header: the stream holds no {what}")
    first = units[0]
    if first.type == UnitType.SEQUENCE_HEADER:
        return ParsedStream(version, SequenceHeader.from_bytes(first.payload, version[0]), units[1:], damages)
    if join:  # the header was lost: start at the first intact REFRESH
        for i, unit in enumerate(units):
            if unit.type == UnitType.REFRESH:
                refresh = Refresh.from_bytes(unit.payload, version[0])
                return ParsedStream(refresh.version, refresh.sequence_header(), units[i + 1:], damages,
                                    int(refresh.frame_index))
    where = f"; damage at offset {damages[0].offset} ({damages[0].reason.value})" if damages else ""
    raise FormatError(
        f"no intact sequence header: the first intact unit is type {first.type!r} at offset {first.offset}{where}"
        + ("" if not join else " and no intact REFRESH follows")
    )


def parse_stream(data: Union[bytes, bytearray, memoryview], join: bool = False) -> ParsedStream:
    """Parse a complete stream held in memory.

    Damaged or truncated units are reported in ``damages``; raises FormatError
    (or a subclass) on a bad preamble or when there is no intact SEQUENCE_HEADER
    as first intact unit, and on an invalid header payload.

    ``join=True`` reads a stream from any byte (format 2.1, docs/bitstream.md A.14): without a preamble the
    bytes before the first intact REFRESH unit are one ``Damage(0, n, "join")``; the header is then that
    REFRESH's (also when the stream's own header is damaged), ``first_frame`` its frame, and ``units`` the
    units after it.
    """
    parser = StreamParser(join=join)
    events = parser.feed(data)
    events += parser.close()
    return _assemble(parser.version, events, join)


def read_file(path: Union[str, "os.PathLike[str]"], join: bool = False) -> ParsedStream:
    """Parse the .avfc file at ``path`` (read in chunks); MediaError if it cannot be read. ``join``: as for
    :func:`parse_stream`."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise MediaError(f"read_file expects a path, not {type(path).__name__}") from None
    parser = StreamParser(join=join)
    events: list[Event] = []
    try:
        with open(name, "rb") as fp:
            while chunk := fp.read(_READ_CHUNK):
                events += parser.feed(chunk)
    except OSError as exc:
        raise MediaError(f"cannot read {name!r}: {exc.strerror or exc}") from None
    events += parser.close()
    return _assemble(parser.version, events, join)
