"""Payload models of the v1.1 units: frozen pydantic models with exact byte layouts.

Every model validates its ranges on construction and raises :class:`FormatError`
(or :class:`LimitError` when a value exceeds an upper bound) naming the field.
``to_bytes(major)`` writes the payload; ``from_bytes(data, major)`` reads it and ignores bytes after
the known fields (later minor versions append fields). KeyFrame, Motion and Audio
end with their opaque ``data``, so everything after their fixed fields is data.
Reserved flag bits must be 0 on construction and are ignored (masked off) when
read, so a later minor version may define them as hints an older reader can skip.
Version 1.1 appends the AVCC extension to the SequenceHeader and adds AudioCtx and
MotionPred; version 1.2 defines the header flag SPARSE_MOTION and adds MotionSparse;
version 1.3 defines the AVCC flag DIFFUSION_LIPS and appends its two fields to the AVCC
extension. Version 2.0 writes the same models in a compact layout (varint fields, an 8-byte
prefix of each SHA-256, the crop box only when there is one): ``to_bytes(major=2)`` and
``from_bytes(data, major=2)`` (docs/bitstream.md, part A). Readers take the stream's major version as a
required argument (``from_bytes(data, major)``, ``decode_payload(unit, major)``): the two layouts share no
bytes, so a missing major must be an error, not a silent 1.x parse.
"""

from __future__ import annotations

from abc import abstractmethod
from enum import IntEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic import ValidationError, model_validator

from avfc.bitstream._fields import Layout, pack_fields, pack_varint, read_bytes, read_varint, translate, unpack_fields
from avfc.bitstream.units import (
    MAGIC,
    MAX_UNIT_PAYLOAD,
    VERSION_1_0,
    VERSION_1_1,
    VERSION_1_2,
    VERSION_1_3,
    Unit,
    UnitType,
)
from avfc.errors import FormatError, LimitError

if TYPE_CHECKING:  # typing.Self is Python 3.11+, and the package supports 3.10
    from typing_extensions import Self

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
#: SequenceHeader.flags bit (since 1.2): the stream's motion may come in MOTION_SPARSE units.
HEADER_FLAG_SPARSE_MOTION = 0x0001
#: 2.0 header flags bits that say which optional fields follow (not SequenceHeader.flags bits: derived
#: from the other fields when written): the source size and crop box, the AVCC extension.
HEADER2_FLAG_CROP = 0x0002
HEADER2_FLAG_AVCC = 0x0004
#: SequenceHeader.avcc_flags bit (since 1.3): lips from speech drawn by the bundle's diffusion model;
#: the AVCC extension then ends with diffusion_steps (u8) and diffusion_seed (u32).
AVCC_FLAG_DIFFUSION_LIPS = 0x0001
#: the most DDIM steps a stream may ask for
MAX_DIFFUSION_STEPS = 64
#: the largest MotionSparse.stride
MAX_MOTION_STRIDE = 64
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


class AudioCoder(IntEnum):
    """How audio is carried (1.1): RAW in AUDIO units as in 1.0, or CONTEXT coded in AUDIO_CTX units."""

    RAW = 0
    CONTEXT = 1


class MotionSource(IntEnum):
    """Where motion comes from (1.1): MOTION units, MOTION_PRED units, or derived from the audio."""

    TRANSMITTED = 0
    PREDICTED = 1
    FROM_SPEECH = 2


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
ModelName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_MODEL_NAME, pattern=r"^[A-Za-z0-9._-]+$")]
#: a SHA-256 as 64 lowercase hex digits, or (read from a 2.0 stream) its first 8 bytes as 16
SHA256_PREFIX_BYTES = 8
Sha256Hex = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{16}(?:[0-9a-f]{48})?$")]


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

    #: the fixed fields before ``data`` (or all fields), in byte order: in a 1.x stream ...
    _LAYOUT: ClassVar[Layout] = ()
    #: ... and in a 2.0 stream (varints)
    _LAYOUT_2: ClassVar[Layout] = ()

    @classmethod
    def _layout(cls, major: int) -> Layout:
        if isinstance(major, bool) or major not in (1, 2):
            raise FormatError(f"{cls.__name__}: no layout for major version {major!r}")
        return cls._LAYOUT if major == 1 else cls._LAYOUT_2

    @abstractmethod
    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise the payload (without unit framing) in the layout of major version ``major``."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes, major: int) -> "Payload":
        """Parse a payload of a stream of major version ``major``; raises FormatError / LimitError
        naming the bad field."""


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
# the 1.1 extension after the name and digest of the AVCC bundle
_HEADER_EXT_LAYOUT = (("audio_coder", "B"), ("motion_source", "B"), ("avcc_flags", "H"))
# the 1.3 fields after avcc_flags, present exactly when avcc_flags has DIFFUSION_LIPS
_HEADER_DIFFUSION_LAYOUT = (("diffusion_steps", "B"), ("diffusion_seed", "I"))
# the 2.0 layout (varints "V"): sizes and rate, the crop box (with HEADER2_FLAG_CROP), the audio
# values (with an audio codec), keypoints and references, the AVCC extension (with HEADER2_FLAG_AVCC)
_HEADER2_SIZE_LAYOUT = (("width", "V"), ("height", "V"), ("fps_num", "V"), ("fps_den", "V"), ("frame_count", "V"))
_HEADER2_CROP_LAYOUT = (("source_width", "V"), ("source_height", "V"), ("crop_x", "V"), ("crop_y", "V"),
                        ("crop_w", "V"), ("crop_h", "V"))
