"""``avfc.encode`` and ``avfc.decode``: whole files, bytes or arrays in one call.

The streaming :class:`~avfc.codec.Encoder` / :class:`~avfc.codec.Decoder` do the
work; this module adds reading and cropping media, rate control over the whole
file (``bitrate_kbps`` counts every byte: key frames, motion, audio, headers),
and writing the results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

import numpy as np

from avfc import bitstream as bs
from avfc.codec.decoder import Decoder, Issue
from avfc.codec.encoder import Encoder, EncoderStats, analyse_clip
from avfc.config import EncoderConfig
from avfc.errors import ConfigError, FormatError, MediaError
from avfc.media import QP_RANGE, CropBox, Media, apply_crop, find_crop, read_media, write_media
from avfc.models.zoo import load_model

#: the motion strides the rate control tries, densest first, when the config leaves motion_stride open:
#: beyond 3 frames (120 ms at 25 fps) the interpolated mouth visibly lags the speech
AUTO_MOTION_STRIDES = (1, 2, 3)

PathLike = Union[str, os.PathLike]
MediaSource = Union[PathLike, bytes, Media, np.ndarray]


@dataclass
class EncodeResult:
    """What :func:`encode` produced."""

    data: bytes
    header: bs.SequenceHeader
    stats: EncoderStats
    frames: int
    duration: float  # seconds of video
    crop: CropBox
    warnings: list[str] = field(default_factory=list)
    #: the keypoints of every motion_stride-th frame were sent (chosen by the rate control unless set)
    motion_stride: int = 1

    @property
    def kbps(self) -> float:
        """Total rate: every byte of the file over the clip's duration."""
        return len(self.data) * 8 / 1000 / self.duration if self.duration > 0 else 0.0


@dataclass
class DecodeResult:
    """What :func:`decode` produced."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB at the coded size
    audio: Optional[np.ndarray]  # float32 mono, or None
    sample_rate: int
    fps: float
    header: bs.SequenceHeader
    motion: np.ndarray  # decoded integer motion (T, C)
    issues: list[Issue]


def _load_source(src: MediaSource, config: EncoderConfig, pcm: Optional[np.ndarray],
                 sample_rate: int) -> Media:
    if isinstance(src, Media):
        return src
    if isinstance(src, np.ndarray):
        return Media.from_arrays(src, config.fps, pcm, sample_rate)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return read_media(bytes(src), fps=config.fps, sample_rate=16000, max_frames=config.max_frames)
    if isinstance(src, (str, os.PathLike)):
        return read_media(src, fps=config.fps, sample_rate=16000, max_frames=config.max_frames)
    raise MediaError(f"cannot encode a {type(src).__name__}: give a path, file bytes, a Media or frames")


def prepare(media: Media, config: EncoderConfig) -> tuple[np.ndarray, CropBox]:
    """Crop and resize ``media``'s frames to the coded size; returns frames and the crop box."""
    frames = media.frames
    if config.max_frames is not None:
        frames = frames[: config.max_frames]
    box = find_crop(frames, method=config.crop)
    return apply_crop(frames, box, config.size), box


