"""Reading media as a stream: coded-size frames and 16 kHz speech in blocks, in bounded memory.

:func:`open_media` reads what :func:`~avfc.media.io.read_media` reads, crops and resizes it as
:func:`~avfc.media.crop.apply_crop` does with the box :func:`~avfc.media.crop.find_crop` chooses,
and hands it out a block of frames at a time, however long the input::

    from avfc.media.stream import open_media

    with open_media("talk.mp4", fps=25, size=256, crop="face") as stream:
        print(stream.source_size, stream.crop, stream.warnings, stream.frame_count)
        for frames, pcm in stream.blocks(25):  # one second at a time
            ...  # frames: uint8 (n, 256, 256, 3); pcm: float32 mono at 16 kHz, or None

Same output as reading the whole clip. The frames are the frames of
``apply_crop(read_media(src, ...).frames, box, size)`` and the concatenated ``pcm`` is
``read_media(src, ...).audio``, exactly (the same frame loop, frame-rate conversion, resampler
and crop code, shared with :mod:`avfc.media.io`; tests compare them sample for sample).

The crop box. The format codes one box for the whole stream, and :func:`find_crop` looks at
``DETECT_FRAMES`` frames spread over the *whole* clip, which a stream sees only at its end. So
``crop="face"`` on a source that is not square makes a first pass before the stream starts: it
decodes the video (no audio) without converting frames to RGB, counts the output frames, and
converts and runs the face detector only on the frames whose index could be one of
:func:`~avfc.media.crop.detect_picks`' for the frame count the container's duration announces
(plus or minus ``SCAN_MARGIN`` frames). When the count turns out to be outside that margin (or
the container declares no duration), a second pass decodes up to the last pick and looks at
exactly those. The box and the face warnings are therefore those of :func:`find_crop` and
:func:`~avfc.media.crop.face_warnings` on the whole clip, for any length, and the frame count
is known before the first block (``frame_count``). The cost is one extra decode of the video
(5 of the 18 s the 1-minute 1080p input below took). Square sources and the other crop
methods need no first pass.

Memory. The reader holds the decoder's state, one source frame as RGB, one frame of
look-ahead, the block being filled and at most one decoded audio frame beyond the block's
speech: bounded whatever the length (``MAX_DECODED_BYTES`` does not apply). Measured on a
1-minute 1920x1080 30 fps H.264 + AAC (44.1 kHz stereo) talking head, read at 25 fps and 256 px
with ``crop="face"`` on 2 shared cores: :func:`read_media` refuses it at once (1500 frames would
be 8.7 GiB); ``open_media`` peaks at 164 MiB RSS (63 MiB after the imports) and reads it in 18 s
at a load average of 7.5 (converting each 1080p frame to RGB dominates; the time moves with
the load, the memory does not).

The source is a path or the file's bytes, as for :func:`read_media`; it is opened two or three
times (video, audio, the face pass), so it must be a file or bytes, not a pipe.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np

from avfc.errors import ConfigError, MediaError
from avfc.media import crop as _crop
from avfc.media.crop import CropBox, CropMethod, apply_crop, center_square, detect_picks
from avfc.media.io import (
    FPS_RANGE,
    SAMPLE_RATE_RANGE,
    Media,
    Source,
    _AudioReader,
    _check_int,
    _name,
    _VideoReader,
)

#: The first pass looks at the picks of every frame count within this many frames of the count
#: the container's duration announces (a count outside takes a second pass).
SCAN_MARGIN = 3
#: No limit on the number of frames (a stream of 2^62 frames is not a practical concern).
_NO_LIMIT = 1 << 62

Progress = Callable[[str, int, int], None]


class MediaStream:
    """An open input, read a block at a time: made by :func:`open_media`; close it (or use ``with``).

    Attributes (known when it is opened):
        fps: output frame rate.
        sample_rate: output sample rate of ``pcm`` (mono float32 in [-1, 1]).
        size: side of the square output frames.
        source_size: (width, height) of the source video as displayed.
        source_fps: the source's average frame rate, or None when the container does not say.
        source_duration: seconds of video the container declares, or None.
        has_audio: whether the source has an audio stream (then every block has ``pcm``).
        crop: the :class:`~avfc.media.crop.CropBox` in source pixels, one for the whole stream.
        warnings: :func:`~avfc.media.crop.face_warnings` of the clip (``crop="face"`` only).
        expected_frames: the output frame count the container's duration announces (at most
            ``max_frames``), or None.
        frame_count: the exact number of output frames once known: from the open on when the
            face pass ran (``crop="face"`` on a source that is not square) or ``count_frames``
            was asked, else once the last block is out; None until then.
        frames_read: output frames handed out so far.
    """

    def __init__(self) -> None:  # built by open_media
        self.fps = 0
        self.sample_rate = 0
        self.size = 0
        self.source_size = (0, 0)
        self.source_fps: float | None = None
        self.source_duration: float | None = None
        self.has_audio = False
        self.crop = CropBox(0, 0, 0, 0)
        self.warnings: list[str] = []
        self.expected_frames: int | None = None
        self.frame_count: int | None = None
        self.frames_read = 0
        self._name = ""
        self._video: _VideoReader | None = None
        self._audio: _AudioReader | None = None
        self._frames: Iterator[np.ndarray] = iter(())
        self._next: np.ndarray | None = None  # the one frame of look-ahead (full-size RGB)
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # the last RGB frame and its crop
        # speech: decoded chunks not yet handed out, the source samples still to skip before
        # output time 0, the zeros still to give before the source's first sample
        self._chunks: Iterator[np.ndarray] | None = None
        self._pending: deque[np.ndarray] = deque()
        self._pending_samples = 0
        self._skip: int | None = None
        self._lead = 0
        self._audio_done = False
        self._samples_out = 0
        #: the most speech samples ever held between blocks (for tests of the memory bound)
        self.max_pending_samples = 0

    # --- public ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether every frame has been handed out."""
        return self._next is None

    def blocks(self, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The rest of the stream, ``frames`` output frames a block (the last may be shorter).

        Yields:
            ``(frames, pcm)``: ``frames`` uint8 ``(n, size, size, 3)`` RGB, a new array each
            block; ``pcm`` float32 mono at ``sample_rate`` (None without an audio stream), the
            samples ``[i0 * sample_rate // fps, i1 * sample_rate // fps)`` of the output for
            the block's frames ``[i0, i1)``, except that the last block ends at
            ``round(T * sample_rate / fps)`` (T frames in all) as :func:`read_media`'s audio
            does. Speech missing at either end is zeros.

        Raises:
            ConfigError: ``frames`` is not a positive integer.
            MediaError: the input cannot be decoded further.
        """
        _check_int("frames", frames, (1, 1 << 20), ConfigError)
        return self._blocks(int(frames))

    def _blocks(self, frames: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        while self._next is not None:
            picked: list[np.ndarray] = []  # (a repeated frame is one array until stacked)
            while len(picked) < frames and self._next is not None:
                picked.append(self._cropped(self._next))
                self._next = next(self._frames, None)
            out = np.stack(picked)
            self.frames_read += len(picked)
            pcm = None
            if self.has_audio:
                if self._next is None:
                    end = round(Fraction(self.frames_read * self.sample_rate, self.fps))
                else:
                    end = self.frames_read * self.sample_rate // self.fps
                pcm = self._take_audio(end - self._samples_out)
            if self._next is None:
                self.frame_count = self.frames_read
                self.close()
            yield out, pcm

    def read(self) -> Media:
        """The rest of the stream as one :class:`Media` (coded-size frames): for short input.

        Raises:
            MediaError: nothing left to read, or the input cannot be decoded.
        """
        if self._next is None:
            raise MediaError(f"{self._name}: the stream has been read to its end")
        parts = list(self.blocks(max(self.fps, 1)))
        frames = np.concatenate([f for f, _ in parts])
        audio = np.concatenate([p for _, p in parts]) if self.has_audio else None
        media = Media(frames, self.fps, audio, self.sample_rate, self.source_size)
        return media

    def close(self) -> None:
        """Release the decoders (further blocks are empty). Safe to call twice."""
        self._next = None
        for reader in (self._video, self._audio):
            if reader is not None:
                reader.close()
        self._video = self._audio = None
        self._frames = iter(())
        self._chunks = None
        self._pending.clear()
        self._pending_samples = 0
        self._last = None

    def __enter__(self) -> MediaStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """One second a block: ``blocks(fps)``."""
        return self.blocks(self.fps)

    # --- inside ---------------------------------------------------------------------------

    def _cropped(self, rgb: np.ndarray) -> np.ndarray:
        """``apply_crop`` of one frame (a repeated source frame is cropped once)."""
        if self._last is None or self._last[0] is not rgb:
            self._last = (rgb, apply_crop(rgb[None], self.crop, self.size)[0])
        return self._last[1]

    def _take_audio(self, count: int) -> np.ndarray:
        """The next ``count`` output samples (zeros where the source has none)."""
        out = np.zeros(count, dtype=np.float32)
        filled = 0
        while filled < count:
            if self._lead:  # silence before the source's first sample
                zeros = min(self._lead, count - filled)
                self._lead -= zeros
                filled += zeros
                continue
            if not self._pending and not self._pull_audio():
                break  # the source's audio ended: zeros
            if not self._pending:
                continue  # the first chunk set ``_lead``
            chunk = self._pending[0]
            take = min(chunk.size, count - filled)
            out[filled : filled + take] = chunk[:take]
            filled += take
            self._pending_samples -= take
            if take == chunk.size:
                self._pending.popleft()
            else:
                self._pending[0] = chunk[take:]
        self._samples_out += count
        return out

    def _pull_audio(self) -> bool:
        """Decode speech until there is a chunk in ``_pending`` or leading silence to give; False
        once the source has no more."""
        while not self._audio_done:
            assert self._audio is not None and self._chunks is not None
            chunk = next(self._chunks, None)
            if chunk is None:
                self._audio_done = True
                break
            if self._skip is None:  # the first chunk: line the source up with output time 0
                assert self._audio.first is not None and self._video is not None and self._video.t0 is not None
                offset = round((self._video.t0 - self._audio.first) * self.sample_rate)
                self._skip, self._lead = max(offset, 0), max(-offset, 0)
            if self._skip:
                drop = min(self._skip, chunk.size)
                self._skip -= drop
                chunk = chunk[drop:]
            if chunk.size:
                self._pending.append(np.clip(chunk, -1.0, 1.0).astype(np.float32, copy=False))
                self._pending_samples += chunk.size
                self.max_pending_samples = max(self.max_pending_samples, self._pending_samples)
            if chunk.size or self._lead:
                return True
        return False


def _scan_faces(
    src: Source, fps: int, start: Fraction, limit: int, wanted: set[int], progress: Progress | None,
    expected: int | None,
) -> tuple[int, dict[int, tuple[tuple[float, float, float] | None, int]]]:
    """Decode the video once, running the face detector on the output frames in ``wanted``.

    Returns the number of output frames and, per looked-at frame, (its largest face, the number
    of faces). Stops after the last wanted frame when ``limit`` frames are known to exist (a
    second pass), else reads to the end to count them.
    """
    reader = _VideoReader(src, fps, start)
    found: dict[int, tuple[tuple[float, float, float] | None, int]] = {}
    count = 0
    last: tuple[av.VideoFrame, tuple[tuple[float, float, float] | None, int]] | None = None
    try:
        convert = None
        for index, frame in enumerate(reader.frames(limit, convert=lambda f: f)):
            count = index + 1
            if index in wanted:
                if last is None or last[0] is not frame:  # a repeated source frame is looked at once
                    if convert is None:
                        convert = reader.rgb_converter()
                    faces = _crop._detect_faces(convert(frame))
                    last = (frame, (faces[0] if faces else None, len(faces)))
                found[index] = last[1]
            if progress is not None and count % 25 == 0:
                progress("scan", count, expected or 0)
    finally:
        reader.close()
    return count, found


def open_media(
    src: Source,
    *,
    fps: int = 25,
    sample_rate: int = 16000,
    size: int = 256,
    crop: CropMethod | CropBox = "face",
    start: float = 0.0,
    max_frames: int | None = None,
    count_frames: bool = False,
    progress: Progress | None = None,
) -> MediaStream:
    """Open a video (with its audio, if any) to read it cropped, resized and resampled, in blocks.

    Args:
        src: a path, or the file's bytes; anything FFmpeg can demux and decode.
        fps: output frame rate (frames picked by timestamp as :func:`read_media` does).
        sample_rate: output audio sample rate (mono float32).
        size: side of the square output frames.
        crop: ``"face"``, ``"center"`` or ``"none"``, as :func:`~avfc.media.crop.find_crop`; or
            a :class:`~avfc.media.crop.CropBox` (square, inside the displayed frame) to use as it
            is, e.g. ``first.crop`` to read the input again without a second face pass.
        start: seconds to skip from the first video frame.
        max_frames: stop after this many output frames.
        count_frames: decode the video once before the stream (without RGB) to know
            ``frame_count`` from the start also when no face pass runs (a square source,
            ``"center"``, ``"none"``, a given box). The face pass counts anyway.
        progress: called as ``progress("scan", frames_done, frames_expected_or_0)`` every 25
            frames of the first pass (the face pass or the count; the only work done before the
            first block).

    Returns:
        A :class:`MediaStream`; read it with ``for frames, pcm in stream.blocks(n)``. Example::

            with open_media("talk.mp4", size=256) as stream:
                box, warnings = stream.crop, stream.warnings
                for frames, pcm in stream.blocks(25):
                    ...

    Raises:
        ConfigError: bad ``fps``, ``sample_rate``, ``size``, ``crop``, ``max_frames`` or
            ``start``; ``crop="none"`` on a source that is not square.
        MediaError: missing or unreadable input, no video stream, no frames (``start`` past the
            end), a video or audio stream that cannot be decoded.
    """
    _check_int("fps", fps, FPS_RANGE, ConfigError)
    _check_int("sample_rate", sample_rate, SAMPLE_RATE_RANGE, ConfigError)
    _check_int("size", size, (1, 8192), ConfigError)
    if max_frames is not None:
        _check_int("max_frames", max_frames, (1, 2**31), ConfigError)
    if not isinstance(start, (int, float)) or isinstance(start, bool) or not math.isfinite(start) or start < 0:
        raise ConfigError(f"start must be a finite number of seconds >= 0, got {start!r}")
    if not isinstance(crop, CropBox) and crop not in ("face", "center", "none"):
        raise ConfigError(f"unknown crop method {crop!r}; expected 'face', 'center', 'none' or a CropBox")
    if isinstance(src, (bytearray, memoryview)):
        src = bytes(src)  # one copy, shared by the two or three readers
    fps, sample_rate, size = int(fps), int(sample_rate), int(size)
    start_q = Fraction(start).limit_denominator(1_000_000)
    limit = _NO_LIMIT if max_frames is None else int(max_frames)

    stream = MediaStream()
    stream.fps, stream.sample_rate, stream.size, stream._name = fps, sample_rate, size, _name(src)
    try:
        video = stream._video = _VideoReader(src, fps, start_q)
        stream._frames = video.frames(limit)
        stream._next = next(stream._frames, None)
        if stream._next is None or video.t0 is None:
            raise MediaError(f"{_name(src)}: no video frames to read (start={float(start_q):g} s)")
        width, height = stream.source_size = video.display_size
        stream.source_fps = float(video.rate) if video.rate else None
        stream.source_duration = float(video.duration) if video.duration is not None else None
        if video.duration is not None:
            stream.expected_frames = min(max(math.ceil((video.duration - start_q) * fps), 1), limit)

        audio = _AudioReader(src, sample_rate, video.t0)
        if audio.present:
            stream._audio, stream.has_audio, stream._chunks = audio, True, audio.chunks()

        if isinstance(crop, CropBox):
            box = crop
            inside = box.x >= 0 and box.y >= 0 and box.x + box.w <= width and box.y + box.h <= height
            if box.w != box.h or box.w < 1 or not inside:
                raise ConfigError(f"crop box {box} is not a square inside the {width}x{height} frame")
            stream.crop = box
        elif width == height:
            stream.crop = CropBox(0, 0, width, height)
        elif crop == "none":
            raise ConfigError(f"crop method 'none' needs square frames, got {width}x{height}")
        elif crop == "center":
            stream.crop = center_square(width, height)
        else:
            stream.crop, stream.warnings, stream.frame_count = _face_crop(
                src, fps, start_q, limit, width, height, stream.expected_frames, progress
            )
        if count_frames and stream.frame_count is None:
            stream.frame_count = _scan_faces(src, fps, start_q, limit, set(), progress, stream.expected_frames)[0]
    except BaseException:
        stream.close()
        raise
    return stream


def _face_crop(
    src: Source, fps: int, start: Fraction, limit: int, width: int, height: int,
    expected: int | None, progress: Progress | None,
) -> tuple[CropBox, list[str], int]:
    """The box, the face warnings and the frame count of ``crop="face"`` (see the module doc)."""
    wanted: set[int] = set()
    if expected is not None:
        for count in range(max(expected - SCAN_MARGIN, 1), min(expected + SCAN_MARGIN, limit) + 1):
            wanted.update(int(i) for i in detect_picks(count))
    count, found = _scan_faces(src, fps, start, limit, wanted, progress, expected)
    if count == 0:
        raise MediaError(f"{_name(src)}: no video frames to read (start={float(start):g} s)")
    picks = [int(i) for i in detect_picks(count)]
    if not all(i in found for i in picks):  # the container's duration was off, or missing
        count2, found = _scan_faces(src, fps, start, picks[-1] + 1, set(picks), None, None)
        if count2 != picks[-1] + 1:
            raise MediaError(f"{_name(src)}: the video decoded to fewer frames the second time")
    faces = [found[i][0] for i in picks]
    counts = [found[i][1] for i in picks]
    return _crop.crop_from_faces(faces, width, height), _crop.warnings_from_face_counts(counts, width, height), count


__all__ = ["SCAN_MARGIN", "MediaStream", "open_media"]
