"""Reading and writing media through PyAV (FFmpeg) and soundfile.

:func:`read_media` turns anything FFmpeg reads into a :class:`Media`: RGB frames at a fixed
frame rate and mono float32 audio at a fixed sample rate, cut to the same duration.

Time model. Time 0 of the output is the presentation time of the source's first video frame
plus ``start``. Output frame ``i`` shows the source frame on screen at ``i / fps``: the last
source frame whose timestamp is at most ``i / fps + 1 ms`` (frames are dropped or repeated,
never blended; the 1 ms absorbs rounded timestamps). The clip ends at the last source frame's
timestamp plus its duration. Audio sample ``n`` is the source audio at ``n / sample_rate`` on
the same clock, so audio and video stay in sync even when the streams start at different
times; audio missing at either end is zeros. Gaps inside the audio stream are not filled.

Memory. Decoded frames are bounded by ``MAX_DECODED_BYTES`` (T x H x W x 3): a longer input is
refused (before decoding when its duration is known) unless ``max_frames`` cuts it.
"""

from __future__ import annotations

import io
import math
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import av
import numpy as np
import soundfile as sf

from avfc.errors import ConfigError, MediaError

#: Decoded frames (T x H x W x 3 bytes) above this are refused (4 GiB).
MAX_DECODED_BYTES = 4 << 30
#: Largest accepted source picture side.
MAX_SIDE = 8192
#: Longest audio :func:`load_audio` accepts, in seconds.
MAX_AUDIO_SECONDS = 3600
#: Accepted output frame rates and sample rates (inclusive).
FPS_RANGE = (1, 240)
SAMPLE_RATE_RANGE = (1000, 192000)
#: Suffixes :func:`write_media` writes as H.264 + AAC; ``.wav`` writes audio only.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
#: what :class:`VideoWriter` writes to a file object that is not sought (a pipe): Matroska or WAV
STREAM_FORMATS = ("mkv", "wav")

_TOLERANCE = Fraction(1, 1000)  # source timestamps may be rounded by up to 1 ms
_MAX_BAD_PACKETS = 8

Source = str | os.PathLike | bytes


@dataclass
class Media:
    """Decoded media: frames at a fixed rate and, optionally, mono audio of the same duration.

    Attributes:
        frames: uint8 (T, H, W, 3) RGB, T >= 1.
        fps: frames per second.
        audio: float32 (N,) mono in [-1, 1], or None for video-only media. From
            :func:`read_media`, N = round(T * sample_rate / fps).
        sample_rate: audio samples per second (kept even when ``audio`` is None).
        source_size: (width, height) of the source video as displayed.
    """

    frames: np.ndarray
    fps: int
    audio: np.ndarray | None
    sample_rate: int
    source_size: tuple[int, int]

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Duration in seconds, T / fps."""
        return self.num_frames / self.fps

    @classmethod
    def from_arrays(
        cls,
        frames: np.ndarray,
        fps: int,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
    ) -> Media:
        """Build a :class:`Media` from arrays, checking them; ``source_size`` is the frame size.

        Args:
            frames: uint8 (T, H, W, 3) RGB with T >= 1.
            fps: frame rate, an integer in ``FPS_RANGE``.
            audio: None, or a 1-D float32/float64 array of finite values in [-1, 1]
                (converted to float32).
            sample_rate: an integer in ``SAMPLE_RATE_RANGE``.

        Raises:
            MediaError: a wrong dtype, shape or value.
        """
        _check_frames(frames)
        _check_int("fps", fps, FPS_RANGE, MediaError)
        _check_int("sample_rate", sample_rate, SAMPLE_RATE_RANGE, MediaError)
        checked_audio = None if audio is None else _check_audio(audio)
        height, width = frames.shape[1:3]
        return cls(frames, int(fps), checked_audio, int(sample_rate), (int(width), int(height)))


# --- checks ---------------------------------------------------------------------------------


def as_array(x: Any, what: str) -> Any:
    """``x`` as a numpy array when it is a torch tensor (detached, moved to the CPU; half and bfloat16
    speech as float32); anything else as it is, for the checks of :class:`Media` to judge. torch is not
    imported here: a tensor can only exist when the caller has imported it."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(x, torch.Tensor):
        return x
    t = x.detach().cpu()
    if what == "pcm" and t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as e:
        raise MediaError(f"{what}: cannot read a {t.dtype} tensor as an array ({e})") from None


