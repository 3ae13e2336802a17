"""Unit framing of the .avfc container: preamble, unit types, varint lengths, CRCs.

A file is ``MAGIC`` + ``major:u8`` + ``minor:u8`` followed by units. A unit is
``type:u8 | length:LEB128 | payload | crc`` where the CRC covers the type byte, the length
bytes and the payload: CRC-32 (zlib, u32 big-endian) in a major-1 stream, CRC-16/CCITT-FALSE
(``binascii.crc_hqx`` from 0xFFFF, u16 big-endian) in a major-2 stream. The unit types a
stream may hold are those of its version (:func:`unit_types_of`). See docs/bitstream.md (part A).
"""

from __future__ import annotations

import binascii
import zlib
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Union

from avfc.errors import FormatError, LimitError

MAGIC = b"AVFC"
#: version 1.0: what a stream that uses no 1.1 feature is written as.
VERSION_1_0 = (1, 0)
#: version 1.1: adds the AVCC header extension and the AUDIO_CTX / MOTION_PRED units.
VERSION_1_1 = (1, 1)
#: version 1.2: adds the MOTION_SPARSE unit (keypoints of every ``stride``-th frame) and the
#: header flag that announces it.
VERSION_1_2 = (1, 2)
#: version 1.3: adds the AVCC header flag DIFFUSION_LIPS and its two header fields (lips from speech
#: drawn by the diffusion model of the AVCC bundle); no new unit type.
VERSION_1_3 = (1, 3)
#: version 2.0: the compact layout of every 1.3 feature: CRC-16 unit framing, varint fields, the
#: weights named by an 8-byte prefix of their SHA-256, the crop box only when there is one. A
#: major-1 reader refuses it (UnsupportedVersionError); a major-2 reader reads 1.x and 2.0.
VERSION_2_0 = (2, 0)
#: version 2.1: adds the REFRESH unit (the sequence header repeated at a key frame, where the reference
#: buffer is emptied: a receiver that joins late or lost the start decodes from there); no other change.
VERSION_2_1 = (2, 1)
#: version 2.2: adds the DECODER_PARAMS unit (instance-adaptive decoder parameters: quantized deltas to the
#: model's adaptable set, applied from a key frame on); a decoder that does not know it must refuse the
#: stream, so decoders refuse a major-2 minor newer than they know (docs/bitstream.md A.15.4)
VERSION_2_2 = (2, 2)
#: version 2.3: no new unit; in a stream with REFRESH units and the AVCC extension every cross-modal history
#: (the speech-predicted motion's and the lips' audio rows, the motion before) restarts at each REFRESH, as
#: at the start of the stream, so a receiver that joins there decodes what one that read everything does
#: (docs/bitstream.md A.14.7, E.8). A reader of 2.3 reads every 2.2 feature too
VERSION_2_3 = (2, 3)
#: (major, minor): the newest version this implementation reads and writes. The parser frames any minor of
#: majors 1 and 2; the decoder refuses a major-2 minor above this one's. A major-1 writer writes the oldest
#: 1.x version that holds the stream.
FORMAT_VERSION = VERSION_2_3
#: the major versions this implementation reads
SUPPORTED_MAJORS = (1, 2)
PREAMBLE_SIZE = len(MAGIC) + 2
#: largest payload a unit may carry (16 MiB).
MAX_UNIT_PAYLOAD = 16 * 1024 * 1024
#: the length varint has at most this many bytes (28 bits, enough for MAX_UNIT_PAYLOAD).
MAX_LENGTH_BYTES = 4
#: CRC bytes of a unit in a major-1 stream (CRC-32) ...
CRC_SIZE = 4
#: ... and in a major-2 stream (CRC-16)
CRC_SIZE_2 = 2
#: smallest possible unit of a major-1 stream: type byte, one length byte (0), no payload, CRC.
MIN_UNIT_SIZE = 1 + 1 + CRC_SIZE


def crc_size_of(major: int) -> int:
    """CRC bytes per unit in a stream of major version ``major``: 4 (CRC-32) for 1, 2 (CRC-16) from 2."""
    return CRC_SIZE if major == 1 else CRC_SIZE_2


def unit_crc(major: int, data: bytes | bytearray | memoryview) -> int:
    """The CRC of a unit's type, length and payload bytes in a stream of major version ``major``."""
    return zlib.crc32(data) if major == 1 else binascii.crc_hqx(data, 0xFFFF)


class UnitType(IntEnum):
    """The unit types of format versions 1.2 to 2.2. Other type bytes are "unknown" and skipped."""

    SEQUENCE_HEADER = 0x01
    KEY_FRAME = 0x02
    MOTION = 0x03
    AUDIO = 0x04
    SIDE_INFO = 0x05
    AUDIO_CTX = 0x06  # since 1.1
    MOTION_PRED = 0x07  # since 1.1
    MOTION_SPARSE = 0x08  # since 1.2
    REFRESH = 0x09  # since 2.1 (major 2 only)
    DECODER_PARAMS = 0x0A  # since 2.2 (major 2 only)
    END_OF_STREAM = 0x0F


#: every type byte this implementation knows (versions 2.2 and 2.3).
KNOWN_UNIT_TYPES = frozenset(int(t) for t in UnitType)
#: the type bytes version 2.1 defines (all but DECODER_PARAMS).
UNIT_TYPES_2_1 = KNOWN_UNIT_TYPES - {UnitType.DECODER_PARAMS}
#: the type bytes versions 1.2, 1.3 and 2.0 define (all but REFRESH and DECODER_PARAMS).
UNIT_TYPES_1_2 = UNIT_TYPES_2_1 - {UnitType.REFRESH}
#: the type bytes version 1.1 defines; in a 1.1 stream every other type is unknown.
UNIT_TYPES_1_1 = UNIT_TYPES_1_2 - {UnitType.MOTION_SPARSE}
#: the type bytes version 1.0 defines; in a 1.0 stream every other type is unknown.
UNIT_TYPES_1_0 = UNIT_TYPES_1_1 - {UnitType.AUDIO_CTX, UnitType.MOTION_PRED}


