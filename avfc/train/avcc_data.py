"""Aligned audio-visual data for the AVCC motion models: keypoints, 700C fields, key keypoints.

For one talking-face clip this computes exactly what the codec's encoder sees:

* the face crop at 256x256, 25 fps, through :func:`avfc.api.prepare` (the same read and crop as
  :func:`avfc.api.encode`);
* the quantized keypoints of every frame, :func:`avfc.codec.encoder.analyse_clip` as ``encode``
  runs it, ``(T, C)`` int32;
* the Codec2 700C tokens of the clip's 16 kHz mono speech, trimmed to the video's duration as
  ``encode`` does, so that there are ``T`` tokens and token ``t`` covers frame ``t``'s 40 ms
  (the codec compensates its own delay), and their four fields ``(T, 4)`` int64;
* the keypoints of the key picture *as the decoder sees it*: frame 0 AV1-coded at the default
  QP, decoded, then :func:`avfc.codec.common.make_reference`; ``(C,)`` int32.

Results are cached as ``.npz`` (no pickle) under ``$AVFC_CACHE/avcc`` (default
``~/.cache/avfc/avcc``), never in the repository; the key covers the file's path, size and
mtime, the model and every setting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, cast

import numpy as np
import torch

from avfc.avcc.tokens import fields_array
from avfc.errors import ConfigError, MediaError
from avfc.train.data import VIDEO_SUFFIXES, default_cache_dir, source_identity

#: bump when the preparation changes, so old caches are not reused
PREP_VERSION = 1
#: the coded picture size and frame rate the AVCC models are trained for
SIZE = 256
FPS = 25
#: keypoint precision of the stream (the grid of avcc-mrdac-cpu-v1; pass another one for other models)
PRECISION = 6


@dataclass(frozen=True)
class AvccClip:
    """One clip's aligned data (see the module doc)."""

    name: str
    q: np.ndarray  # (T, C) int32 quantized keypoints of every frame
    fields: np.ndarray  # (T, 4) int64 700C fields (vq1, vq2, energy, pitch), row t = frame t
    ref_q: np.ndarray  # (C,) int32 keypoints of the decoded key picture
    key: np.ndarray  # (S, S, 3) uint8 decoded key picture

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.q.shape[0])


def find_clips(folder: str | Path) -> list[Path]:
    """Video files directly in ``folder``, sorted by name.

    Raises:
        MediaError: if the folder does not exist or holds no video.
    """
    root = Path(folder)
    if not root.is_dir():
        raise MediaError(f"no such data folder: {root}")
    out = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not out:
        raise MediaError(f"no video files in {root}")
    return out


def _cache_path(path: Path, model: str, max_frames: Optional[int], cache_dir: Path, precision: int,
                hysteresis: float) -> Path:
    key = f"{PREP_VERSION}|{path.resolve()}|{source_identity(path)}|{model}|{SIZE}|{FPS}|{precision}|{max_frames}"
    if hysteresis:  # keys of the plain quantizer stay as they were: existing caches remain valid
        key += f"|h{hysteresis!r}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / "avcc" / f"{path.stem}-{digest}.npz"


def _read(path: Path, model_name: str, max_frames: Optional[int], precision: int = PRECISION,
          hysteresis: float = 0.0):
    from avfc.api import prepare
    from avfc.config import EncoderConfig
    from avfc.media import read_media

    cfg = EncoderConfig.make(model=model_name, size=SIZE, fps=FPS, kp_precision=precision,
                             kp_hysteresis=hysteresis, max_frames=max_frames)
    media = read_media(path, fps=cfg.fps, sample_rate=16000, max_frames=cfg.max_frames)
    frames, _ = prepare(media, cfg)
    return cfg, media, frames


def load_frames(path: str | Path, model: str = "mrdac-cpu-v1", max_frames: Optional[int] = None) -> np.ndarray:
    """The face-cropped frames ``(T, 256, 256, 3)`` uint8 that :func:`load_clip` analysed (not cached).

    Raises:
        MediaError: unreadable media.
    """
    return _read(Path(path), model, max_frames)[2]