def _describe(value: object) -> str:
    return f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__


def _check_frames(frames: object) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise MediaError(f"frames must be a uint8 array (T, H, W, 3), got {_describe(frames)}")
    if min(frames.shape[:3]) < 1:
        raise MediaError(f"frames must not be empty, got shape {frames.shape}")


def _check_int(name: str, value: object, bounds: tuple[int, int], error: type[Exception]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not bounds[0] <= value <= bounds[1]:
        raise error(f"{name} must be an integer in {bounds[0]}..{bounds[1]}, got {value!r}")


def _check_audio(audio: object) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.dtype not in (np.float32, np.float64) or audio.ndim != 1:
        raise MediaError(f"audio must be a float32 array (N,), got {_describe(audio)}")
    if not np.all(np.isfinite(audio)):
        raise MediaError("audio holds NaN or infinite samples")
    if audio.size and float(np.max(np.abs(audio))) > 1.0:
        raise MediaError("audio samples must lie in [-1, 1]")
    return audio.astype(np.float32, copy=False)


# --- reading --------------------------------------------------------------------------------


def _name(src: Source) -> str:
    return f"<{len(src)} bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src)


def _open(src: Source) -> av.container.InputContainer:
    if isinstance(src, (bytes, bytearray, memoryview)):
        target: object = io.BytesIO(bytes(src))
    else:
        try:
            path = Path(os.fspath(src))
        except TypeError as exc:
            raise MediaError(f"media source must be a path or bytes, got {type(src).__name__}") from exc
        if not path.is_file():
            raise MediaError(f"no such media file: {path}")
        target = str(path)
    try:
        return av.open(target, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot read media {_name(src)}: {exc}") from exc


def _seconds(pts: int | None, time_base: Fraction | None) -> Fraction | None:
    if pts is None or time_base is None:
        return None
    return pts * Fraction(time_base)


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, when: Fraction) -> None:
    """Seek to a key frame at or before ``when`` seconds (a no-op at the very start)."""
    if when <= 0 or not stream.time_base:
        return
    try:
        container.seek(int(when / Fraction(stream.time_base)), stream=stream, backward=True)
    except av.FFmpegError:
        pass  # not seekable: decode from the start and skip up to ``when``


def _decode(container: av.container.InputContainer, stream: av.stream.Stream, src: Source) -> Iterator:
    """Decode ``stream``, skipping up to ``_MAX_BAD_PACKETS`` packets the decoder rejects.

    Decoders may reject the first packets after a seek (an MPEG audio frame cut in half);
    a stream that keeps failing is broken and raises MediaError.
    """
    bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            bad += 1
            if bad > _MAX_BAD_PACKETS:
                raise MediaError(f"cannot decode the {stream.type} of {_name(src)}: {exc}") from exc
            continue
        yield from frames


class _FrameRateConverter:
    """Picks, for each output time ``t0 + i / fps``, the source frame on screen at that time.

    Output frames collect in ``out``; a streaming caller may take them from there after each
    :meth:`push` (``count`` keeps counting all frames emitted, ``full`` stops at ``limit``).
    """

    def __init__(self, t0: Fraction, fps: int, limit: int, convert: Callable[[av.VideoFrame], object]):
        self.target = t0
        self.step = Fraction(1, fps)
        self.limit = limit
        self.convert = convert
        self.out: list = []
        self.count = 0
        self.held: tuple[Fraction, av.VideoFrame] | None = None
        self.held_rgb: object | None = None

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def _emit_until(self, when: Fraction) -> None:
        while self.held is not None and self.target + _TOLERANCE < when and not self.full:
            if self.held_rgb is None:  # convert each source frame once, however often it repeats
                self.held_rgb = self.convert(self.held[1])
            self.out.append(self.held_rgb)
            self.count += 1
            self.target += self.step

    def push(self, when: Fraction, frame: av.VideoFrame) -> None:
        """Add the next decoded source frame, shown from ``when`` on."""
        self._emit_until(when)
        # a timestamp going backwards (broken file): the new picture replaces the held one
        start = when if self.held is None else max(when, self.held[0])
        self.held, self.held_rgb = (start, frame), None

    def finish(self, end: Fraction) -> None:
        """The last source frame stays on screen until ``end``."""
        self._emit_until(end)


def _rgb_converter(width: int, height: int, rotation: int) -> Callable[[av.VideoFrame], np.ndarray]:
    def convert(frame: av.VideoFrame) -> np.ndarray:
        kwargs: dict[str, Any] = {"src_color_range": frame.color_range} if frame.color_range else {}
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height, **kwargs)
        return np.rot90(rgb, k=rotation // 90) if rotation else rgb

    return convert


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    """Stack frames into one array, releasing each decoded frame once copied (peak ~1x)."""
    out = np.empty((len(frames), *frames[0].shape), dtype=np.uint8)
    frames.reverse()
    for i in range(out.shape[0]):
        out[i] = frames.pop()
    return out


class _VideoReader:
    """The first video stream of ``src`` at ``fps``: the frame loop that :func:`read_media` and the
    streaming reader (:mod:`avfc.media.stream`) share, so both give the same frames.

    Opening checks the input (MediaError: missing, not media, no video stream, a size outside
    ``MAX_SIDE``) and reads what the container says (``width``, ``height``, ``duration``,
    ``rate``); :meth:`frames` then decodes, one output frame at a time.
    """

    def __init__(self, src: Source, fps: int, start: Fraction):
        self.src, self.fps, self.start = src, fps, start
        self.container = _open(src)
        try:
            if not self.container.streams.video:
                what = "audio-only input" if self.container.streams.audio else "no video stream in"
                raise MediaError(f"{what} {_name(src)}: a video stream is required")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            self.width, self.height = self.stream.codec_context.width, self.stream.codec_context.height
            if not (0 < self.width <= MAX_SIDE and 0 < self.height <= MAX_SIDE):
                raise MediaError(
                    f"{_name(src)}: video size {self.width}x{self.height} is outside 1..{MAX_SIDE} a side"
                )
        except BaseException:
            self.container.close()
            raise
        #: seconds of video the container declares (None: unknown)
        self.duration = _seconds(self.stream.duration, self.stream.time_base)
        if self.duration is None and self.container.duration is not None:
            self.duration = Fraction(self.container.duration, av.time_base)
        #: the source's average frame rate (None: unknown)
        self.rate: Fraction | None = Fraction(self.stream.average_rate) if self.stream.average_rate else None
        #: source time of output frame 0 and the display rotation: known once a frame is decoded
        self.t0: Fraction | None = None
        self.rotation = 0

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as displayed (after the rotation, known once a frame is decoded)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def rgb_converter(self) -> Callable[[av.VideoFrame], np.ndarray]:
        """The conversion of a decoded frame to displayed RGB (call once a frame is decoded)."""
        return _rgb_converter(self.width, self.height, self.rotation)

    def frames(self, limit: int, convert: Callable[[av.VideoFrame], object] | None = None) -> Iterator:
        """Output frames at ``fps`` from ``start`` on, at most ``limit`` of them, as ``convert`` makes
        them (default: uint8 RGB (H, W, 3) as displayed; a repeated source frame is the same object).

        Raises:
            MediaError: the video cannot be decoded.
        """
        container, stream, src = self.container, self.stream, self.src
        # time 0 is the stream's start time; without one, the first decoded frame's time
        # (and then no seek, which would lose that frame)
        origin = _seconds(stream.start_time, stream.time_base)
        if origin is not None:
            _seek(container, stream, origin + self.start)

        period = 1 / self.rate if self.rate else Fraction(1, self.fps)
        converter: _FrameRateConverter | None = None
        last_duration = period
        try:
            for index, frame in enumerate(_decode(container, stream, src)):
                time_base = frame.time_base or stream.time_base
                when = _seconds(frame.pts, time_base)
                if when is None:  # no timestamps: assume a constant rate
                    when = (origin or Fraction(0)) + index * period
                if converter is None:
                    origin = when if origin is None else origin
                    self.rotation = round(frame.rotation / 90) * 90 % 360
                    self.t0 = origin + self.start
                    converter = _FrameRateConverter(self.t0, self.fps, limit, convert or self.rgb_converter())
                last_duration = _seconds(frame.duration, time_base) or period
                converter.push(when, frame)
                yield from converter.out
                converter.out.clear()
                if converter.full:
                    break
            else:
                if converter is not None and converter.held is not None:
                    converter.finish(converter.held[0] + last_duration)
                    yield from converter.out
                    converter.out.clear()
        except av.FFmpegError as exc:
            raise MediaError(f"cannot decode the video of {_name(src)}: {exc}") from exc

    def close(self) -> None:
        self.container.close()


def _read_video(
    src: Source, fps: int, max_frames: int | None, start: Fraction
) -> tuple[np.ndarray, Fraction, tuple[int, int]]:
    """Decode and resample the video: (frames, source time of output frame 0, display size)."""
    reader = _VideoReader(src, fps, start)
    try:
        width, height = reader.width, reader.height
        memory_limit = MAX_DECODED_BYTES // (width * height * 3)
        too_long = (
            f"{_name(src)}: {width}x{height} video would decode to more than "
            f"{MAX_DECODED_BYTES >> 20} MiB; pass max_frames (or start) to read a part"
        )
        duration = reader.duration
        if (max_frames is None or max_frames > memory_limit) and duration is not None:
            if math.ceil((duration - start) * fps) > memory_limit + 1:
                raise MediaError(too_long)
        # stop at max_frames, or one past the memory limit to tell "too long" from "fits"
        limit = max_frames if max_frames is not None and max_frames <= memory_limit else memory_limit + 1
        out = list(reader.frames(limit))
    finally:
        reader.close()
    if reader.t0 is None or not out:
        raise MediaError(f"{_name(src)}: no video frames to read (start={float(start):g} s)")
    if len(out) > memory_limit:
        raise MediaError(too_long)
    return _stack(out), reader.t0, reader.display_size


class _AudioReader:
    """The first audio stream of ``src`` as mono float32 at ``sample_rate``, decoded as it is asked
    for: the audio loop that :func:`read_media` and the streaming reader share.

    ``present`` is False (and the container already closed) when there is no audio stream.
    Decoding starts near ``begin`` (seconds on the source clock; None: from the start);
    ``first`` is the source time of the first sample, known once :meth:`chunks` decoded a frame.
    """

    def __init__(self, src: Source, sample_rate: int, begin: Fraction | None):
        self.src, self.sample_rate, self.begin = src, sample_rate, begin
        self.container = _open(src)
        self.present = bool(self.container.streams.audio)
        self.first: Fraction | None = None
        if not self.present:
            self.container.close()

    def chunks(self) -> Iterator[np.ndarray]:
        """Resampled float32 (n,) chunks, not clipped, in order; the resampler is flushed at the end.

        Raises:
            MediaError: the audio cannot be decoded.
        """
        if not self.present:
            return
        container, src = self.container, self.src
        stream = container.streams.audio[0]
        if self.begin is not None:
            _seek(container, stream, self.begin)
        # rematrix_maxval=1: the downmix averages channels instead of summing them at -3 dB
        # (which would clip identical loud channels)
        resampler = av.AudioResampler(
            format="flt", layout="mono", rate=self.sample_rate, options={"rematrix_maxval": "1.0"}
        )
        try:
            for frame in _decode(container, stream, src):
                if self.first is None:
                    self.first = _seconds(frame.pts, frame.time_base or stream.time_base) or Fraction(0)
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1)
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"cannot decode the audio of {_name(src)}: {exc}") from exc

    def close(self) -> None:
        self.container.close()


