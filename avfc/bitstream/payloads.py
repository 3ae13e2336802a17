"""Payload models of the v1 units: frozen pydantic models with exact byte layouts.

Every model validates its ranges on construction and raises :class:`FormatError`
(or :class:`LimitError` when a value exceeds an upper bound) naming the field.
``to_bytes()`` writes the payload; ``from_bytes()`` reads it and ignores bytes after
the known fields (later minor versions append fields). KeyFrame, Motion and Audio
end with their opaque ``data``, so everything after their fixed fields is data.
Reserved flag bits must be 0 on construction and are ignored (masked off) when
read, so a later minor version may define them as hints an older reader can skip.
"""

from __future__ import annotations

from abc import abstractmethod
from enum import IntEnum
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic import ValidationError, model_validator

from avfc.bitstream._fields import pack_fields, read_bytes, translate, unpack_fields
from avfc.bitstream.units import MAX_UNIT_PAYLOAD, Unit, UnitType
from avfc.errors import FormatError, LimitError

#: bound on frame counts and frame indices (about 4.6 days at 25 fps).
MAX_FRAME_COUNT = 10_000_000
MAX_FPS = 240
MIN_PICTURE_SIZE = 16
MAX_PICTURE_SIZE = 4096
MAX_MODEL_NAME = 64
MAX_KP_COUNT = 64
MAX_KP_DIM = 16
MAX_KP_PRECISION = 15
MAX_REFS = 16
MAX_MOTION_FRAMES = 1024
MAX_AUDIO_FRAMES = 4096
MIN_AUDIO_RATE = 8000
MAX_AUDIO_RATE = 48000
U8, U16, U32 = 0xFF, 0xFFFF, 0xFFFF_FFFF

#: Motion.flags bit: the packet does not depend on earlier packets.
MOTION_FLAG_INTRA = 0x01
#: SideInfo.flags bits (after the VVC generative face video SEI message).
SIDE_INFO_FLAG_BASE_PICTURE = 0x01
SIDE_INFO_FLAG_NETWORK_PRESENT = 0x02
SIDE_INFO_FLAG_DRIVE_PICTURE_FUSION = 0x04
SIDE_INFO_FLAG_LOW_CONFIDENCE = 0x08
SIDE_INFO_FLAG_KP_PREDICTION = 0x10
_SIDE_INFO_FLAGS = 0x1F


class KeyCodec(IntEnum):
    """Intra codec of key frames."""

    AV1 = 1
    HEVC = 2


class AudioCodecId(IntEnum):
    """Audio codec of AUDIO units (NONE: the stream has no audio)."""

    NONE = 0
    CODEC2 = 1
    OPUS = 2


class MotionCoder(IntEnum):
    """Entropy-coding scheme of MOTION data."""

    LAPLACE_V1 = 1


class ReferenceMode(IntEnum):
    """Reference structure: low delay (references in the past) or bi-directional."""

    LOW_DELAY = 0
    BIDIRECTIONAL = 1


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError(f"must be bytes-like, not {type(value).__name__}")


def _data_field(min_len: int, fixed_size: int) -> Any:
    """Annotation of a trailing opaque ``data`` field (fixed fields + data fit in a unit)."""
    return Field(min_length=min_len, max_length=MAX_UNIT_PAYLOAD - fixed_size, repr=False)


Uint8 = Annotated[StrictInt, Field(ge=0, le=U8)]
Uint16 = Annotated[StrictInt, Field(ge=0, le=U16)]
Uint32 = Annotated[StrictInt, Field(ge=0, le=U32)]
Positive16 = Annotated[StrictInt, Field(ge=1, le=U16)]
PictureSize = Annotated[StrictInt, Field(ge=MIN_PICTURE_SIZE, le=MAX_PICTURE_SIZE)]
FrameIndex = Annotated[StrictInt, Field(ge=0, le=MAX_FRAME_COUNT - 1)]
FrameCount = Annotated[StrictInt, Field(ge=0, le=MAX_FRAME_COUNT)]
KpCount = Annotated[StrictInt, Field(ge=1, le=MAX_KP_COUNT)]
KpDim = Annotated[StrictInt, Field(ge=1, le=MAX_KP_DIM)]
KpPrecision = Annotated[StrictInt, Field(ge=0, le=MAX_KP_PRECISION)]
Bytes = Annotated[bytes, BeforeValidator(_as_bytes)]