def _compute(path: Path, model_name: str, max_frames: Optional[int], precision: int,
             hysteresis: float) -> AvccClip:
    from avfc.audio import make_audio_codec_by_name
    from avfc.codec.common import make_reference
    from avfc.codec.encoder import analyse_clip
    from avfc.entropy import quantize
    from avfc.media import DEFAULT_QP, decode_intra, encode_intra
    from avfc.models.zoo import load_model

    cfg, media, frames = _read(path, model_name, max_frames, precision, hysteresis)
    if media.audio is None:
        raise MediaError(f"{path} has no audio track")
    model = load_model(cfg.model, cfg.size)
    q = analyse_clip(model, frames, cfg.kp_precision, cfg.kp_hysteresis)  # as avfc.encode analyses
    pcm = media.audio[: int(round(len(frames) / cfg.fps * 16000))]
    tokens = make_audio_codec_by_name("codec2", cfg.codec2_mode).encode(pcm)
    if len(tokens) != len(frames):
        raise MediaError(f"{path}: {len(tokens)} audio tokens for {len(frames)} frames")
    key = decode_intra(encode_intra(frames[0], "av1", DEFAULT_QP["av1"]), "av1", cfg.size, cfg.size)
    ref = make_reference(model, key, 0, cfg.kp_precision, torch.device("cpu"))
    ref_q = quantize(ref.keypoints.cpu().numpy().astype(np.float64), cfg.kp_precision).reshape(-1)
    return AvccClip(name=path.stem, q=q.astype(np.int32), fields=fields_array(cast(list[int], tokens)),  # (Codec2's tokens are ints)
                    ref_q=ref_q.astype(np.int32), key=key)


def load_clip(path: str | Path, model: str = "mrdac-cpu-v1", max_frames: Optional[int] = None,
              cache_dir: Optional[Path] = None, precision: int = PRECISION, hysteresis: float = 0.0) -> AvccClip:
    """The aligned data of one clip, computed once and cached as ``.npz``.

    Args:
        path: a talking-face video with speech.
        model: zoo model whose keypoint detector gives the motion.
        max_frames: use at most this many frames (None: all).
        cache_dir: cache root (default ``$AVFC_CACHE`` or ``~/.cache/avfc``).
        precision, hysteresis: the encoder's keypoint grid and dead zone.

    Raises:
        MediaError: unreadable media, no audio, or misaligned tokens.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"no such file: {p}")
    cache = _cache_path(p, model, max_frames, cache_dir or default_cache_dir(), precision, hysteresis)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return AvccClip(name=p.stem, q=z["q"], fields=z["fields"], ref_q=z["ref_q"], key=z["key"])
    clip = _compute(p, model, max_frames, precision, hysteresis)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, q=clip.q, fields=clip.fields, ref_q=clip.ref_q, key=clip.key)
    tmp.replace(cache)
    return clip


def load_clips(folders: Sequence[str | Path], model: str = "mrdac-cpu-v1",
               max_frames: Optional[int] = None, precision: int = PRECISION,
               hysteresis: float = 0.0) -> list[AvccClip]:
    """:func:`load_clip` for every video in ``folders`` (clips without audio are skipped)."""
    out = []
    for folder in folders:
        for path in find_clips(folder):
            try:
                out.append(load_clip(path, model, max_frames, precision=precision, hysteresis=hysteresis))
            except MediaError:
                continue
    return out


def split_clips(clips: Sequence[AvccClip], held_out: str) -> tuple[list[AvccClip], list[AvccClip]]:
    """``(training, validation)`` clips: validation are those named in the comma-separated
    ``held_out`` (ConfigError when one of them is not among ``clips``)."""
    held = {s for s in held_out.split(",") if s}
    missing = held - {c.name for c in clips}
    if missing:
        raise ConfigError(f"validation clips not found: {sorted(missing)}")
    return [c for c in clips if c.name not in held], [c for c in clips if c.name in held]