def encode(src: MediaSource, dst: Optional[PathLike] = None, *,
           config: EncoderConfig | dict | None = None,
           pcm: Optional[np.ndarray] = None, sample_rate: int = 16000,
           progress: Optional[Callable[[str, int, int], None]] = None,
           **overrides: Any) -> EncodeResult:
    """Encode a talking-face video (and its speech) to .avfc.

    Args:
        src: a media file path, the bytes of a media file, a :class:`~avfc.media.Media`, or
            frames ``(T, H, W, 3)`` uint8 RGB at ``config.fps`` (then ``pcm`` is its mono
            float32 speech at ``sample_rate``, 16 kHz).
        dst: where to write the .avfc file (optional; the bytes are returned anyway).
        config: an :class:`EncoderConfig` or a dict; keyword ``overrides`` replace its fields,
            e.g. ``encode("talk.mp4", bitrate_kbps=4, audio="codec2")``.
        progress: called as ``progress(stage, done, total)`` on long work.

    Returns:
        :class:`EncodeResult` with the bytes, the header, and bytes per unit type.
    """
    cfg = EncoderConfig.make(config, **overrides)
    media = _load_source(src, cfg, pcm, sample_rate)
    frames, box = prepare(media, cfg)
    pcm = media.audio
    if pcm is not None and media.sample_rate != 16000:
        raise MediaError(f"audio must be 16 kHz mono, got {media.sample_rate} Hz")
    warnings: list[str] = []
    if cfg.audio != "none" and pcm is None:
        warnings.append("the input has no audio track: the stream is video only")
        cfg = EncoderConfig.make(cfg, audio="none")
    if pcm is not None:
        pcm = pcm[: int(round(len(frames) / cfg.fps * 16000))]
    model = load_model(cfg.model, cfg.size)
    if cfg.motion_source == "speech":  # motion from speech sends no keypoints: nothing to analyse
        keypoints = np.zeros((len(frames), model.motion_channels), np.int32)
    else:
        keypoints = analyse_clip(model, frames, cfg.kp_precision, cfg.kp_hysteresis, progress)
    duration = len(frames) / cfg.fps
    source_size = (int(media.frames.shape[2]), int(media.frames.shape[1]))

    def run(key_bytes: Optional[int], qp_override: Optional[int] = None) -> Encoder:
        c = cfg if qp_override is None else EncoderConfig.make(cfg, key_qp=qp_override)
        enc = Encoder(c, source_size=source_size, crop=box, frame_count=len(frames),
                      key_bytes=key_bytes, model=model)
        # one packet of frames, then its audio: the units come out in time order, as a live encoder's
        step = cfg.packet_frames
        for i in range(0, len(frames), step):
            enc.push_frames(frames[i:i + step], keypoints=keypoints[i:i + step])
            if pcm is not None and enc.audio_codec is not None:
                end = len(pcm) if i + step >= len(frames) else (i + step) * 16000 // cfg.fps
                enc.push_audio(pcm[i * 16000 // cfg.fps:end])
        if len(frames) == 0 and pcm is not None and enc.audio_codec is not None:
            enc.push_audio(pcm)
        enc.close()
        return enc

    if cfg.bitrate_kbps is not None:
        # pass 1: everything but the key pictures is independent of their quality: measure it
        budget = int(cfg.bitrate_kbps * 1000 / 8 * duration)
        coarsest = QP_RANGE[cfg.key_codec][1]
        if cfg.motion_stride is None and cfg.motion_source == "transmitted":
            # the densest motion whose keypoints fit their share of the file (the rest is key picture)
            for stride in AUTO_MOTION_STRIDES:
                cfg = EncoderConfig.make(cfg, motion_stride=stride)
                probe = run(None, qp_override=coarsest)
                if probe.stats.bytes_by_type.get("motion", 0) <= cfg.motion_share * budget:
                    break
        else:
            probe = run(None, qp_override=coarsest)
        n_keys = probe.stats.units_by_type.get("key_frame", 1)
        runs = [probe]
        # the coarsest key picture, from pass 1
        smallest = sum(probe.stats.key_picture_bytes) // max(len(probe.stats.key_picture_bytes), 1)
        for attempt in range(3):
            key_total = probe.stats.bytes_by_type.get("key_frame", 0)
            key_overhead = key_total - sum(probe.stats.key_picture_bytes)
            per_key = (budget - (probe.stats.total_bytes - key_total) - key_overhead) // max(n_keys, 1)
            if per_key < smallest:
                if attempt == 0:
                    warnings.append(
                        f"--bitrate {cfg.bitrate_kbps} kbps cannot be reached: motion, audio and the smallest "
                        f"key frame{'s' if n_keys > 1 else ''} already take "
                        f"{probe.stats.total_bytes * 8 / 1000 / duration:.2f} kbps")
                break
            runs.append(run(per_key))
            if runs[-1].stats.total_bytes <= budget:
                break
            # over budget: the key quality changed what else is sent (the number of key frames under
            # the adaptive policy, the packets motion_hold holds or moves): re-plan from this run
            probe = runs[-1]
            n_keys = probe.stats.units_by_type.get("key_frame", 1)
        # the fullest run within the budget, else the smallest
        fits = [e for e in runs if e.stats.total_bytes <= budget]
        enc = (max(fits, key=lambda e: e.stats.total_bytes) if fits
               else min(runs, key=lambda e: e.stats.total_bytes))
    else:
        enc = run(None)
    data = enc.read()
    if dst is not None:
        Path(dst).write_bytes(data)
    return EncodeResult(data=data, header=enc.header, stats=enc.stats, frames=len(frames),
                        duration=duration, crop=box, warnings=warnings, motion_stride=enc.motion_stride)


def _read_stream(src: Union[PathLike, bytes, BinaryIO]) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, (str, os.PathLike)):
        try:
            return Path(src).read_bytes()
        except OSError as e:
            raise FormatError(f"cannot read {src}: {e.strerror}") from None
    if hasattr(src, "read"):
        return src.read()
    raise FormatError(f"cannot decode a {type(src).__name__}: give a path, bytes or a binary file")


def decode(src: Union[PathLike, bytes, BinaryIO], dst: Optional[PathLike] = None, *,
           device: str = "cpu", progress: Optional[Callable[[str, int, int], None]] = None,
           conceal_audio: str = "repeat", conceal_motion: str = "hold") -> DecodeResult:
    """Decode an .avfc stream to frames (at the coded size) and audio.

    Args:
        src: a path, the bytes, or a binary file object of an .avfc stream.
        dst: optionally write the result: ``.mp4`` (video + audio) or ``.wav`` (audio only).
        device: torch device for the generator.
        conceal_audio: how lost Codec2 frames are filled: ``"repeat"`` the last received one (up to
            one second), ``"joint"`` rebuilt from the motion and the audio around them by the joint
            audio-video model of :mod:`avfc.avcc.conceal` (700C streams of a model it was trained for;
            measured worse than repeating, docs/results.md), ``"none"`` silence. Opus streams use
            Opus' own concealment.
        conceal_motion: how frames whose motion packet is lost are drawn: ``"hold"`` the last output
            frame, ``"joint"`` from keypoints the same joint model samples from the audio of those
            frames and the motion before them (measured in docs/results.md).

    Damaged units are skipped and reported in ``result.issues``; raises
    :class:`~avfc.errors.AvfcError` only when nothing can be decoded (no intact header,
    unknown model).
    """
    data = _read_stream(src)
    dec = Decoder(device=device, conceal_audio=conceal_audio, conceal_motion=conceal_motion)
    chunk = 1 << 14
    frames: list[np.ndarray] = []
    for i in range(0, max(len(data), 1), chunk):
        dec.push(data[i:i + chunk])
        frames.append(dec.pull_frames())
        if progress and dec.header is not None and dec.header.frame_count:
            progress("decode", dec._next_out, int(dec.header.frame_count))
    dec.close()
    frames.append(dec.pull_frames())
    assert dec.header is not None
    frames = [f for f in frames if len(f)]
    video = np.concatenate(frames) if frames else np.zeros((0, dec.header.height, dec.header.width, 3), np.uint8)
    audio = dec.audio()
    fps = dec.header.fps_num / dec.header.fps_den
    result = DecodeResult(frames=video, audio=audio, sample_rate=int(dec.header.audio_sample_rate) or 16000,
                          fps=fps, header=dec.header, motion=dec.motion_array(), issues=dec.issues)
    if dst is not None:
        write_decoded(result, dst)
    return result


def write_decoded(result: DecodeResult, dst: PathLike) -> None:
    """Write a decode result as .mp4 (video and audio) or .wav (audio only)."""
    suffix = Path(dst).suffix.lower()
    if suffix == ".wav":
        if result.audio is None:
            raise MediaError("the stream has no audio to write to a .wav file")
        from avfc.media import write_wav
        write_wav(dst, result.audio, result.sample_rate)
        return
    if suffix not in (".mp4", ".mkv", ".mov"):
        raise ConfigError(f"cannot write {suffix or 'a file without suffix'}: use .mp4 or .wav")
    write_media(dst, result.frames, int(round(result.fps)), result.audio, result.sample_rate)