_HEADER2_AUDIO_LAYOUT = (("audio_sample_rate", "V"), ("audio_param", "V"), ("audio_frame_samples", "V"))
_HEADER2_MOTION_LAYOUT = (("kp_count", "B"), ("kp_dim", "B"), ("kp_precision", "B"), ("motion_coder", "B"),
                          ("reference_mode", "B"), ("max_refs", "B"))
_HEADER2_EXT_LAYOUT = (("audio_coder", "B"), ("motion_source", "B"), ("avcc_flags", "V"))
_HEADER2_DIFFUSION_LAYOUT = (("diffusion_steps", "B"), ("diffusion_seed", "V"))
#: the only audio token layout the AUDIO_CTX context model knows: Codec2 700C.
_CONTEXT_AUDIO = (AudioCodecId.CODEC2, 700)


class SequenceHeader(Payload):
    """Everything a decoder needs before the first frame (the SEQUENCE_HEADER unit).

    The 1.1 fields (``avcc_name`` .. ``avcc_flags``) form the AVCC extension, written after
    the 1.0 fields when ``avcc_name`` is set; without it the payload is the 1.0 payload. The 1.3
    fields ``diffusion_steps`` and ``diffusion_seed`` follow ``avcc_flags`` when it has
    AVCC_FLAG_DIFFUSION_LIPS (both 0 otherwise, and not written).
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.SEQUENCE_HEADER

    model_name: ModelName
    weights_sha256: Sha256Hex
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
    flags: Uint16 = 0  # bit 0 (since 1.2): HEADER_FLAG_SPARSE_MOTION; the other bits are reserved
    # -- version 1.1: the AVCC extension
    avcc_name: Optional[ModelName] = None
    avcc_sha256: Optional[Sha256Hex] = None
    audio_coder: AudioCoder = AudioCoder.RAW
    motion_source: MotionSource = MotionSource.TRANSMITTED
    avcc_flags: Uint16 = 0  # bit 0 (since 1.3): AVCC_FLAG_DIFFUSION_LIPS; the other bits are reserved
    # -- version 1.3: the diffusion lips sampler (only with AVCC_FLAG_DIFFUSION_LIPS)
    diffusion_steps: Annotated[StrictInt, Field(ge=0, le=MAX_DIFFUSION_STEPS)] = 0
    diffusion_seed: Uint32 = 0

    @model_validator(mode="after")
    def _check(self) -> "SequenceHeader":
        _check_flags("SequenceHeader", self.flags, HEADER_FLAG_SPARSE_MOTION)
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
        self._check_avcc()
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

    def _check_avcc(self) -> None:
        if (self.avcc_name is None) != (self.avcc_sha256 is None):
            missing = "avcc_sha256" if self.avcc_sha256 is None else "avcc_name"
            raise FormatError(f"SequenceHeader.{missing}: avcc_name and avcc_sha256 are set together or not at all")
        if self.avcc_flags & ~AVCC_FLAG_DIFFUSION_LIPS:
            raise FormatError(f"SequenceHeader.avcc_flags: reserved bits set in {self.avcc_flags:#06x} "
                              f"(defined bits: {AVCC_FLAG_DIFFUSION_LIPS:#06x})")
        if self.diffusion_lips:
            if self.motion_source is not MotionSource.FROM_SPEECH:
                raise FormatError(f"SequenceHeader.avcc_flags: DIFFUSION_LIPS needs motion_source FROM_SPEECH, "
                                  f"not {self.motion_source.name}")
            if self.diffusion_steps == 0:
                raise FormatError("SequenceHeader.diffusion_steps: must be >= 1 with DIFFUSION_LIPS")
        elif self.diffusion_steps or self.diffusion_seed:
            raise FormatError("SequenceHeader.diffusion_steps/diffusion_seed: must be 0 without DIFFUSION_LIPS")
        if self.avcc_name is None:
            for field, default in (("audio_coder", AudioCoder.RAW), ("motion_source", MotionSource.TRANSMITTED)):
                if getattr(self, field) != default:
                    raise FormatError(
                        f"SequenceHeader.{field}: {getattr(self, field).name} needs the AVCC bundle "
                        "(avcc_name and avcc_sha256)"
                    )
            return
        if self.audio_coder is AudioCoder.CONTEXT and (self.audio_codec, self.audio_param) != _CONTEXT_AUDIO:
            raise FormatError(
                f"SequenceHeader.audio_coder: CONTEXT needs audio_codec CODEC2 with audio_param 700, "
                f"not {self.audio_codec.name} {self.audio_param}"
            )
        if self.motion_source is MotionSource.FROM_SPEECH and self.audio_codec is AudioCodecId.NONE:
            raise FormatError("SequenceHeader.motion_source: FROM_SPEECH needs audio (audio_codec is NONE)")
        if self.sparse_motion and self.motion_source is not MotionSource.TRANSMITTED:
            raise FormatError(f"SequenceHeader.flags: SPARSE_MOTION needs motion_source TRANSMITTED, "
                              f"not {self.motion_source.name}")

    @property
    def fps(self) -> Fraction:
        """Frame rate as an exact fraction."""
        return Fraction(self.fps_num, self.fps_den)

    @property
    def sparse_motion(self) -> bool:
        """The stream's motion may come in MOTION_SPARSE units (flag bit 0, since 1.2)."""
        return bool(self.flags & HEADER_FLAG_SPARSE_MOTION)

    @property
    def diffusion_lips(self) -> bool:
        """Lips from speech are drawn by the bundle's diffusion model (avcc_flags bit 0, since 1.3)."""
        return bool(self.avcc_flags & AVCC_FLAG_DIFFUSION_LIPS)

    @property
    def min_version(self) -> tuple[int, int]:
        """The oldest format version that holds this header: (1, 3) with the DIFFUSION_LIPS flag,
        else (1, 2) with the SPARSE_MOTION flag, else (1, 1) with the AVCC extension, else (1, 0)."""
        if self.diffusion_lips:
            return VERSION_1_3
        if self.sparse_motion:
            return VERSION_1_2
        return VERSION_1_0 if self.avcc_name is None else VERSION_1_1

    @property
    def cropped(self) -> bool:
        """The coded picture is not the whole source: a 2.0 header then carries the source size and
        crop box (flag CROP); otherwise they are the coded size and the whole picture."""
        return (self.source_width, self.source_height, self.crop_x, self.crop_y, self.crop_w, self.crop_h) != (
            self.width, self.height, 0, 0, self.width, self.height)

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise. 1.x: name length, name, raw SHA-256, the fixed fields, then the AVCC extension if
        set. 2.0: the compact layout (:meth:`_to_bytes_2`)."""
        if major == 2:
            return self._to_bytes_2()
        self._layout(major)
        for field in ("weights_sha256", "avcc_sha256"):
            digest = getattr(self, field)
            if digest is not None and len(digest) != 64:
                raise FormatError(f"SequenceHeader.{field}: a 1.x header holds the whole SHA-256, not a prefix")
        out = _name_and_digest(self.model_name, self.weights_sha256) + self._pack(_HEADER_LAYOUT)
        if self.avcc_name is not None:
            assert self.avcc_sha256 is not None  # validated: set together
            out += _name_and_digest(self.avcc_name, self.avcc_sha256) + self._pack(_HEADER_EXT_LAYOUT)
            if self.diffusion_lips:
                out += self._pack(_HEADER_DIFFUSION_LAYOUT)
        return out

    def _to_bytes_2(self) -> bytes:
        """The 2.0 layout: name, SHA-256 prefix, sizes and rate as varints, flags (SPARSE_MOTION, CROP,
        AVCC), the crop fields with CROP, key codec, audio (its three values only with a codec), the
        keypoint and reference bytes, then the AVCC extension with AVCC."""
        flags = self.flags | (HEADER2_FLAG_CROP if self.cropped else 0) | (
            HEADER2_FLAG_AVCC if self.avcc_name is not None else 0)
        out = _name_and_digest(self.model_name, self.weights_sha256, SHA256_PREFIX_BYTES)
        out += self._pack(_HEADER2_SIZE_LAYOUT)
        out += pack_varint(flags)
        if flags & HEADER2_FLAG_CROP:
            out += self._pack(_HEADER2_CROP_LAYOUT)
        out += bytes((int(self.key_codec), int(self.audio_codec)))
        if self.audio_codec is not AudioCodecId.NONE:
            out += self._pack(_HEADER2_AUDIO_LAYOUT)
        out += self._pack(_HEADER2_MOTION_LAYOUT)
        if self.avcc_name is not None:
            assert self.avcc_sha256 is not None  # validated: set together
            out += _name_and_digest(self.avcc_name, self.avcc_sha256, SHA256_PREFIX_BYTES)
            out += self._pack(_HEADER2_EXT_LAYOUT)
            if self.diffusion_lips:
                out += self._pack(_HEADER2_DIFFUSION_LAYOUT)
        return out

    def _pack(self, layout: Layout) -> bytes:
        return pack_fields({field: int(getattr(self, field)) for field, _ in layout}, layout)

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "SequenceHeader":
        """Parse a SEQUENCE_HEADER payload. 1.x: 1.0 fields, then the AVCC extension if bytes follow,
        then the 1.3 diffusion fields when ``avcc_flags`` has DIFFUSION_LIPS. 2.0: the compact layout;
        the digests are then 16-hex-digit prefixes.

        Bytes after the known fields are ignored (later minor versions), reserved flags are ignored.
        """
        data = _check_bytes(data)
        if major == 2:
            return cls._from_bytes_2(data)
        cls._layout(major)
        name, digest, offset = _read_name_and_digest(data, 0, "model_name", "weights_sha256")
        values: dict[str, Any] = {"model_name": name, "weights_sha256": digest}
        fixed, offset = unpack_fields("SequenceHeader", data, offset, _HEADER_LAYOUT)
        values.update(fixed)
        values["flags"] &= HEADER_FLAG_SPARSE_MOTION  # reserved bits are ignored
        if offset < len(data):
            name, digest, offset = _read_name_and_digest(data, offset, "avcc_name", "avcc_sha256")
            ext, offset = unpack_fields("SequenceHeader", data, offset, _HEADER_EXT_LAYOUT)
            ext["avcc_flags"] &= AVCC_FLAG_DIFFUSION_LIPS  # reserved bits are ignored
            values.update(ext, avcc_name=name, avcc_sha256=digest)
            if ext["avcc_flags"] & AVCC_FLAG_DIFFUSION_LIPS:
                diff, offset = unpack_fields("SequenceHeader", data, offset, _HEADER_DIFFUSION_LAYOUT)
                if diff["diffusion_steps"] > MAX_DIFFUSION_STEPS:
                    raise LimitError(f"SequenceHeader.diffusion_steps: {diff['diffusion_steps']} exceeds "
                                     f"{MAX_DIFFUSION_STEPS}")
                values.update(diff)
        return cls(**values)


    @classmethod
    def _from_bytes_2(cls, data: bytes) -> "SequenceHeader":
        name, digest, offset = _read_name_and_digest(data, 0, "model_name", "weights_sha256", SHA256_PREFIX_BYTES)
        values: dict[str, Any] = {"model_name": name, "weights_sha256": digest}
        sizes, offset = unpack_fields("SequenceHeader", data, offset, _HEADER2_SIZE_LAYOUT)
        values.update(sizes)
        flags, offset = read_varint("SequenceHeader", "flags", data, offset)
        values["flags"] = flags & HEADER_FLAG_SPARSE_MOTION  # reserved bits are ignored
        if flags & HEADER2_FLAG_CROP:
            crop, offset = unpack_fields("SequenceHeader", data, offset, _HEADER2_CROP_LAYOUT)
            values.update(crop)
        else:
            values.update(source_width=sizes["width"], source_height=sizes["height"], crop_x=0, crop_y=0,
                          crop_w=sizes["width"], crop_h=sizes["height"])
        codecs, offset = unpack_fields("SequenceHeader", data, offset, (("key_codec", "B"), ("audio_codec", "B")))
        values.update(codecs)
        if codecs["audio_codec"] != AudioCodecId.NONE:
            audio, offset = unpack_fields("SequenceHeader", data, offset, _HEADER2_AUDIO_LAYOUT)
            values.update(audio)
        motion, offset = unpack_fields("SequenceHeader", data, offset, _HEADER2_MOTION_LAYOUT)
        values.update(motion)
        if flags & HEADER2_FLAG_AVCC:
            name, digest, offset = _read_name_and_digest(data, offset, "avcc_name", "avcc_sha256",
                                                         SHA256_PREFIX_BYTES)
            ext, offset = unpack_fields("SequenceHeader", data, offset, _HEADER2_EXT_LAYOUT)
            ext["avcc_flags"] &= AVCC_FLAG_DIFFUSION_LIPS  # reserved bits are ignored
            values.update(ext, avcc_name=name, avcc_sha256=digest)
            if ext["avcc_flags"] & AVCC_FLAG_DIFFUSION_LIPS:
                diff, offset = unpack_fields("SequenceHeader", data, offset, _HEADER2_DIFFUSION_LAYOUT)
                values.update(diff)
        return cls(**values)


def sha256_names(full: str, named: str) -> bool:
    """Whether the digest a header holds (``named``: the whole SHA-256 in 1.x, its first 8 bytes in 2.0,
    as hex) names the file whose SHA-256 is ``full``."""
    return len(named) in (2 * SHA256_PREFIX_BYTES, 64) and full.startswith(named)


def _name_and_digest(name: str, sha256: str, digest_bytes: int = 32) -> bytes:
    """``name_length:u8``, the ASCII name, then the first ``digest_bytes`` raw bytes of the hex digest
    (all 32 in 1.x, 8 in 2.0)."""
    raw = name.encode("ascii")
    return bytes((len(raw),)) + raw + bytes.fromhex(sha256[: 2 * digest_bytes])


def _read_name_and_digest(data: bytes, offset: int, name_field: str, digest_field: str,
                          digest_bytes: int = 32) -> tuple[str, str, int]:
    """Read a length-prefixed ASCII name and a digest of ``digest_bytes`` (as hex); FormatError naming
    the field."""
    length, offset = read_bytes("SequenceHeader", f"{name_field}_length", data, offset, 1)
    raw_name, offset = read_bytes("SequenceHeader", name_field, data, offset, length[0])
    digest, offset = read_bytes("SequenceHeader", digest_field, data, offset, digest_bytes)
    try:
        name = raw_name.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"SequenceHeader.{name_field}: not ASCII") from None
    return name, digest.hex(), offset


_KEY_LAYOUT = (("frame_index", "I"), ("quality", "B"))
_KEY_FIXED = 5


class KeyFrame(Payload):
    """An intra-coded picture (KEY_FRAME unit): the codec's own bitstream in ``data``."""

    UNIT_TYPE: ClassVar[UnitType] = UnitType.KEY_FRAME

    _LAYOUT: ClassVar[Layout] = _KEY_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = (("frame_index", "V"), ("quality", "B"))

    frame_index: FrameIndex
    quality: Uint8
    data: Bytes = _data_field(1, _KEY_FIXED)

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise: frame_index, quality, data."""
        layout = self._layout(major)
        return pack_fields({"frame_index": self.frame_index, "quality": self.quality}, layout) + self.data

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "KeyFrame":
        """Parse a KEY_FRAME payload; everything after the fixed fields is ``data``."""
        data = _check_bytes(data)
        values, offset = unpack_fields("KeyFrame", data, 0, cls._layout(major))
        return cls(data=data[offset:], **values)


_MOTION_LAYOUT = (("first_frame", "I"), ("num_frames", "H"), ("flags", "B"))
_MOTION_FIXED = 7


class _MotionPacket(Payload):
    """Fields, checks and layout shared by Motion and MotionPred (same bytes, different units)."""

    _LAYOUT: ClassVar[Layout] = _MOTION_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = (("first_frame", "V"), ("num_frames", "V"), ("flags", "B"))

    first_frame: FrameIndex
    num_frames: Annotated[StrictInt, Field(ge=1, le=MAX_MOTION_FRAMES)]
    flags: Uint8 = 0
    data: Bytes = _data_field(0, _MOTION_FIXED)

    @property
    def intra(self) -> bool:
        """True when the packet does not depend on earlier packets (a decoder can start here)."""
        return bool(self.flags & MOTION_FLAG_INTRA)

    @model_validator(mode="after")
    def _check(self) -> "_MotionPacket":
        model = type(self).__name__
        _check_flags(model, self.flags, MOTION_FLAG_INTRA)
        if self.first_frame + self.num_frames > MAX_FRAME_COUNT:
            raise LimitError(
                f"{model}.num_frames: frames {self.first_frame}..{self.first_frame + self.num_frames - 1} "
                f"exceed MAX_FRAME_COUNT ({MAX_FRAME_COUNT})"
            )
        return self

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise: the fixed fields (first_frame, num_frames, flags, ...), then data."""
        layout = self._layout(major)
        return pack_fields({name: getattr(self, name) for name, _ in layout}, layout) + self.data

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> Self:
        """Parse the payload; reserved flag bits are ignored, everything after the fixed fields is data."""
        data = _check_bytes(data)
        values, offset = unpack_fields(cls.__name__, data, 0, cls._layout(major))
        values["flags"] &= MOTION_FLAG_INTRA
        return cls(data=data[offset:], **values)