def _decode_audio(
    src: Source, sample_rate: int, begin: Fraction | None, max_samples: int
) -> tuple[np.ndarray, Fraction] | None:
    """Decode the first audio stream as mono float32 at ``sample_rate``.

    Decoding starts near ``begin`` (seconds on the source clock; None: from the start) and
    stops once ``max_samples`` samples past ``begin`` are in hand. Returns (samples, source time
    of the first sample), or None when there is no audio stream.
    """
    reader = _AudioReader(src, sample_rate, begin)
    if not reader.present:
        return None
    chunks: list[np.ndarray] = []
    count = 0
    try:
        for chunk in reader.chunks():
            chunks.append(chunk)
            count += chunk.size
            assert reader.first is not None
            needed = max_samples + (0 if begin is None else math.ceil((begin - reader.first) * sample_rate))
            if count >= needed:
                break
    finally:
        reader.close()
    if reader.first is None:
        return np.zeros(0, dtype=np.float32), Fraction(0)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False), reader.first


def read_media(
    src: Source,
    *,
    fps: int = 25,
    sample_rate: int = 16000,
    max_frames: int | None = None,
    start: float = 0.0,
) -> Media:
    """Read a video (with its audio, if any) at a fixed frame rate and sample rate.

    Args:
        src: a path, or the file's bytes; anything FFmpeg can demux and decode.
        fps: output frame rate; frames are picked by timestamp (see the module doc).
        sample_rate: output audio sample rate (mono float32).
        max_frames: stop after this many output frames.
        start: seconds to skip from the first video frame.

    Returns:
        A :class:`Media`; ``audio`` is None for a video-only input, otherwise exactly
        ``round(T * sample_rate / fps)`` samples in sync with the frames.

    Raises:
        ConfigError: bad ``fps``, ``sample_rate``, ``max_frames`` or ``start``.
        MediaError: missing or unreadable input, no video stream, no frames, too large.
    """
    _check_int("fps", fps, FPS_RANGE, ConfigError)
    _check_int("sample_rate", sample_rate, SAMPLE_RATE_RANGE, ConfigError)
    if max_frames is not None:
        _check_int("max_frames", max_frames, (1, 2**31), ConfigError)
    if not isinstance(start, (int, float)) or isinstance(start, bool) or not math.isfinite(start) or start < 0:
        raise ConfigError(f"start must be a finite number of seconds >= 0, got {start!r}")
    start_q = Fraction(start).limit_denominator(1_000_000)
    frames, t0, source_size = _read_video(src, int(fps), max_frames, start_q)
    n_samples = round(Fraction(frames.shape[0] * sample_rate, fps))
    decoded = _decode_audio(src, int(sample_rate), t0, n_samples)
    audio = None
    if decoded is not None:
        samples, first = decoded
        offset = round((t0 - first) * sample_rate)  # samples of the source before output time 0
        audio = np.zeros(n_samples, dtype=np.float32)
        lo = max(offset, 0)
        part = samples[lo : lo + n_samples - max(-offset, 0)]
        audio[max(-offset, 0) : max(-offset, 0) + part.size] = part
    return Media(frames, int(fps), audio, int(sample_rate), source_size)