class Payload(BaseModel):
    """Base of the payload models: frozen, no extra fields, avfc errors only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the unit type that carries this payload.
    UNIT_TYPE: ClassVar[UnitType]

    def __init__(self, **data: Any) -> None:
        """Validate and build; raises FormatError / LimitError naming the bad field."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise translate(type(self).__name__, exc) from None

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Serialise the payload (without unit framing)."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> "Payload":
        """Parse a payload; raises FormatError / LimitError naming the bad field."""


def _check_flags(model: str, flags: int, known: int) -> None:
    if flags & ~known:
        raise FormatError(f"{model}.flags: reserved bits set in {flags:#04x} (defined bits: {known:#04x})")


def _check_bytes(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"payload must be bytes-like, not {type(data).__name__}")
    return bytes(data)


_HEADER_LAYOUT = (
    ("width", "H"),
    ("height", "H"),
    ("fps_num", "H"),
    ("fps_den", "H"),
    ("frame_count", "I"),
    ("source_width", "H"),
    ("source_height", "H"),
    ("crop_x", "H"),
    ("crop_y", "H"),
    ("crop_w", "H"),
    ("crop_h", "H"),
    ("key_codec", "B"),
    ("audio_codec", "B"),
    ("audio_sample_rate", "I"),
    ("audio_param", "I"),
    ("audio_frame_samples", "H"),
    ("kp_count", "B"),
    ("kp_dim", "B"),
    ("kp_precision", "B"),
    ("motion_coder", "B"),
    ("reference_mode", "B"),
    ("max_refs", "B"),
    ("flags", "H"),
)