class Motion(_MotionPacket):
    """Entropy-coded keypoints of ``num_frames`` frames from ``first_frame`` (MOTION unit).

    ``flags``: MOTION_FLAG_INTRA (the packet does not depend on earlier packets).
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.MOTION


class MotionPred(_MotionPacket):
    """Speech-predicted keypoints of ``num_frames`` frames from ``first_frame`` (MOTION_PRED unit, 1.1).

    Same layout and bounds as :class:`Motion`; ``data`` is coded against a predictor that sees the
    decoded audio (part F). ``flags``: MOTION_FLAG_INTRA.
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.MOTION_PRED


_SPARSE_LAYOUT = (("first_frame", "I"), ("num_frames", "H"), ("flags", "B"), ("stride", "B"))
_SPARSE_FIXED = 8


class MotionSparse(_MotionPacket):
    """Keypoints of every ``stride``-th frame of ``num_frames`` frames from ``first_frame`` and of the
    packet's last frame (MOTION_SPARSE unit, 1.2); the frames between are interpolated.

    ``data`` is a motion packet (part B) of :func:`avfc.entropy.sparse_positions` frames; the decoder
    fills the others with :func:`avfc.entropy.interpolate_track`. ``flags``: MOTION_FLAG_INTRA.
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.MOTION_SPARSE
    _LAYOUT: ClassVar[Layout] = _SPARSE_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = (("first_frame", "V"), ("num_frames", "V"), ("flags", "B"), ("stride", "B"))

    stride: Annotated[StrictInt, Field(ge=1, le=MAX_MOTION_STRIDE)] = 1
    data: Bytes = _data_field(0, _SPARSE_FIXED)


_AUDIO_LAYOUT = (("first_frame", "I"), ("num_frames", "H"))
_AUDIO_FIXED = 6


def _check_audio_frames(model: str, first: int, count: int) -> None:
    if first + count > U32 + 1:
        raise LimitError(f"{model}.num_frames: frames {first}..{first + count - 1} run past the u32 frame index range")


class Audio(Payload):
    """``num_frames`` audio codec frames from audio frame ``first_frame`` (AUDIO unit)."""

    UNIT_TYPE: ClassVar[UnitType] = UnitType.AUDIO

    _LAYOUT: ClassVar[Layout] = _AUDIO_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = (("first_frame", "V"), ("num_frames", "V"))

    first_frame: Uint32
    num_frames: Annotated[StrictInt, Field(ge=1, le=MAX_AUDIO_FRAMES)]
    data: Bytes = _data_field(0, _AUDIO_FIXED)

    @model_validator(mode="after")
    def _check(self) -> "Audio":
        _check_audio_frames("Audio", self.first_frame, self.num_frames)
        return self

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise: first_frame, num_frames, data."""
        layout = self._layout(major)
        return pack_fields({"first_frame": self.first_frame, "num_frames": self.num_frames}, layout) + self.data

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "Audio":
        """Parse an AUDIO payload; everything after the fixed fields is ``data``."""
        data = _check_bytes(data)
        values, offset = unpack_fields("Audio", data, 0, cls._layout(major))
        return cls(data=data[offset:], **values)


