"""The training corpus of model v4: face crops of many clips and photos, cached once, read lazily.

Layout of the cache (a folder outside the repository, ``<cache>/corpus``)::

    items/<folder>__<stem>-<key>/frames-<S>.npy    (T, S, S, 3) uint8, one per training size S
    items/<folder>__<stem>-<key>/coded-<S>-<codec>-q<qps>-s<stride>.npy
                                                   (Q, N, S, S, 3) uint8: every stride-th frame
                                                   coded and decoded with the key-frame codec
    items/<folder>__<stem>-<key>/meta.json         source, kind, crop box, frame count, timings
    manifest.json                                  every item, its people and split side, and
                                                   the files dropped (an evaluation person)

``<key>`` hashes the source file (path relative to the data root, size, modification time) and
the reading settings (frame rate, frame limit), so a changed file is prepared again and an
unchanged one never is (``meta.json`` is written last; an interrupted item is redone). A photo
is a clip of one frame. Arrays are plain ``.npy`` (``allow_pickle=False``), memory-mapped by the
loader, which opens them lazily in each worker process.

Videos of any size and frame rate are read in two passes, so a 1080x1920 portrait clip never
sits in memory at full size: the first pass keeps frames scaled to at most
:data:`avfc.media.crop.DETECT_SIDE` pixels and chooses the crop there exactly as the codec does
(:func:`avfc.media.find_crop`: the median Haar face box of frames spread over the clip, 1.8 times
the face side; a square source whole), the second crops and resizes every frame as it is decoded.
Frame timing is :func:`avfc.media.read_media`'s (frames picked by timestamp at ``fps``).
Photos are cropped around their largest face whatever their shape (:func:`box_around_face`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypedDict

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from avfc.errors import ConfigError, MediaError
from avfc.media import find_crop
from avfc.media.crop import DETECT_SIDE, CropBox, _detect_faces, box_around_face, center_square
from avfc.train.data import VIDEO_SUFFIXES, ClipSampler, augment, code_references, coded_positions, source_identity
from avfc.train.motion import MotionRange, photo_pair
from avfc.train.people import load_people, persons, split_files

#: the folders of ../shared/data that v4 trains on (av-eval/ and speech-eval/ never)
FOLDERS = ("av", "av2", "face", "face2", "images")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: bump when the preparation changes, so old cache entries are not reused
CORPUS_VERSION = 1


@dataclass
class Item:
    """One prepared source: where its arrays are (relative to the corpus folder) and who is in it."""

    rel: str  # path relative to the data root, "/" separated
    kind: str  # "video" or "photo"
    folder: str  # item folder, relative to the corpus folder
    frames: int
    box: list[int]  # crop x, y, w, h in display pixels of the source
    source_size: list[int]  # width, height
    people: list[str] = field(default_factory=list)
    side: str = "train"  # "train" or "dev"
    seconds: dict[str, float] = field(default_factory=dict)  # preparation time, per step


def corpus_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache_dir>/corpus`` (``$AVFC_CACHE`` or ``~/.cache/avfc`` when None)."""
    from avfc.train.data import default_cache_dir

    return (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "corpus"


def find_sources(root: str | os.PathLike[str], folders: Sequence[str] = FOLDERS) -> list[tuple[str, str]]:
    """``[(path relative to root, "video" | "photo")]`` under ``root/<folder>`` (recursively, sorted)."""
    base = Path(root)
    out: list[tuple[str, str]] = []
    for name in folders:
        d = base / name
        if not d.is_dir():
            raise ConfigError(f"corpus folder {str(d)!r} does not exist")
        for f in sorted(d.rglob("*")):
            suffix = f.suffix.lower()
            kind = "video" if suffix in VIDEO_SUFFIXES else "photo" if suffix in PHOTO_SUFFIXES else None
            if kind and f.is_file():
                out.append((f.relative_to(base).as_posix(), kind))
    return out


# ---------------------------------------------------------------------------------------------
# reading and cropping


def _decode_converted(path: Path, fps: int, max_frames: int,
                      make_convert: Callable[[int, int, int], Callable[[Any], Any]]) -> tuple[list[Any], tuple[int, int]]:
    """The frames :func:`avfc.media.read_media` would give (same timing rule), each passed
    through ``make_convert(width, height, rotation)(av_frame)`` as it is decoded; and the
    display size."""
    import av

    from avfc.media.io import _decode, _FrameRateConverter, _open, _seconds, _seek

    try:
        with _open(path) as container:
            if not container.streams.video:
                raise MediaError(f"no video stream in {str(path)!r}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            width, height = stream.codec_context.width, stream.codec_context.height
            origin = _seconds(stream.start_time, stream.time_base)
            if origin is not None:
                _seek(container, stream, origin)
            period = 1 / stream.average_rate if stream.average_rate else Fraction(1, fps)
            conv: _FrameRateConverter | None = None
            rotation = 0
            last = period
            for index, frame in enumerate(_decode(container, stream, path)):
                time_base = frame.time_base or stream.time_base
                when = _seconds(frame.pts, time_base)
                if when is None:
                    when = (origin or Fraction(0)) + index * period
                if conv is None:
                    origin = when if origin is None else origin
                    rotation = round(frame.rotation / 90) * 90 % 360
                    conv = _FrameRateConverter(origin, fps, max_frames, make_convert(width, height, rotation))
                last = _seconds(frame.duration, time_base) or period
                conv.push(when, frame)
                if conv.full:
                    break
            else:
                if conv is not None and conv.held is not None:
                    conv.finish(conv.held[0] + last)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot decode the video of {str(path)!r}: {exc}") from exc
    if conv is None or not conv.out:
        raise MediaError(f"{str(path)!r}: no video frames")
    size = (height, width) if rotation in (90, 270) else (width, height)
    return conv.out, size


def _rgb(frame: Any, width: int, height: int, rotation: int) -> np.ndarray:
    kwargs = {"src_color_range": frame.color_range} if frame.color_range else {}
    rgb = frame.to_ndarray(format="rgb24", width=width, height=height, **kwargs)
    return np.rot90(rgb, k=rotation // 90) if rotation else rgb


def _resize(region: np.ndarray, size: int) -> np.ndarray:
    """As :func:`avfc.media.apply_crop`: area when shrinking, cubic when enlarging, copy when equal."""
    if region.shape[0] == size:
        return np.ascontiguousarray(region)
    interp = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(region, (size, size), interpolation=interp)


def read_video_crops(path: str | os.PathLike[str], sizes: Sequence[int], *, fps: int = 25,
                     max_frames: int = 500) -> tuple[dict[int, np.ndarray], CropBox, tuple[int, int]]:
    """``({size: (T, size, size, 3) uint8}, crop box, (width, height))`` of a video, in two
    passes (see the module doc): never more than one full-size frame in memory."""
    src = Path(path)

    def small(width: int, height: int, rotation: int) -> Callable[[Any], np.ndarray]:
        scale = min(1.0, DETECT_SIDE / max(width, height))
        w, h = max(2, round(width * scale)), max(2, round(height * scale))
        return lambda f: _rgb(f, w, h, rotation)

    preview, (width, height) = _decode_converted(src, fps, max_frames, small)
    frames = np.stack(preview)
    del preview
    sh, sw = frames.shape[1:3]
    box = find_crop(frames, method="face")
    del frames
    if (sw, sh) != (width, height):  # the box was chosen on the scaled copy: back to full size
        f = width / sw
        side = min(round(box.w * f), width, height)
        x = min(max(round(box.x * f), 0), width - side)
        y = min(max(round(box.y * (height / sh)), 0), height - side)
        box = CropBox(int(x), int(y), int(side), int(side))

    def crop(w: int, h: int, rotation: int) -> Callable[[Any], tuple[np.ndarray, ...]]:
        def convert(f: Any) -> tuple[np.ndarray, ...]:
            region = _rgb(f, w, h, rotation)[box.y:box.y + box.h, box.x:box.x + box.w]
            return tuple(_resize(region, s) for s in sizes)
        return convert

    crops, _ = _decode_converted(src, fps, max_frames, crop)
    out = {s: np.stack([c[i] for c in crops]) for i, s in enumerate(sizes)}
    return out, box, (width, height)


def photo_box(rgb: np.ndarray) -> CropBox:
    """The crop of a photo: around its largest face (as the codec crops around a face), whatever
    the photo's shape; the centred square when no face is found."""
    height, width = rgb.shape[:2]
    faces = _detect_faces(rgb)
    if not faces:
        return center_square(width, height)
    cx, cy, side = faces[0]
    return box_around_face(cx, cy, side, width, height)


def read_photo_crops(path: str | os.PathLike[str], sizes: Sequence[int]) -> tuple[dict[int, np.ndarray], CropBox,
                                                                                   tuple[int, int]]:
    """``({size: (1, size, size, 3) uint8}, crop box, (width, height))`` of a photo (EXIF
    orientation applied, grey and alpha photos made RGB)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError(f"cannot read the photo {str(path)!r}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    box = photo_box(rgb)
    region = rgb[box.y:box.y + box.h, box.x:box.x + box.w]
    return {s: _resize(region, s)[None] for s in sizes}, box, (rgb.shape[1], rgb.shape[0])


# ---------------------------------------------------------------------------------------------
# the cache


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)


def item_folder(root: Path, rel: str, fps: int, max_frames: int) -> str:
    """The item's folder name: the source's path plus a key of its bytes (size, sha256) and the reading settings."""
    key = f"{rel}|{source_identity(root / rel)}|{fps}|{max_frames}|v{CORPUS_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = rel.replace("/", "__").rsplit(".", 1)[0]
    return f"items/{stem}-{digest}"


def coded_name(size: int, codec: str, qps: Sequence[int], stride: int) -> str:
    """File name of an item's coded references."""
    return f"coded-{size}-{codec}-q{'_'.join(str(int(q)) for q in qps)}-s{int(stride)}.npy"


def prepare_item(root: str | os.PathLike[str], rel: str, kind: str, out: str | os.PathLike[str],
                 sizes: Sequence[int], *, fps: int = 25, max_frames: int = 500, codec: str = "none",
                 qps: Sequence[int] = (), stride: int = 10) -> tuple[Item, bool]:
    """Crop (and code) one source into the corpus folder ``out``; ``(item, True)`` when any work
    was done, ``(item, False)`` when everything was cached already."""
    base, corpus = Path(root), Path(out)
    try:
        folder = item_folder(base, rel, fps, max_frames)
    except OSError as exc:
        raise MediaError(f"cannot read training source {rel!r}: {exc}") from exc
    d = corpus / folder
    meta_path = d / "meta.json"
    item: Item | None = None
    if meta_path.is_file():
        item = Item(**json.loads(meta_path.read_text(encoding="utf-8")))
    missing = [s for s in sizes if item is None or not (d / f"frames-{s}.npy").is_file()]
    worked = False
    if missing:
        t0 = time.perf_counter()
        if kind == "video":
            crops, box, wh = read_video_crops(base / rel, missing, fps=fps, max_frames=max_frames)
        else:
            crops, box, wh = read_photo_crops(base / rel, missing)
        for s, arr in crops.items():
            _save(d / f"frames-{s}.npy", arr)
        seconds = dict(item.seconds) if item else {}
        seconds[f"crop-{'+'.join(str(s) for s in missing)}"] = round(time.perf_counter() - t0, 3)
        n = next(iter(crops.values())).shape[0]
        item = Item(rel, kind, folder, int(n), [box.x, box.y, box.w, box.h], list(wh), seconds=seconds)
        worked = True
    assert item is not None
    if codec != "none":
        for s in sizes:
            path = d / coded_name(s, codec, qps, stride)
            if path.is_file():
                continue
            t0 = time.perf_counter()
            clip = np.load(d / f"frames-{s}.npy", mmap_mode="r", allow_pickle=False)
            _save(path, code_references(clip, codec, qps, stride))
            item.seconds[f"code-{s}"] = round(time.perf_counter() - t0, 3)
            worked = True
    if worked:
        tmp = meta_path.with_name(f".meta.tmp{os.getpid()}")
        meta = {k: v for k, v in asdict(item).items() if k not in ("people", "side")}  # those: manifest.json
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, meta_path)
    return item, worked


@dataclass
class Corpus:
    """A prepared corpus: its folder, the items kept (with their split side) and those dropped."""

    dir: Path
    items: list[Item]
    dropped: dict[str, list[str]]  # file -> the evaluation people it shows
    unknown: list[str]  # files the people table does not list (each its own person)
    prepared: int = 0  # items (re)computed by this call
    failed: dict[str, str] = field(default_factory=dict)  # file -> error

    def select(self, side: str | None = None, kind: str | None = None) -> list[Item]:
        """Items on ``side`` ("train", "dev"; None: both) of ``kind`` ("video", "photo"; None: both)."""
        return [i for i in self.items if (side is None or i.side == side) and (kind is None or i.kind == kind)]


def prepare_corpus(root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None, sizes: Sequence[int], *,
                   folders: Sequence[str] = FOLDERS, fps: int = 25, max_frames: int = 500, codec: str = "none",
                   qps: Sequence[int] = (), stride: int = 10, dev_fraction: float = 0.1, split_seed: int = 0,
                   people_table: str | os.PathLike[str] | None = None, limit: int | None = None,
                   progress: Callable[[str, bool, float], None] | None = None) -> Corpus:
    """Prepare (or reuse) every source under ``root/<folders>``, split by person, and write
    ``manifest.json``. Files that show a person of ``av-eval/`` are dropped (never prepared).
    ``limit`` prepares only the first sources (a quick check); ``progress(rel, worked, seconds)``
    is called after each."""
    if any(f in ("av-eval", "speech-eval") for f in folders):
        raise ConfigError("av-eval/ and speech-eval/ are for measuring only; they never enter training")
    if not sizes:
        raise ConfigError("prepare_corpus needs at least one size")
    if codec != "none" and (stride < 1 or not qps):
        raise ConfigError("coded references need a stride >= 1 and at least one QP")
    table = load_people(people_table)
    sources = find_sources(root, folders)
    if limit is not None:
        sources = sources[:limit]
    kinds = dict(sources)
    split = split_files(kinds, table, dev_fraction=dev_fraction, seed=split_seed)
    out = corpus_dir(cache_dir)
    items: list[Item] = []
    failed: dict[str, str] = {}
    prepared = 0
    for rel in sorted(split.train + split.dev):
        t0 = time.perf_counter()
        try:
            item, worked = prepare_item(root, rel, kinds[rel], out, sizes, fps=fps, max_frames=max_frames,
                                        codec=codec, qps=qps, stride=stride)
        except MediaError as exc:  # one unreadable file does not stop the corpus
            failed[rel] = str(exc)
            continue
        prepared += int(worked)
        item.people = list(persons(rel, table))
        item.side = split.side(rel)
        items.append(item)
        if progress is not None:
            progress(rel, worked, time.perf_counter() - t0)
    unknown = [rel for rel in kinds if rel not in table]
    corpus = Corpus(out, items, {k: list(v) for k, v in split.dropped.items()}, unknown, prepared, failed)
    manifest = {
        "version": CORPUS_VERSION, "root": str(Path(root).resolve()), "folders": list(folders),
        "sizes": list(sizes), "fps": fps, "max_frames": max_frames, "codec": codec, "qps": list(qps),
        "stride": stride, "dev_fraction": dev_fraction, "split_seed": split_seed,
        "items": [asdict(i) for i in items], "dropped": corpus.dropped, "unknown": unknown, "failed": failed,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".manifest.tmp{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return corpus


# ---------------------------------------------------------------------------------------------
# the loader


class LazyNpy:
    """A ``.npy`` array memory-mapped on first use in each process (pickles as its path only,
    so DataLoader workers, forked or spawned, each open their own map; nothing is read until
    indexed)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
        if dtype != np.uint8 or fortran:
            raise MediaError(f"cached array {self.path!r} is {dtype} (fortran={fortran}), expected C-order uint8")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(np.uint8)
        self._arr: np.ndarray | None = None
        self._pid = -1

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def array(self) -> np.ndarray:
        """The memory map of this process."""
        if self._arr is None or self._pid != os.getpid():
            self._arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
            self._pid = os.getpid()
        return self._arr

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.array()[index]

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arr"], state["_pid"] = None, -1
        return state


class _Augment(TypedDict):
    """The options of :func:`avfc.train.data.augment`."""

    scale_jitter: float
    flip: bool
    color_jitter: float


class CorpusSampler(IterableDataset):
    """An endless stream of samples from many cached clips and photos, mixed at ``photo_ratio``.

    Every sample is ``{"frames": (1 + R, 3, S, S) float32, "indices": (1 + R,) int64,
    "photo": bool}`` (target first). A video sample is :class:`avfc.train.data.ClipSampler`'s
    (clips drawn in proportion to their length, references within ``max_ref_distance``, with
    coded references the key pictures as the codec decodes them). A photo sample (probability
    ``photo_ratio``) is a photo drawn uniformly: the target is the photo moved by a random head
    motion (:func:`avfc.train.motion.photo_pair`), every reference the photo itself (coded at a
    random QP when coded references are given), all at frame index 0 (equal weights). The same
    augmentation as video samples follows.

    Arrays are :class:`LazyNpy` (memory-mapped per process, never loaded whole). Deterministic
    under ``seed``: each worker (and ``rank``) draws its own seeded stream.
    """

    def __init__(self, clips: Sequence[Any], num_refs: int, *, photos: Sequence[Any] = (),
                 coded: Sequence[Any] | None = None, photos_coded: Sequence[Any] | None = None,
                 photo_ratio: float = 0.2, motion: MotionRange | None = None, seed: int = 0, rank: int = 0,
                 max_ref_distance: int = 50, scale_jitter: float = 0.15, flip: bool = True,
                 color_jitter: float = 0.1, coded_stride: int = 1, same_frame: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= photo_ratio <= 1.0:
            raise ConfigError(f"photo_ratio must be in [0, 1], got {photo_ratio}")
        if not clips and not photos:
            raise ConfigError("CorpusSampler needs clips or photos")
        if photos_coded is not None and len(photos_coded) != len(photos):
            raise ConfigError(f"{len(photos_coded)} coded photo arrays for {len(photos)} photos")
        self.num_refs = int(num_refs)
        self.photos, self.photos_coded = list(photos), None if photos_coded is None else list(photos_coded)
        self.photo_ratio = float(photo_ratio) if self.photos else 0.0
        if not clips:
            self.photo_ratio = 1.0
        self.motion = motion if motion is not None else MotionRange()
        self.seed, self.rank = int(seed), int(rank)
        self.aug: _Augment = {"scale_jitter": float(scale_jitter), "flip": bool(flip), "color_jitter": float(color_jitter)}
        self.video = ClipSampler(clips, num_refs, max_ref_distance=max_ref_distance, seed=seed, rank=rank,
                                 coded=coded, coded_stride=coded_stride, same_frame=same_frame,
                                 **self.aug) if clips else None

    def _photo_sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        k = int(rng.integers(0, len(self.photos)))
        photo = np.asarray(self.photos[k][0])
        pair = photo_pair(photo, rng, self.motion)
        if self.photos_coded is not None:
            coded = self.photos_coded[k]
            qps = rng.integers(0, coded.shape[0], size=self.num_refs)
            refs = [np.asarray(coded[int(q), 0]) for q in qps]
        else:
            refs = [photo] * self.num_refs
        pictures = np.stack([pair.driving, *refs])
        frames = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255.0
        frames = augment(frames, rng, **self.aug)
        return {"frames": frames.contiguous(), "indices": torch.zeros(1 + self.num_refs, dtype=torch.int64),
                "photo": torch.tensor(True)}

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One sample drawn with ``rng``."""
        if rng.random() < self.photo_ratio:
            return self._photo_sample(rng)
        assert self.video is not None
        out = self.video.sample(rng)
        out["photo"] = torch.tensor(False)
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker])
        while True:
            yield self.sample(rng)


def corpus_arrays(corpus: Corpus, size: int, side: str | None, kind: str, codec: str = "none",
                  qps: Sequence[int] = (), stride: int = 10, min_frames: int = 1) -> tuple[list[LazyNpy],
                                                                                           list[LazyNpy] | None]:
    """Lazy frames and (with ``codec``) coded references of the corpus items on ``side`` of ``kind``."""
    frames, coded = [], []
    for item in corpus.select(side, kind):
        if item.frames < min_frames:
            continue
        d = corpus.dir / item.folder
        arr = LazyNpy(d / f"frames-{size}.npy")
        if arr.shape[1:] != (size, size, 3):
            raise MediaError(f"cached frames of {item.rel!r} are {arr.shape}, expected (T, {size}, {size}, 3)")
        frames.append(arr)
        if codec != "none":
            c = LazyNpy(d / coded_name(size, codec, qps, stride))
            want = (len(qps), len(coded_positions(arr.shape[0], stride)), size, size, 3)
            if c.shape != want:
                raise MediaError(f"coded references of {item.rel!r} are {c.shape}, expected {want}")
            coded.append(c)
    return frames, (coded if codec != "none" else None)