class SequenceHeader(Payload):
    """Everything a decoder needs before the first frame (the SEQUENCE_HEADER unit)."""

    UNIT_TYPE: ClassVar[UnitType] = UnitType.SEQUENCE_HEADER

    model_name: Annotated[
        StrictStr, Field(min_length=1, max_length=MAX_MODEL_NAME, pattern=r"^[A-Za-z0-9._-]+$")
    ]
    weights_sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    width: PictureSize
    height: PictureSize
    fps_num: Positive16
    fps_den: Positive16
    frame_count: FrameCount = 0
    source_width: Positive16
    source_height: Positive16
    crop_x: Uint16
    crop_y: Uint16
    crop_w: Positive16
    crop_h: Positive16
    key_codec: KeyCodec
    audio_codec: AudioCodecId = AudioCodecId.NONE
    audio_sample_rate: Uint32 = 0
    audio_param: Uint32 = 0
    audio_frame_samples: Uint16 = 0
    kp_count: KpCount
    kp_dim: KpDim
    kp_precision: KpPrecision
    motion_coder: MotionCoder = MotionCoder.LAPLACE_V1
    reference_mode: ReferenceMode = ReferenceMode.LOW_DELAY
    max_refs: Annotated[StrictInt, Field(ge=1, le=MAX_REFS)] = 1
    flags: Uint16 = 0  # reserved: no bit is defined in version 1.0

    @model_validator(mode="after")
    def _check(self) -> "SequenceHeader":
        _check_flags("SequenceHeader", self.flags, 0)
        if self.width % 2 or self.height % 2:
            raise FormatError(f"SequenceHeader.width/height: {self.width}x{self.height} must both be even")
        if self.fps_num > MAX_FPS * self.fps_den:
            raise LimitError(f"SequenceHeader.fps_num/fps_den: {self.fps_num}/{self.fps_den} exceeds {MAX_FPS} fps")
        if self.crop_x + self.crop_w > self.source_width or self.crop_y + self.crop_h > self.source_height:
            raise FormatError(
                f"SequenceHeader.crop_*: box x={self.crop_x} y={self.crop_y} w={self.crop_w} h={self.crop_h} "
                f"does not lie inside the {self.source_width}x{self.source_height} source"
            )
        self._check_audio()
        return self

    def _check_audio(self) -> None:
        name = self.audio_codec.name
        if self.audio_codec is AudioCodecId.NONE:
            for field in ("audio_sample_rate", "audio_param", "audio_frame_samples"):
                if getattr(self, field):
                    raise FormatError(f"SequenceHeader.{field}: must be 0 when audio_codec is NONE")
            return
        if self.audio_sample_rate > MAX_AUDIO_RATE:
            raise LimitError(f"SequenceHeader.audio_sample_rate: {self.audio_sample_rate} exceeds {MAX_AUDIO_RATE}")
        if self.audio_sample_rate < MIN_AUDIO_RATE:
            raise FormatError(
                f"SequenceHeader.audio_sample_rate: {self.audio_sample_rate} is below {MIN_AUDIO_RATE} ({name})"
            )
        if self.audio_param == 0:
            raise FormatError(f"SequenceHeader.audio_param: must be >= 1 when audio_codec is {name}")
        if self.audio_frame_samples == 0:
            raise FormatError(f"SequenceHeader.audio_frame_samples: must be >= 1 when audio_codec is {name}")

    @property
    def fps(self) -> Fraction:
        """Frame rate as an exact fraction."""
        return Fraction(self.fps_num, self.fps_den)

    def to_bytes(self) -> bytes:
        """Serialise: name length, name, raw SHA-256, then the fixed fields."""
        name = self.model_name.encode("ascii")
        values = {field: int(getattr(self, field)) for field, _ in _HEADER_LAYOUT}
        return bytes((len(name),)) + name + bytes.fromhex(self.weights_sha256) + pack_fields(values, _HEADER_LAYOUT)

    @classmethod
    def from_bytes(cls, data: bytes) -> "SequenceHeader":
        """Parse a SEQUENCE_HEADER payload (trailing bytes ignored, reserved flags ignored)."""
        data = _check_bytes(data)
        length, offset = read_bytes("SequenceHeader", "model_name_length", data, 0, 1)
        raw_name, offset = read_bytes("SequenceHeader", "model_name", data, offset, length[0])
        digest, offset = read_bytes("SequenceHeader", "weights_sha256", data, offset, 32)
        values, _ = unpack_fields("SequenceHeader", data, offset, _HEADER_LAYOUT)
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError("SequenceHeader.model_name: not ASCII") from None
        values["flags"] = 0  # no bit defined in 1.0: ignored
        return cls(model_name=name, weights_sha256=digest.hex(), **values)


_KEY_LAYOUT = (("frame_index", "I"), ("quality", "B"))
_KEY_FIXED = 5


class KeyFrame(Payload):
    """An intra-coded picture (KEY_FRAME unit): the codec's own bitstream in ``data``."""

    UNIT_TYPE: ClassVar[UnitType] = UnitType.KEY_FRAME

    frame_index: FrameIndex
    quality: Uint8
    data: Bytes = _data_field(1, _KEY_FIXED)

    def to_bytes(self) -> bytes:
        """Serialise: frame_index, quality, data."""
        return pack_fields({"frame_index": self.frame_index, "quality": self.quality}, _KEY_LAYOUT) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> "KeyFrame":
        """Parse a KEY_FRAME payload; everything after the fixed fields is ``data``."""
        data = _check_bytes(data)
        values, offset = unpack_fields("KeyFrame", data, 0, _KEY_LAYOUT)
        return cls(data=data[offset:], **values)


_MOTION_LAYOUT = (("first_frame", "I"), ("num_frames", "H"), ("flags", "B"))
_MOTION_FIXED = 7


