"""The .avfc bitstream v1 container: units, payload models, writer and incremental reader.

No torch here: this layer only frames, checks and (de)serialises bytes. The format
is specified field by field in docs/bitstream.md (container section).
"""

from avfc.bitstream.parser import StreamParser
from avfc.bitstream.payloads import (
    MAX_FRAME_COUNT,
    MOTION_FLAG_INTRA,
    PAYLOAD_TYPES,
    SIDE_INFO_FLAG_BASE_PICTURE,
    SIDE_INFO_FLAG_DRIVE_PICTURE_FUSION,
    SIDE_INFO_FLAG_KP_PREDICTION,
    SIDE_INFO_FLAG_LOW_CONFIDENCE,
    SIDE_INFO_FLAG_NETWORK_PRESENT,
    Audio,
    AudioCodecId,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    Motion,
    MotionCoder,
    Payload,
    ReferenceMode,
    SequenceHeader,
    SideInfo,
    decode_payload,
)
from avfc.bitstream.stream import ParsedStream, StreamWriter, parse_stream, read_file
from avfc.bitstream.units import (
    FORMAT_VERSION,
    MAGIC,
    MAX_UNIT_PAYLOAD,
    Damage,
    DamageReason,
    Event,
    Unit,
    UnitType,
    encode_unit,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_FRAME_COUNT",
    "MAX_UNIT_PAYLOAD",
    "MOTION_FLAG_INTRA",
    "PAYLOAD_TYPES",
    "SIDE_INFO_FLAG_BASE_PICTURE",
    "SIDE_INFO_FLAG_DRIVE_PICTURE_FUSION",
    "SIDE_INFO_FLAG_KP_PREDICTION",
    "SIDE_INFO_FLAG_LOW_CONFIDENCE",
    "SIDE_INFO_FLAG_NETWORK_PRESENT",
    "Audio",
    "AudioCodecId",
    "Damage",
    "DamageReason",
    "EndOfStream",
    "Event",
    "KeyCodec",
    "KeyFrame",
    "Motion",
    "MotionCoder",
    "ParsedStream",
    "Payload",
    "ReferenceMode",
    "SequenceHeader",
    "SideInfo",
    "StreamParser",
    "StreamWriter",
    "Unit",
    "UnitType",
    "decode_payload",
    "encode_unit",
    "parse_stream",
    "read_file",
]