def load_audio(path: Source, sample_rate: int = 16000) -> np.ndarray:
    """Read the first audio stream of any file FFmpeg reads as mono float32 at ``sample_rate``.

    Raises:
        ConfigError: bad ``sample_rate``.
        MediaError: missing or unreadable file, no audio stream, longer than
            ``MAX_AUDIO_SECONDS``.
    """
    _check_int("sample_rate", sample_rate, SAMPLE_RATE_RANGE, ConfigError)
    limit = MAX_AUDIO_SECONDS * sample_rate
    decoded = _decode_audio(path, int(sample_rate), None, limit + 1)
    if decoded is None:
        raise MediaError(f"no audio stream in {_name(path)}")
    samples = decoded[0]
    if samples.size > limit:
        raise MediaError(f"{_name(path)}: audio longer than {MAX_AUDIO_SECONDS} s")
    return samples


# --- writing --------------------------------------------------------------------------------


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV.

    Raises:
        MediaError: bad audio or sample rate, or the file cannot be written.
    """
    samples = _check_audio(audio)
    _check_int("sample_rate", sample_rate, SAMPLE_RATE_RANGE, MediaError)
    try:
        sf.write(os.fspath(path), samples, int(sample_rate), subtype="PCM_16", format="WAV")
    except (sf.LibsndfileError, OSError, RuntimeError, TypeError) as exc:
        raise MediaError(f"cannot write {path}: {exc}") from exc


class VideoWriter:
    """Frames (and audio) written as they come, to a file whose suffix picks the format: memory stays
    flat however long the clip.

    ``.mp4``/``.mov``/``.mkv``: H.264 (libx264, yuv420p, BT.601 limited range, crf 18) plus AAC mono
    at ``sample_rate`` when it is given; frame sides must be even. ``.wav``: 16-bit PCM audio only
    (:meth:`write` is then not allowed). :meth:`write` takes uint8 ``(N, H, W, 3)`` RGB frames,
    :meth:`write_audio` mono float PCM in [-1, 1], each in pieces of any size and in any
    interleaving; :meth:`close` flushes the encoders (also on leaving a ``with`` block). The file is
    the one :func:`write_media` writes from the whole arrays.

    ``path`` may also be a binary file object that is written in order, never sought (a pipe, stdout):
    then ``format`` names what to write, one of :data:`STREAM_FORMATS`: ``"mkv"`` (Matroska, the
    same streams) or ``"wav"`` (16-bit PCM whose header declares no length, as a stream's must).

    Raises:
        MediaError: unknown suffix or format, a bad size, rate, array or sample, or a write failure
            (its ``__cause__`` is the OSError when the file system or the pipe failed).
    """

    def __init__(self, path: str | os.PathLike | BinaryIO, fps: int, width: int, height: int,
                 sample_rate: int | None = None, *, format: str | None = None) -> None:
        self.path = path
        to_stream = hasattr(path, "write")
        if to_stream:
            if format not in STREAM_FORMATS:
                raise MediaError(f"writing to a file object needs format= one of {STREAM_FORMATS}, got {format!r}")
            suffix = "." + format
            self.path = getattr(path, "name", "the output")
        else:
            suffix = Path(os.fspath(path)).suffix.lower()  # type: ignore[arg-type]
        self._wav = suffix == ".wav"
        # (PyAV's and libsndfile's objects; None once closed)
        self._container: Any = None
        self._video: Any = None
        self._sound: Any = None
        self._soundfile: Any = None
        self._frames = 0
        self._samples = 0
        self._pending = np.zeros(0, np.float32)  # AAC: samples not yet in a 1024-sample frame
        self.sample_rate = sample_rate
        if sample_rate is not None:
            _check_int("sample_rate", sample_rate, SAMPLE_RATE_RANGE, MediaError)
        if self._wav:
            if sample_rate is None:
                raise MediaError(f"{self.path}: writing a .wav needs audio")
            try:
                if to_stream:  # libsndfile seeks back to fill in the header: FFmpeg's muxer does not
                    self._container = av.open(path, mode="w", format="wav")
                    self._sound = self._container.add_stream("pcm_s16le", rate=int(sample_rate), layout="mono")
                else:
                    self._soundfile = sf.SoundFile(os.fspath(path), mode="w",  # type: ignore[arg-type]
                                                   samplerate=int(sample_rate), channels=1, subtype="PCM_16",
                                                   format="WAV")
            except (av.FFmpegError, sf.LibsndfileError, OSError, RuntimeError, TypeError, ValueError) as exc:
                self._abort()
                raise MediaError(f"cannot write {self.path}: {exc}") from exc
            return
        if suffix not in VIDEO_SUFFIXES:
            raise MediaError(f"{path}: cannot write {suffix or 'a file without suffix'}; use .wav or {VIDEO_SUFFIXES}")
        _check_int("fps", fps, FPS_RANGE, MediaError)
        if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer))
                and 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise MediaError(f"frame size {width}x{height} is outside 1..{MAX_SIDE} a side")
        if width % 2 or height % 2:
            raise MediaError(f"H.264 yuv420p needs even frame sides, got {width}x{height}")
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        try:
            target: Any = path if to_stream else os.fspath(path)  # type: ignore[arg-type]
            self._container = av.open(target, mode="w", format="matroska" if to_stream else None)
            video = self._container.add_stream("libx264", rate=int(fps))
            video.width, video.height = self.width, self.height
            video.pix_fmt = "yuv420p"
            video.options = {"crf": "18", "preset": "medium"}
            video.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
            video.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
            self._video = video
            if sample_rate is not None:
                self._sound = self._container.add_stream("aac", rate=int(sample_rate), layout="mono")
                self._sound.bit_rate = 64000
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise MediaError(f"cannot write {path}: {exc}") from exc

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._abort()

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 RGB frames ``(N, H, W, 3)`` (N may be 0)."""
        if self._wav:
            raise MediaError(f"{self.path}: a .wav file takes no frames")
        if self._video is None:
            raise MediaError(f"{self.path}: the writer is closed")
        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4
                and frames.shape[1:] == (self.height, self.width, 3)):
            raise MediaError(f"frames must be a uint8 array (N, {self.height}, {self.width}, 3), got {_describe(frames)}")
        try:
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")
                frame.pts = self._frames
                self._frames += 1
                self._container.mux(self._video.encode(frame))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"cannot write {self.path}: {exc}") from exc

    def write_audio(self, pcm: np.ndarray) -> None:
        """Append mono float PCM in [-1, 1] (any length)."""
        if self.sample_rate is None:
            raise MediaError(f"{self.path}: the writer was opened without audio (no sample_rate)")
        samples = _check_audio(pcm)
        if self._wav and self._container is not None:  # to a stream: 16-bit samples as libsndfile makes them
            pcm16 = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)
            try:
                if len(pcm16):
                    aframe = av.AudioFrame.from_ndarray(pcm16.reshape(1, -1), format="s16", layout="mono")
                    aframe.sample_rate = int(self.sample_rate)
                    aframe.pts = self._samples
                    self._samples += len(pcm16)
                    self._container.mux(self._sound.encode(aframe))
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise MediaError(f"cannot write {self.path}: {exc}") from exc
            return
        if self._wav:
            if self._soundfile is None:
                raise MediaError(f"{self.path}: the writer is closed")
            try:
                self._soundfile.write(samples)
            except (sf.LibsndfileError, OSError, RuntimeError, TypeError) as exc:
                raise MediaError(f"cannot write {self.path}: {exc}") from exc
            return
        if self._sound is None:
            raise MediaError(f"{self.path}: the writer is closed")
        self._pending = np.concatenate([self._pending, samples])
        self._encode_audio(final=False)

    def _encode_audio(self, final: bool) -> None:
        step = 1024  # AAC's frame: whole frames until the last (as write_media did)
        assert self.sample_rate is not None  # (there is an audio stream)
        try:
            while len(self._pending) >= step or (final and len(self._pending)):
                chunk, self._pending = self._pending[:step], self._pending[step:]
                aframe = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                aframe.sample_rate = int(self.sample_rate)
                aframe.pts = self._samples
                self._samples += len(chunk)
                self._container.mux(self._sound.encode(aframe))
            if final:
                self._container.mux(self._sound.encode(None))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        """Flush the encoders and close the file (a second call does nothing)."""
        try:
            if self._soundfile is not None:
                self._soundfile.close()
            if self._container is not None:
                if self._wav:
                    self._container.mux(self._sound.encode(None))
                else:
                    self._container.mux(self._video.encode(None))
                    if self._sound is not None:
                        self._encode_audio(final=True)
                self._container.close()
        except (av.FFmpegError, sf.LibsndfileError, OSError, RuntimeError, ValueError) as exc:
            raise MediaError(f"cannot write {self.path}: {exc}") from exc
        finally:
            self._soundfile = self._container = self._video = self._sound = None

    def _abort(self) -> None:
        """Close without flushing (after a failure)."""
        for f in (self._soundfile, self._container):
            try:
                if f is not None:
                    f.close()
            except Exception:  # noqa: BLE001 - already failing: the first error is the one reported
                pass
        self._soundfile = self._container = self._video = self._sound = None


