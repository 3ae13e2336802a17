"""Synthetic media for the media tests, written with PyAV into temporary directories."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest


def frame_index_picture(index: int, width: int, height: int) -> np.ndarray:
    """A picture that encodes ``index`` in its brightness (bands survive lossy coding).

    The left half is a grey level of 5 * index; the right half has a moving square.
    """
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2] = min(255, 5 * index)
    side = height // 4
    x = (width // 2) + (index * 3) % max(1, width // 2 - side)
    rgb[height // 3 : height // 3 + side, x : x + side] = (255, 64, 0)
    return rgb


def grey_index(rgb: np.ndarray) -> int:
    """Recover the index written by :func:`frame_index_picture`."""
    h, w = rgb.shape[:2]
    return int(round(float(rgb[h // 4 : 3 * h // 4, w // 8 : 3 * w // 8].mean()) / 5))


def write_clip(
    path: Path,
    *,
    frames: int = 48,
    fps: int = 30,
    size: tuple[int, int] = (320, 240),
    audio_rate: int | None = 44100,
    audio_layout: str = "stereo",
    video: bool = True,
    tone_hz: float = 440.0,
    click_at: float | None = None,
) -> Path:
    """Write an mp4 (H.264 + AAC) of moving shapes and a sine tone.

    ``click_at``: a loud 10 ms burst in the audio at that many seconds (for sync tests).
    """
    width, height = size
    with av.open(str(path), mode="w") as container:
        vstream = None
        if video:
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height = width, height
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": "10", "preset": "ultrafast"}
        astream = None
        if audio_rate is not None:
            astream = container.add_stream("aac", rate=audio_rate, layout=audio_layout)
        if vstream is not None:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(frame_index_picture(i, width, height), format="rgb24")
                frame.pts = i
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
        if astream is not None:
            n = int(round(frames / fps * audio_rate))
            t = np.arange(n) / audio_rate
            mono = 0.3 * np.sin(2 * np.pi * tone_hz * t)
            if click_at is not None:
                mono[:] = 0.0
                i0 = int(round(click_at * audio_rate))
                mono[i0 : i0 + audio_rate // 100] = 0.9
            channels = 2 if audio_layout == "stereo" else 1
            data = np.tile(mono.astype(np.float32), (channels, 1))
            for pos in range(0, n, 1024):
                chunk = np.ascontiguousarray(data[:, pos : pos + 1024])
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=audio_layout)
                aframe.sample_rate = audio_rate
                aframe.pts = pos
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary directory shared by the clips of one test module."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> Path:
    """48 frames at 30 fps, 320x240, a 440 Hz tone at 44.1 kHz stereo."""
    return write_clip(media_dir / "clip.mp4")


@pytest.fixture(scope="module")
def click_clip(media_dir: Path) -> Path:
    """60 frames at 30 fps with a single click in the audio at 0.8 s (frame 24)."""
    return write_clip(media_dir / "click.mp4", frames=60, click_at=0.8)


@pytest.fixture(scope="module")
def video_only(media_dir: Path) -> Path:
    return write_clip(media_dir / "video_only.mp4", audio_rate=None)


@pytest.fixture(scope="module")
def audio_only(media_dir: Path) -> Path:
    return write_clip(media_dir / "audio_only.mp4", video=False)


@pytest.fixture(scope="module")
def garbage(media_dir: Path) -> Path:
    path = media_dir / "garbage.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.fixture
def index_of():
    """The frame index a picture of :func:`frame_index_picture` shows."""
    return grey_index


@pytest.fixture
def clip_writer():
    """:func:`write_clip`, for tests that need a clip of their own."""
    return write_clip
