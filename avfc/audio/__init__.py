"""Speech as token streams: Codec2 and Opus, packed bit-exactly into AUDIO units.

See docs/bitstream.md (part C) for the token definitions, the packing and the delay handling.
"""

from avfc.audio.base import (
    SAMPLE_RATE,
    AudioCodec,
    AudioDecoder,
    AudioEncoder,
    CodecId,
    Token,
    bitrate_bps,
    split_packets,
)
from avfc.audio.codec2 import Codec2Codec
from avfc.audio.opus import OpusCodec
from avfc.audio.registry import make_audio_codec, make_audio_codec_by_name

__all__ = [
    "SAMPLE_RATE",
    "AudioCodec",
    "AudioDecoder",
    "AudioEncoder",
    "Codec2Codec",
    "CodecId",
    "OpusCodec",
    "Token",
    "bitrate_bps",
    "make_audio_codec",
    "make_audio_codec_by_name",
    "split_packets",
]
