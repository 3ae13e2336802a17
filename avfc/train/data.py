"""Training data: face-cropped clips cached as uint8 ``.npy``, and random multi-reference samples.

A clip is read with :func:`avfc.media.read_media` at a fixed frame rate, cropped once around
the face (:func:`avfc.media.find_crop`, a fixed square per clip), resized to the training size
and cached as ``(T, S, S, 3)`` uint8 under a cache folder outside the repository (default
``~/.cache/avfc/clips``, or ``$AVFC_CACHE/clips``). The cache key covers the file's path, size
and modification time and every preparation setting, so a changed file or setting is prepared
again. Cached arrays are memory-mapped, never pickled.

A sample is ``1 + R`` frames of one clip: the target first, then ``R`` references within
``max_ref_distance`` frames of it, with their frame indices (for the temporal weights). The
same random zoom, horizontal flip and colour jitter apply to every frame of a sample.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from avfc.errors import ConfigError, MediaError
from avfc.media import apply_crop, find_crop, read_media

#: file suffixes :func:`find_videos` picks up
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm", ".m4v")
#: bump when the preparation changes, so old caches are not reused
PREP_VERSION = 1


def default_cache_dir() -> Path:
    """``$AVFC_CACHE`` or ``~/.cache/avfc``."""
    env = os.environ.get("AVFC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avfc"


def find_videos(dirs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Video files under ``dirs`` (recursively, sorted); a file in ``dirs`` is taken as is."""
    found: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        else:
            raise ConfigError(f"training data folder {str(p)!r} does not exist")
    return found


def prepare_clip(path: str | os.PathLike[str], size: int, cache_dir: str | os.PathLike[str] | None = None,
                 *, fps: int = 25, max_frames: int = 500) -> Path:
    """Crop and resize one clip to ``(T, size, size, 3)`` uint8 and cache it; return the ``.npy`` path.

    Raises:
        MediaError: the clip cannot be read (see :func:`avfc.media.read_media`).
        ConfigError: a bad setting.
    """
    src = Path(path).resolve()
    try:
        st = src.stat()
    except OSError as exc:
        raise MediaError(f"cannot read training clip {str(src)!r}: {exc}") from exc
    key = f"{src}|{st.st_size}|{st.st_mtime_ns}|{size}|{fps}|{max_frames}|v{PREP_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out = folder / "clips" / f"{src.stem}-{size}-{digest}.npy"
    if out.is_file():
        return out
    media = read_media(src, fps=fps, max_frames=max_frames)
    frames = apply_crop(media.frames, find_crop(media.frames, method="face"), size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, frames, allow_pickle=False)
    os.replace(tmp, out)
    return out


def load_clip(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Memory-map a cached clip, checking that it is ``(T, size, size, 3)`` uint8."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MediaError(f"cannot read cached clip {str(path)!r}: {exc}") from exc
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (size, size, 3) or arr.shape[0] < 1:
        raise MediaError(f"cached clip {str(path)!r} is {arr.dtype} {arr.shape}, expected (T, {size}, {size}, 3) uint8")
    return arr


def load_clips(dirs: Sequence[str | os.PathLike[str]], size: int, cache_dir: str | os.PathLike[str] | None = None,
               *, fps: int = 25, max_frames: int = 500, min_frames: int = 2) -> list[np.ndarray]:
    """Prepare (or reuse) and memory-map every clip under ``dirs`` with at least ``min_frames`` frames."""
    clips = []
    for video in find_videos(dirs):
        clip = load_clip(prepare_clip(video, size, cache_dir, fps=fps, max_frames=max_frames), size)
        if clip.shape[0] >= min_frames:
            clips.append(clip)
    if not clips:
        raise ConfigError(f"no usable training clips (>= {min_frames} frames) under {[str(d) for d in dirs]}")
    return clips


def augment(frames: torch.Tensor, rng: np.random.Generator, *, scale_jitter: float = 0.15,
            flip: bool = True, color_jitter: float = 0.1) -> torch.Tensor:
    """One random zoom-in crop, flip and colour jitter, applied alike to frames ``(N, 3, S, S)`` in [0, 1]."""
    n, _, s, _ = frames.shape
    if scale_jitter > 0:
        side = int(round(s / (1.0 + rng.uniform(0.0, scale_jitter))))
        if side < s:
            y, x = (int(v) for v in rng.integers(0, s - side + 1, size=2))
            frames = F.interpolate(frames[:, :, y:y + side, x:x + side], size=(s, s), mode="bilinear",
                                   align_corners=False)
    if flip and rng.random() < 0.5:
        frames = frames.flip(-1)
    if color_jitter > 0:
        b, c, sat = (float(v) for v in rng.uniform(1.0 - color_jitter, 1.0 + color_jitter, size=3))
        frames = frames * b
        mean = frames.mean(dim=(1, 2, 3), keepdim=True)
        frames = (frames - mean) * c + mean
        grey = (frames * frames.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        frames = (frames - grey) * sat + grey
    return frames.clamp(0.0, 1.0)


class ClipSampler(IterableDataset):
    """An endless stream of ``{"frames": (1 + R, 3, S, S) float32, "indices": (1 + R,) int64}``.

    Clips are drawn in proportion to their length; the target frame uniformly; the ``R``
    references uniformly among the other frames within ``max_ref_distance`` of the target
    (repeated only when the window is too small). Each worker (and each ``rank``) draws
    its own seeded stream.
    """

    def __init__(self, clips: Sequence[np.ndarray], num_refs: int, *, max_ref_distance: int = 50,
                 scale_jitter: float = 0.15, flip: bool = True, color_jitter: float = 0.1,
                 seed: int = 0, rank: int = 0) -> None:
        super().__init__()
        if not clips:
            raise ConfigError("ClipSampler needs at least one clip")
        if num_refs < 1 or max_ref_distance < 1:
            raise ConfigError("num_refs and max_ref_distance must be >= 1")
        self.clips = list(clips)
        self.num_refs = int(num_refs)
        self.max_ref_distance = int(max_ref_distance)
        self.scale_jitter, self.flip, self.color_jitter = float(scale_jitter), bool(flip), float(color_jitter)
        self.seed, self.rank = int(seed), int(rank)
        lengths = np.array([c.shape[0] for c in self.clips], dtype=np.float64)
        self.p = lengths / lengths.sum()

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One sample drawn with ``rng``."""
        clip = self.clips[int(rng.choice(len(self.clips), p=self.p))]
        t = int(rng.integers(0, clip.shape[0]))
        lo, hi = max(0, t - self.max_ref_distance), min(clip.shape[0] - 1, t + self.max_ref_distance)
        pool = np.array([i for i in range(lo, hi + 1) if i != t] or [t])
        refs = rng.choice(pool, size=self.num_refs, replace=len(pool) < self.num_refs)
        idx = np.concatenate(([t], refs)).astype(np.int64)
        frames = torch.from_numpy(np.ascontiguousarray(clip[idx])).permute(0, 3, 1, 2).float() / 255.0
        frames = augment(frames, rng, scale_jitter=self.scale_jitter, flip=self.flip, color_jitter=self.color_jitter)
        return {"frames": frames.contiguous(), "indices": torch.from_numpy(idx)}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker])
        while True:
            yield self.sample(rng)
