"""read_media / write_media / load_audio on synthetic clips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import avfc.media.io as mio
from avfc.errors import ConfigError, MediaError
from avfc.media import Media, load_audio, read_media, write_media, write_wav


def test_resample_30_to_25_fps_picks_frame_on_screen(clip: Path, index_of) -> None:
    media = read_media(clip, fps=25)
    assert media.frames.dtype == np.uint8 and media.frames.shape == (40, 240, 320, 3)
    assert media.fps == 25 and media.source_size == (320, 240)
    # output frame i shows the source frame on screen at i/25 s: floor(i * 30 / 25)
    assert [index_of(f) for f in media.frames] == [i * 30 // 25 for i in range(40)]


def test_same_rate_keeps_every_frame_and_higher_rate_repeats(clip: Path, index_of) -> None:
    same = read_media(clip, fps=30)
    assert [index_of(f) for f in same.frames] == list(range(48))
    double = read_media(clip, fps=60)
    assert [index_of(f) for f in double.frames] == [i // 2 for i in range(96)]
    # a repeated frame is the same picture, not a blend
    np.testing.assert_array_equal(double.frames[10], double.frames[11])


def test_audio_resampled_to_mono_with_video_length(clip: Path) -> None:
    media = read_media(clip, fps=25, sample_rate=16000)
    assert media.audio is not None and media.audio.dtype == np.float32
    assert media.audio.shape == (40 * 16000 // 25,)
    assert np.abs(media.audio).max() <= 1.0
    # the 440 Hz tone survives resampling, and the stereo downmix keeps its 0.3 amplitude
    body = media.audio[2000:22000]
    spectrum = np.abs(np.fft.rfft(body))
    assert abs(np.argmax(spectrum) * 16000 / body.size - 440) < 2
    assert 0.25 < np.abs(body).max() < 0.35


def test_audio_and_video_stay_in_sync(click_clip: Path, index_of) -> None:
    media = read_media(click_clip, fps=25)
    onset = np.argmax(np.abs(media.audio) > 0.3) / 16000
    assert abs(onset - 0.8) < 0.005
    assert index_of(media.frames[20]) == 24  # 0.8 s shows source frame 24
    later = read_media(click_clip, fps=25, start=0.3)
    assert index_of(later.frames[0]) == 9
    onset = np.argmax(np.abs(later.audio) > 0.3) / 16000
    assert abs(onset - 0.5) < 0.005
    assert later.audio.size == later.num_frames * 16000 // 25


def test_max_frames_and_start(clip: Path, index_of) -> None:
    media = read_media(clip, fps=25, start=0.5, max_frames=5)
    assert media.num_frames == 5
    assert [index_of(f) for f in media.frames] == [15, 16, 17, 18, 19]
    assert media.audio.shape == (5 * 640,)


def test_bytes_input_matches_path(clip: Path) -> None:
    a = read_media(clip, max_frames=10)
    b = read_media(clip.read_bytes(), max_frames=10)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)


def test_video_only_has_no_audio(video_only: Path) -> None:
    media = read_media(video_only, fps=25)
    assert media.audio is None and media.num_frames == 40


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


def test_start_past_the_end_gives_no_frames(clip: Path) -> None:
    with pytest.raises(MediaError, match="no video frames"):
        read_media(clip, start=5.0)


@pytest.mark.parametrize(
    "kwargs", [{"fps": 0}, {"fps": 25.0}, {"sample_rate": 10}, {"max_frames": 0}, {"start": -1.0}, {"start": float("nan")}]
)
def test_bad_arguments_raise_config_error(clip: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        read_media(clip, **kwargs)


def test_memory_bound_refuses_before_decoding_everything(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mio, "MAX_DECODED_BYTES", 10 * 320 * 240 * 3)
    with pytest.raises(MediaError, match="MiB"):
        read_media(clip)
    assert read_media(clip, max_frames=10).num_frames == 10


def test_display_rotation_is_applied(tmp_path: Path, index_of) -> None:
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 32
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(90)
        for i in range(5):
            picture = np.zeros((32, 64, 3), np.uint8)
            picture[:, :32] = 200  # bright left half
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    media = read_media(path)
    assert media.frames.shape[1:3] == (64, 32) and media.source_size == (32, 64)
    # rotated 90 degrees counterclockwise: the left half ends up at the bottom
    assert media.frames[0, 40:, :, 0].mean() > 150 and media.frames[0, :24, :, 0].mean() < 50


def test_write_mp4_round_trip(clip: Path, tmp_path: Path, index_of) -> None:
    media = read_media(clip, fps=25)
    out = tmp_path / "out.mp4"
    write_media(out, media.frames, 25, media.audio, 16000)
    back = read_media(out, fps=25)
    assert back.frames.shape == media.frames.shape
    assert np.abs(back.frames.astype(int) - media.frames).mean() < 3
    assert [index_of(f) for f in back.frames] == [index_of(f) for f in media.frames]
    # audio comes back the same length and without a shift
    a, b = media.audio[1000:20000], back.audio
    lags = [float(np.dot(a, b[1000 + k : 20000 + k])) for k in range(-40, 41)]
    assert int(np.argmax(lags)) - 40 == 0
    assert back.audio.size == media.audio.size


def test_write_wav_and_load_audio(tmp_path: Path) -> None:
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
    path = tmp_path / "tone.wav"
    write_media(path, None, 25, tone, 16000)
    back = load_audio(path, sample_rate=16000)
    assert back.dtype == np.float32 and back.shape == tone.shape
    assert np.abs(back - tone).max() < 1 / 16000
    half = load_audio(path, sample_rate=8000)
    assert abs(half.size - 8000) <= 1


def test_load_audio_of_a_video_resamples(clip: Path) -> None:
    audio = load_audio(clip, sample_rate=16000)
    assert audio.ndim == 1 and abs(audio.size - 1.6 * 16000) < 1024  # AAC pads its last frame


def test_load_audio_without_audio_stream(video_only: Path) -> None:
    with pytest.raises(MediaError, match="no audio"):
        load_audio(video_only)


def test_write_errors(tmp_path: Path) -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(MediaError, match="cannot write"):
        write_media(tmp_path / "x.gif", frames, 25)
    with pytest.raises(MediaError, match="even"):
        write_media(tmp_path / "x.mp4", np.zeros((2, 15, 16, 3), np.uint8), 25)
    with pytest.raises(MediaError, match="needs audio"):
        write_media(tmp_path / "x.wav", frames, 25)
    with pytest.raises(MediaError):
        write_wav(tmp_path / "x.wav", np.array([2.0], np.float32), 16000)
    with pytest.raises(MediaError):
        write_media(tmp_path / "missing_dir" / "x.mp4", frames, 25)


@pytest.mark.parametrize(
    "frames, audio",
    [
        (np.zeros((2, 8, 8, 3), np.float32), None),
        (np.zeros((8, 8, 3), np.uint8), None),
        (np.zeros((0, 8, 8, 3), np.uint8), None),
        (np.zeros((2, 8, 8, 4), np.uint8), None),
        (np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 10), np.float32)),
        (np.zeros((2, 8, 8, 3), np.uint8), np.full(10, 1.5, np.float32)),
        (np.zeros((2, 8, 8, 3), np.uint8), np.full(10, np.nan, np.float32)),
        (np.zeros((2, 8, 8, 3), np.uint8), np.zeros(10, np.int16)),
    ],
)
def test_from_arrays_rejects_bad_arrays(frames: np.ndarray, audio: np.ndarray | None) -> None:
    with pytest.raises(MediaError):
        Media.from_arrays(frames, 25, audio, 16000)


def test_from_arrays_accepts_good_arrays() -> None:
    media = Media.from_arrays(np.zeros((3, 8, 10, 3), np.uint8), 25, np.zeros(1920, np.float64), 16000)
    assert media.source_size == (10, 8) and media.audio.dtype == np.float32
    assert media.duration == pytest.approx(0.12)
    with pytest.raises(MediaError):
        Media.from_arrays(np.zeros((3, 8, 10, 3), np.uint8), 0)
