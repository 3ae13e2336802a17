"""Media I/O, the face-aware square crop and the intra key-frame codec.

- :mod:`avfc.media.io`: read anything FFmpeg reads at a fixed frame rate and sample rate;
  write mp4 / wav.
- :mod:`avfc.media.stream`: the same, cropped and resized, a block at a time in bounded memory.
- :mod:`avfc.media.crop`: one fixed square crop box per clip, around the face.
- :mod:`avfc.media.keyframe`: one RGB picture <-> a compact AV1 or HEVC intra payload.
- :mod:`avfc.media.yuv`: the integer RGB <-> YUV 4:2:0 conversion the key-frame codec uses.
"""

from avfc.media.crop import CropBox, CropMethod, apply_crop, find_crop
from avfc.media.io import Media, VideoWriter, as_array, load_audio, read_media, write_media, write_wav
from avfc.media.keyframe import (
    CODECS,
    DEFAULT_QP,
    QP_RANGE,
    IntraCache,
    decode_intra,
    encode_intra,
    encode_intra_to_size,
)
from avfc.media.stream import MediaStream, open_media
from avfc.media.yuv import rgb_to_yuv420, yuv420_to_rgb

__all__ = [
    "CODECS",
    "DEFAULT_QP",
    "QP_RANGE",
    "CropBox",
    "CropMethod",
    "IntraCache",
    "Media",
    "MediaStream",
    "VideoWriter",
    "apply_crop",
    "as_array",
    "decode_intra",
    "encode_intra",
    "encode_intra_to_size",
    "find_crop",
    "load_audio",
    "open_media",
    "read_media",
    "rgb_to_yuv420",
    "write_media",
    "write_wav",
    "yuv420_to_rgb",
]
