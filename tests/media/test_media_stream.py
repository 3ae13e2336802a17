"""open_media: the streaming reader gives read_media + find_crop + apply_crop's output in bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import avfc.media.stream as mstream
from avfc.errors import ConfigError, MediaError
from avfc.media import apply_crop, crop, find_crop, read_media
from avfc.media.crop import face_warnings
from avfc.media.stream import open_media


def whole(stream, block: int = 7) -> tuple[np.ndarray, np.ndarray | None]:
    parts = list(stream.blocks(block))
    frames = np.concatenate([f for f, _ in parts])
    audio = None if parts[0][1] is None else np.concatenate([p for _, p in parts])
    return frames, audio


def expected(src, *, size: int, method: str = "face", **kwargs):
    media = read_media(src, **kwargs)
    box = find_crop(media.frames, method=method)
    return media, box, apply_crop(media.frames, box, size)


@pytest.mark.parametrize("fps", [25, 30, 24, 60])
def test_same_frames_and_audio_as_read_media(clip: Path, fps: int) -> None:
    media, box, frames = expected(clip, size=64, fps=fps)
    with open_media(clip, fps=fps, size=64) as stream:
        assert stream.source_size == (320, 240) and stream.has_audio and stream.crop == box
        assert stream.source_fps == 30 and stream.source_duration == pytest.approx(1.6)
        assert stream.frame_count == stream.expected_frames == media.num_frames  # the face pass counted
        got, audio = whole(stream)
        assert stream.done and stream.frames_read == media.num_frames
    np.testing.assert_array_equal(got, frames)
    np.testing.assert_array_equal(audio, media.audio)  # the same resampler: sample for sample


def test_blocks_are_aligned_to_the_frames(clip: Path) -> None:
    with open_media(clip, fps=30, size=32, sample_rate=16000) as stream:
        sizes = [(f.shape[0], p.size) for f, p in stream.blocks(10)]
    # 48 frames at 30 fps: blocks of 10, the speech of frames [i0, i1) is [i0*16000//30, i1*16000//30)
    # and the last block ends at round(48 * 16000 / 30)
    assert [n for n, _ in sizes] == [10, 10, 10, 10, 8]
    ends = np.cumsum([p for _, p in sizes])
    assert list(ends) == [i * 16000 // 30 for i in (10, 20, 30, 40)] + [round(48 * 16000 / 30)]


def test_start_max_frames_and_iteration(clip: Path, index_of) -> None:
    media, _, frames = expected(clip, size=240, fps=25, start=0.5, max_frames=5)
    with open_media(clip, fps=25, size=240, start=0.5, max_frames=5) as stream:
        assert stream.frame_count == 5
        got = list(stream)  # one second a block
    assert len(got) == 1
    np.testing.assert_array_equal(got[0][0], frames)
    np.testing.assert_array_equal(got[0][1], media.audio)


def test_sync_after_start(click_clip: Path) -> None:
    media = read_media(click_clip, fps=25, start=0.3)
    with open_media(click_clip, fps=25, size=64, start=0.3, crop="center") as stream:
        assert stream.frame_count is None and stream.expected_frames == media.num_frames
        _, audio = whole(stream, 4)
        assert stream.frame_count == media.num_frames
    np.testing.assert_array_equal(audio, media.audio)
    assert abs(np.argmax(np.abs(audio) > 0.3) / 16000 - 0.5) < 0.005


def test_read_returns_media(clip: Path) -> None:
    _, _, frames = expected(clip, size=48, fps=25, method="center")
    with open_media(clip, size=48, crop="center") as stream:
        first, _ = next(stream.blocks(3))
        rest = stream.read()
        with pytest.raises(MediaError):
            stream.read()
    np.testing.assert_array_equal(np.concatenate([first, rest.frames]), frames)
    assert rest.fps == 25 and rest.source_size == (320, 240) and rest.audio.size == (40 - 3) * 640


def test_bytes_input(clip: Path) -> None:
    media, _, frames = expected(clip, size=64, max_frames=10)
    for data in (clip.read_bytes(), bytearray(clip.read_bytes())):
        with open_media(data, size=64, max_frames=10) as stream:
            got, audio = whole(stream)
        np.testing.assert_array_equal(got, frames)
        np.testing.assert_array_equal(audio, media.audio)


def test_video_only(video_only: Path) -> None:
    _, _, frames = expected(video_only, size=64)
    with open_media(video_only, size=64) as stream:
        assert not stream.has_audio
        blocks = list(stream.blocks(16))
    assert all(pcm is None for _, pcm in blocks)
    np.testing.assert_array_equal(np.concatenate([f for f, _ in blocks]), frames)


def test_square_and_crop_methods(tmp_path: Path, clip_writer) -> None:
    square = clip_writer(tmp_path / "square.mp4", frames=10, size=(96, 96), audio_rate=None)
    with open_media(square, size=96, crop="none") as stream:  # a square source is coded whole: no face pass
        assert stream.crop == crop.CropBox(0, 0, 96, 96) and stream.frame_count is None
        np.testing.assert_array_equal(stream.read().frames, read_media(square).frames)
    with open_media(square, size=96, crop="none", count_frames=True) as stream:
        assert stream.frame_count == read_media(square).num_frames == 9  # 10 frames at 30 fps read at 25
    wide = clip_writer(tmp_path / "wide.mp4", frames=4, audio_rate=None)
    with pytest.raises(ConfigError, match="square"):
        open_media(wide, crop="none")
    with open_media(wide, size=60, crop="center") as stream:
        assert stream.crop == crop.center_square(320, 240) == crop.CropBox(40, 0, 240, 240)
    # a given box (to read the input again without a face pass)
    box = crop.CropBox(10, 20, 100, 100)
    with open_media(wide, size=50, crop=box) as stream:
        assert stream.crop == box and stream.warnings == [] and stream.frame_count is None
        np.testing.assert_array_equal(stream.read().frames, apply_crop(read_media(wide).frames, box, 50))
    for bad in (crop.CropBox(0, 0, 100, 90), crop.CropBox(300, 0, 100, 100), crop.CropBox(-1, 0, 10, 10)):
        with pytest.raises(ConfigError, match="inside"):
            open_media(wide, crop=bad)


def fake_faces(rgb: np.ndarray) -> list[tuple[float, float, float]]:
    """A 'face' whose place and size follow the frame index the picture shows (and two faces on odd
    indices): the box and the warnings then tell exactly which frames were looked at."""
    index = round(float(rgb[60:180, 40:120].mean()) / 5)
    face = (100.0 + 3 * index, 80.0 + index, 40.0 + index)
    return [face, (10.0, 10.0, 5.0)] if index % 2 else [face]


@pytest.mark.parametrize("margin", [mstream.SCAN_MARGIN, -100])
def test_face_box_and_warnings_from_the_same_frames_as_find_crop(
    clip_writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, margin: int
) -> None:
    # margin -100: no candidate frames in the first pass, so the second pass looks at the picks
    monkeypatch.setattr(mstream, "SCAN_MARGIN", margin)
    monkeypatch.setattr(crop, "_detect_faces", fake_faces)
    path = clip_writer(tmp_path / "faces.mp4", frames=45, fps=30, audio_rate=None)
    for kwargs in ({}, {"max_frames": 17}, {"start": 0.2, "fps": 24}):
        media = read_media(path, **kwargs)
        box, warnings = find_crop(media.frames), face_warnings(media.frames)
        assert box != crop.center_square(320, 240)
        with open_media(path, size=32, **kwargs) as stream:
            assert (stream.crop, stream.warnings, stream.frame_count) == (box, warnings, media.num_frames)


def test_frame_count_known_from_the_face_pass_without_a_duration(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = mstream._VideoReader.__init__

    def no_duration(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.duration = None

    monkeypatch.setattr(mstream._VideoReader, "__init__", no_duration)
    with open_media(clip, size=32) as stream:
        assert stream.expected_frames is None and stream.source_duration is None
        assert stream.frame_count == 40 and stream.crop == find_crop(read_media(clip).frames)


@pytest.mark.parametrize("which", ["audio_only", "garbage", "missing", "bytes"])
def test_unreadable_inputs_raise_media_error(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if which == "missing":
        src: object = tmp_path / "nothing.mp4"
    elif which == "bytes":
        src = b"\x00" * 100
    else:
        src = request.getfixturevalue(which)
    with pytest.raises(MediaError):
        read_media(src)
    with pytest.raises(MediaError):
        open_media(src)


def test_start_past_the_end_and_not_a_source(clip: Path) -> None:
    with pytest.raises(MediaError, match="no video frames"):
        open_media(clip, start=5.0)
    with pytest.raises(MediaError):
        open_media(12345)


@pytest.mark.parametrize(
    "kwargs",
    [{"fps": 0}, {"fps": 25.0}, {"sample_rate": 10}, {"max_frames": 0}, {"start": -1.0},
     {"start": float("nan")}, {"size": 0}, {"crop": "middle"}],
)
def test_bad_arguments_raise_config_error(clip: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        open_media(clip, **kwargs)
    with open_media(clip, size=16, crop="center") as stream, pytest.raises(ConfigError):
        stream.blocks(0)


def write_long(path: Path, frames: int, fps: int = 30, size: tuple[int, int] = (320, 240)) -> Path:
    """A long clip written a frame at a time (never held whole): noise pictures, speech-like noise."""
    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "30", "preset": "ultrafast"}
        sound = container.add_stream("aac", rate=44100, layout="mono")
        samples = 0
        for i in range(frames):
            picture = np.empty((height, width, 3), np.uint8)
            picture[:] = (i * 7) % 256
            picture[: height // 2, : width // 2] = rng.integers(0, 256, (height // 2, width // 2, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            end = (i + 1) * 44100 // fps
            chunk = (0.2 * rng.standard_normal((1, end - samples))).astype(np.float32)
            aframe = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            aframe.sample_rate, aframe.pts = 44100, samples
            samples = end
            container.mux(sound.encode(aframe))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))
    return path


_RSS_SCRIPT = """
import json, resource, sys
from avfc.media.stream import open_media
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frames = samples = 0
with open_media(sys.argv[1], fps=25, size=64, crop="face") as stream:
    count, blocks = stream.frame_count, 0
    for f, pcm in stream.blocks(25):
        frames += f.shape[0]; samples += pcm.size; blocks += 1
    pending = stream.max_pending_samples
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": frames, "count": count, "samples": samples, "grow_kib": after - before,
                  "pending": pending}))
"""


def test_long_input_in_bounded_memory(tmp_path: Path) -> None:
    # 2400 frames at 30 fps (80 s) of 320x240: read_media would hold 2000 frames of 230 KB (450,000 KiB)
    path = write_long(tmp_path / "long.mp4", 2400)
    run = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path)], capture_output=True, text=True,
                         check=True, timeout=300)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["frames"] == result["count"] == 2000  # 80 s at 25 fps, known before the first block
    assert result["samples"] == 2000 * 640
    assert result["pending"] <= 4096  # at most about one decoded audio frame of speech held back
    assert result["grow_kib"] < 80 * 1024, result  # not the clip (450,000 KiB)