_AUDIO_CTX_LAYOUT = (("first_frame", "I"), ("num_frames", "H"), ("flags", "B"))
_AUDIO_CTX_FIXED = 7


class AudioCtx(Payload):
    """``num_frames`` context-coded audio tokens from audio frame ``first_frame`` (AUDIO_CTX unit, 1.1).

    ``flags`` is reserved (no bit defined in 1.1). ``data`` is the context-model coded token
    packet (part F).
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.AUDIO_CTX

    _LAYOUT: ClassVar[Layout] = _AUDIO_CTX_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = (("first_frame", "V"), ("num_frames", "V"), ("flags", "B"))

    first_frame: Uint32
    num_frames: Annotated[StrictInt, Field(ge=1, le=MAX_AUDIO_FRAMES)]
    flags: Uint8 = 0
    data: Bytes = _data_field(0, _AUDIO_CTX_FIXED)

    @model_validator(mode="after")
    def _check(self) -> "AudioCtx":
        _check_flags("AudioCtx", self.flags, 0)
        _check_audio_frames("AudioCtx", self.first_frame, self.num_frames)
        return self

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise: first_frame, num_frames, flags, data."""
        values = {"first_frame": self.first_frame, "num_frames": self.num_frames, "flags": self.flags}
        return pack_fields(values, self._layout(major)) + self.data

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "AudioCtx":
        """Parse an AUDIO_CTX payload; reserved flag bits are ignored, everything after them is data."""
        data = _check_bytes(data)
        values, offset = unpack_fields("AudioCtx", data, 0, cls._layout(major))
        values["flags"] = 0  # no bit defined in 1.1: ignored
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
    # the same bytes in 1.x and 2.0
    _LAYOUT: ClassVar[Layout] = _SIDE_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = _SIDE_LAYOUT

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

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise: fixed fields, num_refs, then each reference index as u32 (1.x and 2.0 alike)."""
        self._layout(major)
        values = {name: getattr(self, name) for name, _ in _SIDE_LAYOUT if name != "num_refs"}
        values["num_refs"] = len(self.refs)
        return pack_fields(values, _SIDE_LAYOUT) + b"".join(r.to_bytes(4, "big") for r in self.refs)

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "SideInfo":
        """Parse a SIDE_INFO payload (trailing bytes and reserved flag bits ignored; 1.x and 2.0 alike)."""
        data = _check_bytes(data)
        cls._layout(major)
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
    _LAYOUT: ClassVar[Layout] = _EOS_LAYOUT
    _LAYOUT_2: ClassVar[Layout] = (("frame_count", "V"), ("audio_frame_count", "V"), ("audio_samples", "V"))

    frame_count: FrameCount
    audio_frame_count: Uint32 = 0
    audio_samples: Uint32 = 0

    def to_bytes(self, major: int = 1) -> bytes:
        """Serialise: frame_count, audio_frame_count, audio_samples."""
        return pack_fields(self.model_dump(), self._layout(major))

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "EndOfStream":
        """Parse an END_OF_STREAM payload (trailing bytes ignored)."""
        values, _ = unpack_fields("EndOfStream", _check_bytes(data), 0, cls._layout(major))
        return cls(**values)


#: the largest REFRESH payload (magic, version, frame index and a sequence header's payload, which is at
#: most about 250 bytes in 2.1); a joining reader takes no longer REFRESH unit as a sync point, so its
#: search holds at most one such unit and spends at most this many CRC bytes per candidate (A.14)
MAX_REFRESH_PAYLOAD = 1024
#: bytes of a REFRESH payload before the frame index: "AVFC", major, minor
REFRESH_PREFIX = len(MAGIC) + 2


class Refresh(Payload):
    """A random-access point (REFRESH unit, format 2.1): the stream's version and its sequence header's
    payload, byte for byte, repeated before the key frame at ``frame_index``, where the decoder's reference
    buffer is emptied. A receiver that joins the stream late starts here (docs/bitstream.md A.14).

    Layout (major 2 only): ``"AVFC" | major u8 | minor u8 | frame_index varint | header payload``. The
    header bytes run to the end of the payload; :meth:`sequence_header` parses them.
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.REFRESH

    major: Annotated[StrictInt, Field(ge=2, le=2)] = 2
    minor: Annotated[StrictInt, Field(ge=1, le=U8)] = 1
    frame_index: FrameIndex
    header: Annotated[bytes, BeforeValidator(_as_bytes), Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> "Refresh":
        if REFRESH_PREFIX + len(pack_varint(self.frame_index)) + len(self.header) > MAX_REFRESH_PAYLOAD:
            raise LimitError(f"Refresh.header: {len(self.header)} bytes make the payload exceed "
                             f"MAX_REFRESH_PAYLOAD ({MAX_REFRESH_PAYLOAD})")
        return self

    @property
    def version(self) -> tuple[int, int]:
        """The stream's ``(major, minor)`` as the REFRESH states it."""
        return (self.major, self.minor)

    def sequence_header(self) -> SequenceHeader:
        """The repeated SequenceHeader (FormatError / LimitError on a bad field)."""
        return SequenceHeader.from_bytes(self.header, self.major)

    def to_bytes(self, major: int = 2) -> bytes:
        """Serialise: magic, major, minor, frame_index, header. FormatError unless ``major`` is 2."""
        if major != 2:
            raise FormatError(f"Refresh: a REFRESH unit exists only in format 2.1 and later, not in major {major!r}")
        return MAGIC + bytes((self.major, self.minor)) + pack_varint(self.frame_index) + self.header

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "Refresh":
        """Parse a REFRESH payload (only in major 2); FormatError on a bad magic or a major other than 2."""
        data = _check_bytes(data)
        if major != 2:
            raise FormatError(f"Refresh: a REFRESH unit exists only in format 2.1 and later, not in major {major!r}")
        if len(data) > MAX_REFRESH_PAYLOAD:
            raise LimitError(f"Refresh: payload of {len(data)} bytes exceeds MAX_REFRESH_PAYLOAD "
                             f"({MAX_REFRESH_PAYLOAD})")
        magic, offset = read_bytes("Refresh", "magic", data, 0, len(MAGIC))
        if magic != MAGIC:
            raise FormatError(f"Refresh.magic: {magic!r}, expected {MAGIC!r}")
        version, offset = unpack_fields("Refresh", data, offset, (("major", "B"), ("minor", "B")))
        frame_index, offset = read_varint("Refresh", "frame_index", data, offset)
        return cls(frame_index=frame_index, header=data[offset:], **version)


#: the most values a DECODER_PARAMS unit may carry (LimitError above it, read before anything is allocated)
MAX_DECODER_PARAMS = 1024
#: the largest magnitude of one quantized parameter delta (|q| <= 2^15 - 1)
MAX_DECODER_PARAM = (1 << 15) - 1
#: the largest step shift: a delta is ``q * 2^-shift``
MAX_DECODER_PARAM_SHIFT = 24
#: the largest Exp-Golomb order of the values' code
MAX_DECODER_PARAM_ORDER = 15
#: the adaptable sets a DECODER_PARAMS unit may name (set 1: docs/bitstream.md A.15.2)
DECODER_PARAM_SETS = (1,)


def pack_signed_golomb(values: "tuple[int, ...] | list[int]", order: int) -> bytes:
    """Signed Exp-Golomb code of order ``order`` of every value (zigzag ``u = 2v`` for ``v >= 0``, else
    ``-2v - 1``; then ``n`` zero bits and the ``n + order + 1`` bits of ``u + 2^order``, most significant
    first, where ``n = bitlen(u + 2^order) - order - 1``), the bits packed most significant first and the
    last byte padded with zero bits (docs/bitstream.md A.15.1)."""
    acc, nbits, out = 0, 0, bytearray()
    for v in values:
        u = 2 * v if v >= 0 else -2 * v - 1
        w = u + (1 << order)
        length = w.bit_length()
        n = length - order - 1
        acc = (acc << (n + length)) | w  # n zero bits, then w
        nbits += n + length
        while nbits >= 8:
            nbits -= 8
            out.append((acc >> nbits) & 0xFF)
        acc &= (1 << nbits) - 1
    if nbits:
        out.append((acc << (8 - nbits)) & 0xFF)
    return bytes(out)


def unpack_signed_golomb(data: bytes, count: int, order: int, model: str = "DecoderParams") -> tuple[int, ...]:
    """The ``count`` values of :func:`pack_signed_golomb`; FormatError when the data end inside a value, a
    value's prefix is longer than its bound allows (``|v| <= MAX_DECODER_PARAM``), the padding bits are not
    zero or bytes follow the last value's byte."""
    total = 8 * len(data)
    max_u = 2 * MAX_DECODER_PARAM
    pos, out = 0, []

    def bit(i: int) -> int:
        return (data[i >> 3] >> (7 - (i & 7))) & 1

    for j in range(count):
        n = 0
        while True:
            if pos >= total:
                raise FormatError(f"{model}.data: ends inside value {j} of {count}")
            if bit(pos):
                break
            n += 1
            pos += 1
            if n + order > max_u.bit_length():
                raise FormatError(f"{model}.data: value {j} has a prefix of more than {n - 1} zero bits "
                                  f"(values are at most {MAX_DECODER_PARAM} in magnitude)")
        length = n + order + 1
        if pos + length > total:
            raise FormatError(f"{model}.data: ends inside value {j} of {count}")
        w = 0
        for i in range(pos, pos + length):
            w = (w << 1) | bit(i)
        pos += length
        u = w - (1 << order)
        if u > max_u:
            raise FormatError(f"{model}.data: value {j} exceeds {MAX_DECODER_PARAM} in magnitude")
        out.append(u >> 1 if not u & 1 else -((u + 1) >> 1))
    if (pos + 7) // 8 != len(data):
        raise FormatError(f"{model}.data: {len(data) - (pos + 7) // 8} bytes after the last value")
    if any(bit(i) for i in range(pos, (pos + 7) // 8 * 8)):
        raise FormatError(f"{model}.data: padding bits after the last value are not zero")
    return tuple(out)


def golomb_order(values: "tuple[int, ...] | list[int]") -> int:
    """The Exp-Golomb order in 0..MAX_DECODER_PARAM_ORDER that codes ``values`` in the fewest bytes."""
    return min(range(MAX_DECODER_PARAM_ORDER + 1), key=lambda k: (len(pack_signed_golomb(values, k)), k))


class DecoderParams(Payload):
    """Instance-adaptive decoder parameters (DECODER_PARAMS unit, format 2.2): one quantized delta per
    value of the model's adaptable set ``param_set``, applied from the key frame at ``frame_index`` on
    (docs/bitstream.md A.15, E.9). A delta is ``values[i] * 2^-shift``.

    Layout (major 2 only): ``frame_index varint | param_set u8 | count varint | shift u8 | order u8 |
    data``: ``data`` is the signed Exp-Golomb code of order ``order`` of the ``count`` values
    (:func:`pack_signed_golomb`), to the end of the payload. ``order`` is the encoder's choice (the
    shortest code, :func:`golomb_order`, when not given).
    """

    UNIT_TYPE: ClassVar[UnitType] = UnitType.DECODER_PARAMS

    frame_index: FrameIndex
    param_set: Annotated[StrictInt, Field(ge=1, le=U8)] = 1
    shift: Annotated[StrictInt, Field(ge=0, le=MAX_DECODER_PARAM_SHIFT)]
    values: tuple[Annotated[StrictInt, Field(ge=-MAX_DECODER_PARAM, le=MAX_DECODER_PARAM)], ...]
    order: Optional[Annotated[StrictInt, Field(ge=0, le=MAX_DECODER_PARAM_ORDER)]] = None

    @model_validator(mode="after")
    def _check(self) -> "DecoderParams":
        if self.param_set not in DECODER_PARAM_SETS:
            raise FormatError(f"DecoderParams.param_set: unknown adaptable set {self.param_set} (defined: "
                              f"{', '.join(map(str, DECODER_PARAM_SETS))})")
        if len(self.values) > MAX_DECODER_PARAMS:
            raise LimitError(f"DecoderParams.values: {len(self.values)} values exceed MAX_DECODER_PARAMS "
                             f"({MAX_DECODER_PARAMS})")
        if self.order is None:
            object.__setattr__(self, "order", golomb_order(self.values))
        return self

    def to_bytes(self, major: int = 2) -> bytes:
        """Serialise: frame_index, param_set, count, shift, order, the coded values. FormatError unless
        ``major`` is 2."""
        if major != 2:
            raise FormatError(f"DecoderParams: a DECODER_PARAMS unit exists only in format 2.2 and later, "
                              f"not in major {major!r}")
        assert self.order is not None
        return (pack_varint(self.frame_index) + bytes((self.param_set,)) + pack_varint(len(self.values))
                + bytes((self.shift, self.order)) + pack_signed_golomb(self.values, self.order))

    @classmethod
    def from_bytes(cls, data: bytes, major: int) -> "DecoderParams":
        """Parse a DECODER_PARAMS payload (only in major 2). The count is checked against
        MAX_DECODER_PARAMS (LimitError) before any value is read."""
        data = _check_bytes(data)
        if major != 2:
            raise FormatError(f"DecoderParams: a DECODER_PARAMS unit exists only in format 2.2 and later, "
                              f"not in major {major!r}")
        frame_index, offset = read_varint("DecoderParams", "frame_index", data, 0)
        head, offset = unpack_fields("DecoderParams", data, offset, (("param_set", "B"),))
        count, offset = read_varint("DecoderParams", "count", data, offset)
        if count > MAX_DECODER_PARAMS:
            raise LimitError(f"DecoderParams.count: {count} exceeds MAX_DECODER_PARAMS ({MAX_DECODER_PARAMS})")
        rest, offset = unpack_fields("DecoderParams", data, offset, (("shift", "B"), ("order", "B")))
        if rest["order"] > MAX_DECODER_PARAM_ORDER:
            raise FormatError(f"DecoderParams.order: {rest['order']} exceeds {MAX_DECODER_PARAM_ORDER}")
        values = unpack_signed_golomb(data[offset:], count, rest["order"])
        return cls(frame_index=frame_index, values=values, **head, **rest)


#: the payload model of every known unit type.
PAYLOAD_TYPES: dict[UnitType, type[Payload]] = {
    model.UNIT_TYPE: model
    for model in (SequenceHeader, KeyFrame, Motion, Audio, SideInfo, AudioCtx, MotionPred, MotionSparse,
                  Refresh, DecoderParams, EndOfStream)
}

AnyPayload = Union[SequenceHeader, KeyFrame, Motion, Audio, SideInfo, AudioCtx, MotionPred, MotionSparse,
                   Refresh, DecoderParams, EndOfStream]


def decode_payload(unit: Unit, major: int) -> Optional[AnyPayload]:
    """Parse ``unit.payload`` with the model of its type, in the layout of the stream's major version
    ``major`` (required: a 2.0 payload read in the 1.x layout would be garbage, so there is no default;
    pass ``parsed.version[0]`` or ``StreamParser.version[0]``); None for an unknown type."""
    if not unit.known:
        return None
    return PAYLOAD_TYPES[unit.type].from_bytes(unit.payload, major)  # type: ignore[index,return-value]