def write_media(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """Write frames (and audio) to a file whose suffix picks the format.

    ``.mp4``/``.mov``/``.mkv``: H.264 (libx264, yuv420p, BT.601 limited range, crf 18) plus
    AAC mono when ``audio`` is given; frame sides must be even. ``.wav``: the audio only
    (``frames`` is ignored and may be None). :class:`VideoWriter` writes the same piece by piece.

    Raises:
        MediaError: unknown suffix, bad arrays, odd frame size, or a write failure.
    """
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix == ".wav":
        if audio is None:
            raise MediaError(f"{path}: writing a .wav needs audio")
        write_wav(path, audio, sample_rate)
        return
    if suffix not in VIDEO_SUFFIXES:
        raise MediaError(f"{path}: cannot write {suffix or 'a file without suffix'}; use .wav or {VIDEO_SUFFIXES}")
    media = Media.from_arrays(frames, fps, audio, sample_rate)
    _, height, width, _ = media.frames.shape
    with VideoWriter(path, media.fps, width, height, None if media.audio is None else media.sample_rate) as writer:
        writer.write(media.frames)
        if media.audio is not None:
            writer.write_audio(media.audio)


__all__ = [
    "FPS_RANGE",
    "MAX_AUDIO_SECONDS",
    "MAX_DECODED_BYTES",
    "MAX_SIDE",
    "Media",
    "SAMPLE_RATE_RANGE",
    "VIDEO_SUFFIXES",
    "VideoWriter",
    "load_audio",
    "read_media",
    "write_media",
    "write_wav",
]
