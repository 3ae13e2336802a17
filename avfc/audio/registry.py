"""Build an :class:`AudioCodec` from a header's ``(codec_id, param)`` or from a name."""

from __future__ import annotations

from avfc.audio.base import AudioCodec, CodecId
from avfc.audio.codec2 import MODES, Codec2Codec
from avfc.audio.opus import OpusCodec
from avfc.errors import ConfigError


def make_audio_codec(codec_id: int, param: int) -> AudioCodec:
    """The codec a sequence header names: ``codec_id`` 1 = Codec2 (param = mode in bit/s,
    700 for 700C), 2 = Opus (param = bitrate in bit/s). ConfigError on anything else."""
    if codec_id == CodecId.CODEC2:
        return Codec2Codec(param)
    if codec_id == CodecId.OPUS:
        return OpusCodec(param)
    raise ConfigError(f"unknown audio codec id {codec_id!r} (1 = Codec2, 2 = Opus)")


def _codec2_param(mode: int | str) -> int:
    """'700C' / '700c' / '700' / 700 -> 700; '1300' / 1300 -> 1300; ..."""
    if isinstance(mode, str):
        text = mode.strip().upper()
        if text == "700C":
            return 700
        if text.isdigit() and int(text) in MODES:
            return int(text)
    elif isinstance(mode, int) and not isinstance(mode, bool) and mode in MODES:
        return mode
    raise ConfigError(f"unknown Codec2 mode {mode!r}; modes: 700C, 1300, 1600, 3200")


def make_audio_codec_by_name(name: str, mode: int | str) -> AudioCodec:
    """``("codec2", "700C" | "1300" | "1600" | "3200")`` or ``("opus", bitrate in bit/s)``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "codec2":
        return Codec2Codec(_codec2_param(mode))
    if key == "opus":
        if isinstance(mode, str) and mode.strip().isdigit():
            mode = int(mode.strip())
        return OpusCodec(mode)  # type: ignore[arg-type]  # OpusCodec checks the type
    raise ConfigError(f"unknown audio codec {name!r} (codec2, opus)")