class Motion(Payload):
    """Entropy-coded keypoints of ``num_frames`` frames from ``first_frame`` (MOTION unit).

    ``flags``: MOTION_FLAG_INTRA (the packet does not depend on earlier packets).
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.MOTION

    first_frame: FrameIndex
    num_frames: Annotated[StrictInt, Field(ge=1, le=MAX_MOTION_FRAMES)]
    flags: Uint8 = 0
    data: Bytes = _data_field(0, _MOTION_FIXED)

    @property
    def intra(self) -> bool:
        """True when the packet does not depend on earlier packets (a decoder can start here)."""
        return bool(self.flags & MOTION_FLAG_INTRA)

    @model_validator(mode="after")
    def _check(self) -> "Motion":
        _check_flags("Motion", self.flags, MOTION_FLAG_INTRA)
        if self.first_frame + self.num_frames > MAX_FRAME_COUNT:
            raise LimitError(
                f"Motion.num_frames: frames {self.first_frame}..{self.first_frame + self.num_frames - 1} "
                f"exceed MAX_FRAME_COUNT ({MAX_FRAME_COUNT})"
            )
        return self

    def to_bytes(self) -> bytes:
        """Serialise: first_frame, num_frames, flags, data."""
        values = {"first_frame": self.first_frame, "num_frames": self.num_frames, "flags": self.flags}
        return pack_fields(values, _MOTION_LAYOUT) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> "Motion":
        """Parse a MOTION payload; reserved flag bits are ignored."""
        data = _check_bytes(data)
        values, offset = unpack_fields("Motion", data, 0, _MOTION_LAYOUT)
        values["flags"] &= MOTION_FLAG_INTRA
        return cls(data=data[offset:], **values)


_AUDIO_LAYOUT = (("first_frame", "I"), ("num_frames", "H"))
_AUDIO_FIXED = 6


class Audio(Payload):
    """``num_frames`` audio codec frames from audio frame ``first_frame`` (AUDIO unit)."""

    UNIT_TYPE: ClassVar[UnitType] = UnitType.AUDIO

    first_frame: Uint32
    num_frames: Annotated[StrictInt, Field(ge=1, le=MAX_AUDIO_FRAMES)]
    data: Bytes = _data_field(0, _AUDIO_FIXED)

    @model_validator(mode="after")
    def _check(self) -> "Audio":
        if self.first_frame + self.num_frames > U32 + 1:
            raise LimitError(
                f"Audio.num_frames: frames {self.first_frame}..{self.first_frame + self.num_frames - 1} "
                "run past the u32 frame index range"
            )
        return self

    def to_bytes(self) -> bytes:
        """Serialise: first_frame, num_frames, data."""
        return pack_fields({"first_frame": self.first_frame, "num_frames": self.num_frames}, _AUDIO_LAYOUT) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> "Audio":
        """Parse an AUDIO payload; everything after the fixed fields is ``data``."""
        data = _check_bytes(data)
        values, offset = unpack_fields("Audio", data, 0, _AUDIO_LAYOUT)
        return cls(data=data[offset:], **values)


_SIDE_LAYOUT = (
    ("info_id", "H"),
    ("counter", "H"),
    ("flags", "B"),
    ("kp_precision", "B"),
    ("kp_count", "B"),
    ("kp_dim", "B"),
    ("applies_from_frame", "I"),
    ("num_refs", "B"),
)


class SideInfo(Payload):
    """Generative-face side information (SIDE_INFO unit), after the VVC GFV SEI message.

    ``refs`` are the frame indices of the reference frames that frames from ``applies_from_frame``
    on are predicted from (the reference structure).
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.SIDE_INFO

    info_id: Uint16
    counter: Uint16
    flags: Uint8 = 0
    kp_precision: KpPrecision
    kp_count: KpCount
    kp_dim: KpDim
    applies_from_frame: FrameIndex
    refs: Annotated[tuple[FrameIndex, ...], Field(max_length=MAX_REFS)] = ()

    @model_validator(mode="after")
    def _check(self) -> "SideInfo":
        _check_flags("SideInfo", self.flags, _SIDE_INFO_FLAGS)
        return self

    @property
    def base_picture(self) -> bool:
        """The picture is a base (key) picture of the generative face video."""
        return bool(self.flags & SIDE_INFO_FLAG_BASE_PICTURE)

    @property
    def network_present(self) -> bool:
        """The generation network is identified (by the sequence header's model name and hash)."""
        return bool(self.flags & SIDE_INFO_FLAG_NETWORK_PRESENT)

    @property
    def drive_picture_fusion(self) -> bool:
        """Decoded pictures are fused with the generated ones."""
        return bool(self.flags & SIDE_INFO_FLAG_DRIVE_PICTURE_FUSION)

    @property
    def low_confidence(self) -> bool:
        """The encoder judged the generated pictures unreliable from here on."""
        return bool(self.flags & SIDE_INFO_FLAG_LOW_CONFIDENCE)

    @property
    def kp_prediction(self) -> bool:
        """Keypoints are predicted from the previous message."""
        return bool(self.flags & SIDE_INFO_FLAG_KP_PREDICTION)

    def to_bytes(self) -> bytes:
        """Serialise: fixed fields, num_refs, then each reference index as u32."""
        values = {name: getattr(self, name) for name, _ in _SIDE_LAYOUT if name != "num_refs"}
        values["num_refs"] = len(self.refs)
        return pack_fields(values, _SIDE_LAYOUT) + b"".join(r.to_bytes(4, "big") for r in self.refs)

    @classmethod
    def from_bytes(cls, data: bytes) -> "SideInfo":
        """Parse a SIDE_INFO payload (trailing bytes and reserved flag bits ignored)."""
        data = _check_bytes(data)
        values, offset = unpack_fields("SideInfo", data, 0, _SIDE_LAYOUT)
        num_refs = values.pop("num_refs")
        if num_refs > MAX_REFS:
            raise LimitError(f"SideInfo.num_refs: {num_refs} exceeds {MAX_REFS}")
        refs_layout = [(f"refs[{i}]", "I") for i in range(num_refs)]
        ref_values, _ = unpack_fields("SideInfo", data, offset, refs_layout)
        values["flags"] &= _SIDE_INFO_FLAGS
        return cls(refs=tuple(ref_values.values()), **values)


