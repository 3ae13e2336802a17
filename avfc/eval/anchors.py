"""Conventional anchors for ``avfc bench``: low-delay x265 / SVT-AV1, Opus, Codec2, and a held key frame.

Every anchor works on the benchmark's reference (RGB frames at the coded size, 16 kHz mono
audio). Each one is a pair of functions, ``encode_*`` returning exactly the bytes the rate
counts and ``decode_*`` turning those bytes (and nothing else) back into media, so the
caller can time and measure the two stages apart.

Video anchors (:func:`encode_video_anchor` / :func:`decode_video_packets`), through PyAV's
FFmpeg, without a container:

* ``"x265"``: libx265, ``tune=zerolatency`` (no B-frames, no lookahead, no cu-tree, one
  frame thread), constant QP ``qp`` (its I frame at about ``qp - 3`` by x265's default
  ip-ratio), ``keyint=-1``: one intra frame, then P frames only. Decoder: FFmpeg's ``hevc``.
* ``"svtav1"``: libsvtav1, ``pred-struct=1`` (low delay: forward references only, frames
  leave the encoder in display order), ``rc=0`` with ``aq-mode=0`` (constant QP ``qp``),
  ``keyint`` beyond the clip and no scene-change detection: one key frame. Decoder:
  ``libdav1d``.

FFmpeg's wrappers ignore unknown encoder parameters with a warning, so the settings above
were checked in the encoders' own configuration logs (x265 4.2: "Keyframe: disabled,
bframes 0, Lookahead 0, CQP"; SVT-AV1 4.1: "pred struct: low delay, CQP"). The tests check
the observable part: one packet per frame, in display order, a single key frame.

Colour: RGB is converted to BT.601 full-range YUV 4:2:0 and back with avfc's integer code
(:mod:`avfc.media.yuv`), the conversion avfc's key frames use, so no codec gains or loses
by a different conversion. The rate counts the raw elementary stream: the sum of the
encoder's packet sizes (parameter sets / sequence header included, no container). The
lowest rate a codec reaches at a size is its rate at the largest QP of ``QP_LIMITS``.

Audio anchors (:func:`encode_audio_anchor` / :func:`decode_audio_anchor`) use
:mod:`avfc.audio` (Opus 6-24 kbit/s CBR in 40 ms packets, Codec2 700C..3200); the rate
counts ``codec.pack(tokens)`` of the whole clip as one unit: the token payload plus at
most a few framing bytes.

The do-nothing baseline (:func:`encode_held_key_frame` / :func:`decode_held_key_frame`):
the first frame intra coded with AV1 at the best quality that fits a byte budget
(:func:`avfc.media.encode_intra_to_size`), shown for every frame of the clip. Its rate
counts the compact AV1 payload only (no container).
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Literal

import av
from av.video.codeccontext import VideoCodecContext
import numpy as np

from avfc.audio import make_audio_codec_by_name
from avfc.errors import ConfigError, MediaError
from avfc.media import CODECS, decode_intra, encode_intra_to_size
from avfc.media.keyframe import keep_scheduling
from avfc.media.yuv import rgb_to_yuv420, yuv420_to_rgb

__all__ = [
    "AUDIO_ANCHORS",
    "DEFAULT_PRESETS",
    "QP_LIMITS",
    "VIDEO_ANCHORS",
    "decode_audio_anchor",
    "decode_held_key_frame",
    "decode_video_packets",
    "encode_audio_anchor",
    "encode_held_key_frame",
    "encode_video_anchor",
]

VideoAnchor = Literal["x265", "svtav1"]
VIDEO_ANCHORS: tuple[str, ...] = ("x265", "svtav1")
AUDIO_ANCHORS: tuple[str, ...] = ("opus", "codec2")
#: Valid constant QP per video anchor (inclusive); the largest gives the lowest reachable rate.
QP_LIMITS: dict[str, tuple[int, int]] = {"x265": (0, 51), "svtav1": (1, 63)}
#: Encoder speed presets used unless the caller names one: the strong end, since a benchmark
#: owes its anchors their best. At 256x256 on face clips, x265 veryslow saves about 1 % of the
#: bytes of slow at 4x its time and SVT-AV1 preset 4 about 6 % of preset 6 at 2x; both still
#: encode 100 frames in a few seconds.
DEFAULT_PRESETS: dict[str, str] = {"x265": "veryslow", "svtav1": "4"}
#: Clip limits for the anchors (frames are held in memory; one frame per packet).
MAX_FRAMES = 100_000
MAX_SAMPLES = 16000 * 3600
MIN_SIDE, MAX_SIDE = 64, 4096

_ENCODERS = {"x265": "libx265", "svtav1": "libsvtav1"}
_DECODERS = {"x265": "hevc", "svtav1": "libdav1d"}


def _check_frames(frames: object) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise MediaError(f"frames must be a uint8 array (T, H, W, 3), got {got}")
    t, h, w = frames.shape[:3]
    if not 1 <= t <= MAX_FRAMES:
        raise MediaError(f"an anchor codes 1..{MAX_FRAMES} frames, got {t}")
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE) or h % 2 or w % 2:
        raise MediaError(f"anchor frames need even sides in {MIN_SIDE}..{MAX_SIDE}, got {w}x{h}")
    return frames


def _check_anchor(codec: str, qp: int) -> None:
    if codec not in VIDEO_ANCHORS:
        raise ConfigError(f"unknown video anchor {codec!r}; expected one of {VIDEO_ANCHORS}")
    lo, hi = QP_LIMITS[codec]
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not lo <= qp <= hi:
        raise ConfigError(f"{codec} qp must be an integer in {lo}..{hi}, got {qp!r}")


def _options(codec: str, qp: int, frames: int, preset: str) -> dict[str, str]:
    if codec == "x265":
        params = f"qp={qp}:keyint=-1:scenecut=0:bframes=0:rc-lookahead=0:info=0:log-level=error"
        return {"preset": preset, "tune": "zerolatency", "x265-params": params}
    params = f"pred-struct=1:rc=0:qp={qp}:aq-mode=0:keyint={frames + 1}:scd=0:film-grain=0"
    return {"preset": preset, "svtav1-params": params}


def encode_video_anchor(
    frames: np.ndarray, codec: VideoAnchor, qp: int, fps: int = 25, preset: str | None = None
) -> list[bytes]:
    """Code RGB frames with a low-delay conventional encoder at constant QP.

    Args:
        frames: uint8 (T, H, W, 3) RGB, even sides in ``MIN_SIDE..MAX_SIDE``.
        codec: ``"x265"`` or ``"svtav1"`` (settings in the module docs).
        qp: constant QP in ``QP_LIMITS[codec]``.
        fps: frame rate signalled to the encoder (its rate control is off; it is recorded only).
        preset: encoder speed preset; ``None`` uses ``DEFAULT_PRESETS[codec]``.

    Returns:
        The packets in coding order (one per frame), as bytes.

    Raises:
        ConfigError: unknown codec, QP out of range, bad fps.
        MediaError: bad frames, or the encoder fails or drops frames.
    """
    _check_anchor(codec, qp)
    frames = _check_frames(frames)
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or not 1 <= fps <= 240:
        raise ConfigError(f"fps must be an integer in 1..240, got {fps!r}")
    t, h, w = frames.shape[:3]
    if codec == "svtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only, unless the user chose a level
    name = _ENCODERS[codec]
    packets: list[bytes] = []
    try:
        ctx = av.CodecContext.create(name, "w")
        assert isinstance(ctx, VideoCodecContext)  # (every anchor encoder is a video codec)
        ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
        ctx.time_base = Fraction(1, int(fps))
        ctx.framerate = Fraction(int(fps))
        ctx.gop_size = t + 1
        ctx.max_b_frames = 0
        ctx.options = _options(codec, int(qp), t, str(preset or DEFAULT_PRESETS[codec]))
        with keep_scheduling():  # libsvtav1 run by root leaves this thread real-time otherwise
            for i, rgb in enumerate(frames):
                y, u, v = rgb_to_yuv420(rgb)
                picture = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
                frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
                frame.pts = i
                packets.extend(bytes(p) for p in ctx.encode(frame))
            packets.extend(bytes(p) for p in ctx.encode(None))
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"{name} failed to encode {t} frames of {w}x{h}: {exc}") from exc
    if len(packets) != t:
        raise MediaError(f"{name} returned {len(packets)} packets for {t} frames")
    return packets


def decode_video_packets(packets: list[bytes], codec: VideoAnchor, width: int, height: int) -> np.ndarray:
    """Decode an anchor's packets with PyAV to RGB frames (one decoder thread).

    Raises:
        ConfigError: unknown codec.
        MediaError: the decoder fails, or a picture has the wrong size or format.
    """
    if codec not in VIDEO_ANCHORS:
        raise ConfigError(f"unknown video anchor {codec!r}; expected one of {VIDEO_ANCHORS}")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise MediaError(f"anchor size must be in {MIN_SIDE}..{MAX_SIDE} a side, got {width}x{height}")
    out: list[np.ndarray] = []
    try:
        ctx = av.CodecContext.create(_DECODERS[codec], "r")
        assert isinstance(ctx, VideoCodecContext)  # (every anchor decoder is a video codec)
        ctx.thread_count = 1
        # refuse larger pictures before allocating them (HEVC may code sizes rounded up to 8)
        ctx.options = {"max_pixels": str((width + 63) // 64 * 64 * ((height + 63) // 64 * 64))}
        decoded = [f for p in packets for f in ctx.decode(av.Packet(p))]
        decoded += list(ctx.decode(None))
        for frame in decoded:
            if frame.format.name != "yuv420p" or (frame.width, frame.height) != (width, height):
                raise MediaError(f"{codec} decoded a {frame.width}x{frame.height} {frame.format.name} picture, "
                                 f"expected {width}x{height} yuv420p")
            planes = [
                np.frombuffer(memoryview(pl), np.uint8).reshape(pl.height, pl.line_size)[:, : pl.width] for pl in frame.planes
            ]
            out.append(yuv420_to_rgb(*planes))
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"{codec} packets do not decode: {exc}") from exc
    if len(out) != len(packets):
        raise MediaError(f"{codec} decoded {len(out)} pictures from {len(packets)} packets")
    return np.stack(out) if out else np.zeros((0, height, width, 3), np.uint8)


def encode_audio_anchor(pcm: np.ndarray, codec: str, mode: int | str) -> bytes:
    """Code 16 kHz mono speech with Opus (``mode`` in bit/s) or Codec2 (``"700C"``..``"3200"``).

    Returns ``codec.pack(tokens)`` of the whole clip: the bytes the rate counts.

    Raises:
        ConfigError: unknown codec or mode.
        MediaError: bad PCM.
    """
    ac = make_audio_codec_by_name(codec, mode)
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1 or pcm.size == 0:
        raise MediaError(f"audio must be a non-empty 1-D array, got {getattr(pcm, 'shape', type(pcm).__name__)}")
    return ac.pack(ac.encode(pcm))


def decode_audio_anchor(data: bytes, codec: str, mode: int | str, num_samples: int) -> np.ndarray:
    """Decode :func:`encode_audio_anchor`'s bytes to ``num_samples`` float32 samples at 16 kHz.

    Raises:
        ConfigError: unknown codec or mode, bad ``num_samples``.
        FormatError, EntropyError: ``data`` is not what the encoder wrote.
    """
    ac = make_audio_codec_by_name(codec, mode)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or not 1 <= num_samples <= MAX_SAMPLES:
        raise ConfigError(f"num_samples must be an integer in 1..{MAX_SAMPLES}, got {num_samples!r}")
    n = int(num_samples)
    return ac.decode(ac.unpack(data, ac.num_frames(n)), n)


def encode_held_key_frame(picture: np.ndarray, max_bytes: int, codec: Literal["av1", "hevc"] = "av1") -> tuple[bytes, int, bool]:
    """The do-nothing baseline's only payload: one picture at the best quality within ``max_bytes``.

    Returns:
        ``(payload, qp, fits)``. When not even the coarsest QP fits, ``payload`` is the
        coarsest picture and ``fits`` is False.

    Raises:
        ConfigError: bad codec or ``max_bytes``.
        MediaError: bad picture or an encoder failure.
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown key-frame codec {codec!r}; expected one of {CODECS}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    payload, qp = encode_intra_to_size(picture, codec, int(max_bytes), or_coarsest=True)
    return payload, int(qp), len(payload) <= max_bytes


def decode_held_key_frame(
    payload: bytes, count: int, width: int, height: int, codec: Literal["av1", "hevc"] = "av1"
) -> np.ndarray:
    """The baseline's decoded video: the picture repeated ``count`` times (a read-only view).

    Raises:
        ConfigError: bad codec, size or count.
        FormatError, MediaError: the payload does not decode.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_FRAMES:
        raise ConfigError(f"count must be an integer in 1..{MAX_FRAMES}, got {count!r}")
    picture = decode_intra(payload, codec, width, height)
    return np.broadcast_to(picture, (int(count), *picture.shape))
