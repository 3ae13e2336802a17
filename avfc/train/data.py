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

*Coded references* (:func:`prepare_coded`): the decoder never sees a clean reference, only the
key picture as the intra codec decoded it, at a few hundred bytes. With coded references the
sampler takes every reference from pictures of every ``stride``-th frame coded and decoded
with the key-frame codec at one of several QPs (cached like the clips), so the model learns to
draw from, and to clean up, what the decoder really has.
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
from avfc.media import apply_crop, decode_intra, encode_intra, find_crop, read_media

#: file suffixes :func:`find_videos` picks up
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm", ".m4v")
#: bump when the preparation changes, so old caches are not reused
PREP_VERSION = 1



def source_identity(path: str | os.PathLike[str]) -> str:
    """A training source's identity for cache keys: its size and the sha256 of its bytes.

    Not its modification time: a data folder copied or mounted again (a new machine, a new
    session) keeps its bytes but not its times, and every cache keyed on times would be
    recomputed for nothing (25 minutes of CPU for the v4 corpus)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return f"{size}|{h.hexdigest()}"

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
        ident = source_identity(src)
    except OSError as exc:
        raise MediaError(f"cannot read training clip {str(src)!r}: {exc}") from exc
    key = f"{src}|{ident}|{size}|{fps}|{max_frames}|v{PREP_VERSION}"
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


def clip_paths(dirs: Sequence[str | os.PathLike[str]], size: int, cache_dir: str | os.PathLike[str] | None = None,
               *, fps: int = 25, max_frames: int = 500, min_frames: int = 2) -> list[Path]:
    """Prepare (or reuse) every clip under ``dirs``; the cached files of those with at least
    ``min_frames`` frames."""
    paths = []
    for video in find_videos(dirs):
        path = prepare_clip(video, size, cache_dir, fps=fps, max_frames=max_frames)
        if load_clip(path, size).shape[0] >= min_frames:
            paths.append(path)
    if not paths:
        raise ConfigError(f"no usable training clips (>= {min_frames} frames) under {[str(d) for d in dirs]}")
    return paths


def load_clips(dirs: Sequence[str | os.PathLike[str]], size: int, cache_dir: str | os.PathLike[str] | None = None,
               *, fps: int = 25, max_frames: int = 500, min_frames: int = 2) -> list[np.ndarray]:
    """Prepare (or reuse) and memory-map every clip under ``dirs`` with at least ``min_frames`` frames."""
    return [load_clip(p, size) for p in clip_paths(dirs, size, cache_dir, fps=fps, max_frames=max_frames,
                                                   min_frames=min_frames)]


def coded_positions(length: int, stride: int) -> np.ndarray:
    """The frames of a clip of ``length`` frames that :func:`prepare_coded` codes: ``0, stride, ...``."""
    return np.arange(0, length, stride, dtype=np.int64)


def code_references(clip: np.ndarray, codec: str, qps: Sequence[int], stride: int) -> np.ndarray:
    """Every ``stride``-th frame of ``clip`` ``(T, S, S, 3)`` coded and decoded with the key-frame ``codec``
    at each of ``qps``: ``(len(qps), N, S, S, 3)`` uint8, the pictures the decoder gets."""
    size = int(clip.shape[1])
    pos = coded_positions(clip.shape[0], stride)
    coded = np.empty((len(qps), len(pos), size, size, 3), dtype=np.uint8)
    for a, qp in enumerate(qps):
        for b, t in enumerate(pos):
            data = encode_intra(np.ascontiguousarray(clip[t]), codec, int(qp))  # type: ignore[arg-type]
            coded[a, b] = decode_intra(data, codec, size, size)  # type: ignore[arg-type]
    return coded


def prepare_coded(clip_path: str | os.PathLike[str], size: int, codec: str, qps: Sequence[int],
                  stride: int) -> Path:
    """Code and decode every ``stride``-th frame of a cached clip with the key-frame ``codec`` at
    each of ``qps``; cache ``(len(qps), N, size, size, 3)`` uint8 beside the clip and return its path.

    The pictures are exactly what :func:`avfc.media.decode_intra` gives the decoder (about 0.2 s
    per picture at 256 px, once per clip and setting).
    """
    if stride < 1 or not qps:
        raise ConfigError("coded references need a stride >= 1 and at least one QP")
    src = Path(clip_path)
    key = f"{src.name}|{codec}|{','.join(str(int(q)) for q in qps)}|{stride}|v{PREP_VERSION}"
    out = src.with_name(f"{src.stem}-coded-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npy")
    if out.is_file():
        return out
    coded = code_references(load_clip(src, size), codec, qps, stride)
    tmp = out.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, coded, allow_pickle=False)
    os.replace(tmp, out)
    return out


def load_coded(path: str | os.PathLike[str], clip: np.ndarray, qps: int, stride: int) -> np.ndarray:
    """Memory-map coded references of ``clip`` (:func:`prepare_coded`), checking their shape."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MediaError(f"cannot read coded references {str(path)!r}: {exc}") from exc
    want = (qps, len(coded_positions(clip.shape[0], stride)), *clip.shape[1:])
    if arr.dtype != np.uint8 or arr.shape != want:
        raise MediaError(f"coded references {str(path)!r} are {arr.dtype} {arr.shape}, expected {want} uint8")
    return arr


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

    With ``coded`` (per clip, the arrays of :func:`prepare_coded` made with ``coded_stride``)
    the references are drawn among the coded positions instead, each shown as decoded at a
    random one of its QPs, and with probability ``same_frame`` the target is the first
    reference's own frame (the model then learns to restore the coded picture itself).
    """

    def __init__(self, clips: Sequence[np.ndarray], num_refs: int, *, max_ref_distance: int = 50,
                 scale_jitter: float = 0.15, flip: bool = True, color_jitter: float = 0.1,
                 seed: int = 0, rank: int = 0, coded: Sequence[np.ndarray] | None = None,
                 coded_stride: int = 1, same_frame: float = 0.0) -> None:
        super().__init__()
        if not clips:
            raise ConfigError("ClipSampler needs at least one clip")
        if num_refs < 1 or max_ref_distance < 1:
            raise ConfigError("num_refs and max_ref_distance must be >= 1")
        if coded is not None and len(coded) != len(clips):
            raise ConfigError(f"{len(coded)} coded reference arrays for {len(clips)} clips")
        if coded_stride < 1 or not 0.0 <= same_frame <= 1.0:
            raise ConfigError("coded_stride must be >= 1 and same_frame in [0, 1]")
        self.coded = None if coded is None else list(coded)
        self.coded_stride, self.same_frame = int(coded_stride), float(same_frame)
        self.clips = list(clips)
        self.num_refs = int(num_refs)
        self.max_ref_distance = int(max_ref_distance)
        self.scale_jitter, self.flip, self.color_jitter = float(scale_jitter), bool(flip), float(color_jitter)
        self.seed, self.rank = int(seed), int(rank)
        lengths = np.array([c.shape[0] for c in self.clips], dtype=np.float64)
        self.p = lengths / lengths.sum()

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One sample drawn with ``rng``."""
        ci = int(rng.choice(len(self.clips), p=self.p))
        clip = self.clips[ci]
        t = int(rng.integers(0, clip.shape[0]))
        if self.coded is not None:
            return self._coded_sample(rng, clip, self.coded[ci], t)
        lo, hi = max(0, t - self.max_ref_distance), min(clip.shape[0] - 1, t + self.max_ref_distance)
        pool = np.array([i for i in range(lo, hi + 1) if i != t] or [t])
        refs = rng.choice(pool, size=self.num_refs, replace=len(pool) < self.num_refs)
        idx = np.concatenate(([t], refs)).astype(np.int64)
        return self._finish(rng, clip[idx], idx)

    def _coded_sample(self, rng: np.random.Generator, clip: np.ndarray, coded: np.ndarray,
                      t: int) -> dict[str, torch.Tensor]:
        positions = coded_positions(clip.shape[0], self.coded_stride)
        near = np.flatnonzero(np.abs(positions - t) <= self.max_ref_distance)
        if near.size == 0:  # no coded frame in the window: the nearest one
            near = np.array([int(np.argmin(np.abs(positions - t)))])
        slots = rng.choice(near, size=self.num_refs, replace=near.size < self.num_refs)
        if rng.random() < self.same_frame:
            t = int(positions[slots[0]])
        qps = rng.integers(0, coded.shape[0], size=self.num_refs)
        pictures = np.stack([clip[t], *(coded[q, s] for q, s in zip(qps, slots))])
        return self._finish(rng, pictures, np.concatenate(([t], positions[slots])).astype(np.int64))

    def _finish(self, rng: np.random.Generator, pictures: np.ndarray, idx: np.ndarray) -> dict[str, torch.Tensor]:
        frames = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2).float() / 255.0
        frames = augment(frames, rng, scale_jitter=self.scale_jitter, flip=self.flip, color_jitter=self.color_jitter)
        return {"frames": frames.contiguous(), "indices": torch.from_numpy(idx)}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker])
        while True:
            yield self.sample(rng)