_EOS_LAYOUT = (("frame_count", "I"), ("audio_frame_count", "I"), ("audio_samples", "I"))


class EndOfStream(Payload):
    """The real totals, written last (END_OF_STREAM unit).

    ``audio_samples`` is the exact PCM length, so the decoder trims codec padding.
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.END_OF_STREAM

    frame_count: FrameCount
    audio_frame_count: Uint32 = 0
    audio_samples: Uint32 = 0

    def to_bytes(self) -> bytes:
        """Serialise: frame_count, audio_frame_count, audio_samples."""
        return pack_fields(self.model_dump(), _EOS_LAYOUT)

    @classmethod
    def from_bytes(cls, data: bytes) -> "EndOfStream":
        """Parse an END_OF_STREAM payload (trailing bytes ignored)."""
        values, _ = unpack_fields("EndOfStream", _check_bytes(data), 0, _EOS_LAYOUT)
        return cls(**values)


#: the payload model of every known unit type.
PAYLOAD_TYPES: dict[UnitType, type[Payload]] = {
    model.UNIT_TYPE: model for model in (SequenceHeader, KeyFrame, Motion, Audio, SideInfo, EndOfStream)
}

AnyPayload = Union[SequenceHeader, KeyFrame, Motion, Audio, SideInfo, EndOfStream]


def decode_payload(unit: Unit) -> Optional[AnyPayload]:
    """Parse ``unit.payload`` with the model of its type; None for an unknown type."""
    if not unit.known:
        return None
    return PAYLOAD_TYPES[unit.type].from_bytes(unit.payload)  # type: ignore[return-value]