def unit_types_of(version: tuple[int, int]) -> frozenset[int]:
    """The type bytes a stream of ``version`` defines: those of 1.0, of 1.1, those of 1.2 (every later 1.x
    and 2.0 too), from 2.1 on also REFRESH (0x09; a 1.x or 2.0 stream's 0x09 byte is unknown), and from 2.2
    on also DECODER_PARAMS (0x0A); 2.3 adds none."""
    if version[0] == 1 and version[1] < 2:
        return (UNIT_TYPES_1_0, UNIT_TYPES_1_1)[version[1]]
    if version[0] == 1 or version[1] < 1:
        return UNIT_TYPES_1_2
    if version[1] < 2:
        return UNIT_TYPES_2_1
    return KNOWN_UNIT_TYPES


class DamageReason(str, Enum):
    """Why a stretch of bytes did not form an intact unit."""

    CRC_MISMATCH = "crc_mismatch"
    BAD_LENGTH = "bad_length"
    TRUNCATED = "truncated"
    #: the bytes a joining reader skipped before the first intact REFRESH unit (section 14)
    JOIN = "join"

    def __str__(self) -> str:
        return self.value


def as_unit_type(value: int, known: frozenset[int] = KNOWN_UNIT_TYPES) -> Union[UnitType, int]:
    """Return ``UnitType(value)`` for a type byte in ``known``, else the plain int."""
    return UnitType(value) if value in known else value


@dataclass(frozen=True, slots=True)
class Unit:
    """An intact unit (its CRC matched) found at absolute file offset ``offset``.

    ``type`` is a :class:`UnitType` for known types and a plain ``int`` otherwise.
    """

    type: Union[UnitType, int]
    payload: bytes
    offset: int
    crc_size: int = CRC_SIZE  # 4 in a major-1 stream, 2 in a major-2 stream

    @property
    def known(self) -> bool:
        """True when the unit's type is one the stream's version defines (see :func:`unit_types_of`)."""
        return isinstance(self.type, UnitType)

    @property
    def size(self) -> int:
        """Bytes the unit occupies in the file: type, length, payload and CRC."""
        return 1 + len(encode_varint(len(self.payload))) + len(self.payload) + self.crc_size


@dataclass(frozen=True, slots=True)
class Damage:
    """``length`` bytes at absolute offset ``offset`` that did not form an intact unit."""

    offset: int
    length: int
    reason: DamageReason


Event = Union[Unit, Damage]


def encode_varint(value: int) -> bytes:
    """Minimal unsigned LEB128 encoding of ``0 <= value <= MAX_UNIT_PAYLOAD``."""
    if not isinstance(value, int) or value < 0 or value > MAX_UNIT_PAYLOAD:
        raise LimitError(f"unit length {value!r} is outside 0..{MAX_UNIT_PAYLOAD}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def read_length(buf: bytes | bytearray, start: int, end: int, max_payload: int) -> tuple[int, int]:
    """Parse the length varint at ``buf[start:end]``.

    Returns ``(n, value)`` with ``n`` the number of length bytes; ``n == 0`` means the
    buffer ends inside the varint; ``n == -1`` means the varint is invalid (longer
    than MAX_LENGTH_BYTES, not minimal, or a value above ``max_payload``).
    """
    value = 0
    for i in range(MAX_LENGTH_BYTES):
        if start + i >= end:
            return 0, 0
        byte = buf[start + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i > 0 and byte == 0:
                return -1, 0  # not minimal: a trailing zero group
            if value > max_payload:
                return -1, 0
            return i + 1, value
    return -1, 0  # continuation bit set on the last allowed byte


def encode_preamble(version: tuple[int, int] = VERSION_1_3) -> bytes:
    """The 6 bytes that open a file: magic, major, minor (FormatError unless both are bytes); the
    default is the newest 1.x version, whose units :func:`encode_unit` frames by default."""
    try:
        major, minor = version
        return MAGIC + bytes((major, minor))
    except (TypeError, ValueError):
        raise FormatError(f"version {version!r} is not a (major, minor) pair of byte values") from None


def encode_unit(unit_type: int, payload: bytes | bytearray | memoryview, major: int = 1) -> bytes:
    """Frame ``payload`` as a unit of type ``unit_type`` (any byte value 0..255) of a stream of major
    version ``major`` (1: CRC-32, 2: CRC-16).

    Raises LimitError if the payload exceeds MAX_UNIT_PAYLOAD, FormatError on a type
    outside 0..255 or a payload that is not bytes-like.
    """
    if isinstance(unit_type, bool) or not isinstance(unit_type, int) or not 0 <= unit_type <= 0xFF:
        raise FormatError(f"unit type {unit_type!r} is not a byte value 0..255")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise FormatError(f"unit payload must be bytes-like, not {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > MAX_UNIT_PAYLOAD:
        raise LimitError(f"unit payload of {len(payload)} bytes exceeds MAX_UNIT_PAYLOAD ({MAX_UNIT_PAYLOAD})")
    if major not in SUPPORTED_MAJORS:
        raise FormatError(f"major version {major!r} is not one of {SUPPORTED_MAJORS}")
    head = bytes((unit_type,)) + encode_varint(len(payload))
    return head + payload + unit_crc(major, head + payload).to_bytes(crc_size_of(major), "big")
