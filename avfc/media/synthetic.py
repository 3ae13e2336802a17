"""Synthetic talking-face media: a drifting, blinking cartoon face with syllabic speech.

Used by the tests, the examples and the benchmarks' smoke runs; no real data needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, syllabic signal: harmonics of a gliding pitch under a 4 Hz envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum((0.6 / k) * np.sin(k * phase) for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.7
    x = 0.25 * x * env + 0.002 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def talking_face(n: int, width: int = 160, height: int = 128, seed: int = 0) -> np.ndarray:
    """Frames (n, height, width, 3) uint8: a face that drifts, blinks and opens its mouth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([40 + 60 * xx / width, 60 + 40 * yy / height, 90 + 0 * xx], -1)
    frames = np.empty((n, height, width, 3), np.uint8)
    s = min(width, height)
    for i in range(n):
        cx = width / 2 + 0.06 * s * np.sin(2 * np.pi * i / 40)
        cy = height / 2 + 0.04 * s * np.cos(2 * np.pi * i / 55)
        img = bg.copy()
        face = ((xx - cx) / (0.28 * s)) ** 2 + ((yy - cy) / (0.36 * s)) ** 2 < 1
        img[face] = (205, 160, 130)
        for ex in (-0.11, 0.11):
            eye = ((xx - cx - ex * s) / (0.05 * s)) ** 2 + ((yy - cy + 0.1 * s) / (0.03 * s)) ** 2 < 1
            img[eye] = (30, 30, 40)
        opening = 0.01 + 0.05 * max(0.0, np.sin(2 * np.pi * 4 * i / 25))
        mouth = ((xx - cx) / (0.1 * s)) ** 2 + ((yy - cy - 0.17 * s) / (opening * s)) ** 2 < 1
        img[mouth] = (120, 30, 40)
        img += rng.normal(0, 2, img.shape)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: Path, n: int = 50, width: int = 160, height: int = 128, fps: int = 25,
               audio: bool = True, audio_rate: int = 22050) -> Path:
    """Write a synthetic talking-face clip (H.264 + AAC stereo) with PyAV."""
    import av

    frames = talking_face(n, width, height)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "18", "preset": "ultrafast"}
        if audio:
            ast = out.add_stream("aac", rate=audio_rate)
            ast.layout = "stereo"
        for f in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if audio:
            pcm = speech_like(n / fps, audio_rate)
            stereo = np.stack([pcm, pcm])
            step = 1024
            for k in range(0, stereo.shape[1], step):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, k:k + step]), format="fltp",
                                                layout="stereo")
                fr.sample_rate = audio_rate
                fr.pts = k
                for p in ast.encode(fr):
                    out.mux(p)
            for p in ast.encode():
                out.mux(p)
    return path
