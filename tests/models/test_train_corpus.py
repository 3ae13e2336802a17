"""The v4 training data: photo pairs with synthetic motion, the corpus cache, the split by
person, the mixed loader, and training on the corpus (tiny synthetic media only)."""

from __future__ import annotations

import json
import os
import pickle

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import talking_face, write_clip
from torch.utils.data import DataLoader

from avfc.errors import ConfigError
from avfc.train import corpus as corpus_mod
from avfc.train.corpus import CorpusSampler, corpus_arrays, prepare_corpus, read_video_crops
from avfc.train.data import load_clip, prepare_clip
from avfc.train.motion import MotionRange, outside, photo_pair, random_flow, warp
from avfc.train.people import eval_overlap, load_people, split_files

# --------------------------------------------------------------------------- photo pairs


def _smooth_image(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.stack([128 + 90 * np.sin(2 * np.pi * xx), 128 + 90 * np.cos(2 * np.pi * yy),
                    128 + 60 * np.sin(2 * np.pi * (xx + yy))], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _torch_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """An independent backward warp (grid_sample, pixel centres on integers)."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    gx = 2 * (xs + flow[..., 0]) / (w - 1) - 1
    gy = 2 * (ys + flow[..., 1]) / (h - 1) - 1
    grid = torch.from_numpy(np.stack([gx, gy], -1)[None]).float()
    src = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return F.grid_sample(src, grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_photo_pair_driving_is_the_source_warped_by_the_returned_flow(seed) -> None:
    src = _smooth_image()
    pair = photo_pair(src, np.random.default_rng(seed))
    assert pair.driving.shape == src.shape and pair.driving.dtype == np.uint8
    assert pair.flow.shape == (64, 64, 2) and pair.flow.dtype == np.float32
    assert np.array_equal(pair.source, src)
    inside = ~pair.mask
    assert inside.mean() > 0.5
    diff = np.abs(pair.driving.astype(np.float64) - _torch_warp(src, pair.flow))[inside]
    assert diff.max() <= 3.0 and diff.mean() < 0.6  # cv2 remap's 1/32-pixel fixed point
    assert np.abs(pair.flow).max() > 0.5  # it moved


def test_occlusion_mask_is_exactly_the_out_of_source_region() -> None:
    rng = np.random.default_rng(7)
    big = MotionRange(rotation_deg=20, scale=0.2, translation=0.2, perspective=0.1, nonrigid=0.04)
    for _ in range(5):
        pair = photo_pair(_smooth_image(48), rng, big)
        h, w = pair.flow.shape[:2]
        ys, xs = np.mgrid[0:h, 0:w]
        x, y = xs + pair.flow[..., 0].astype(np.float64), ys + pair.flow[..., 1].astype(np.float64)
        expected = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
        assert np.array_equal(pair.mask, expected)
        assert pair.mask.any() and not pair.mask.all()
    # a flow that points right by a quarter of the picture: the right quarter comes from outside
    flow = np.zeros((16, 16, 2), np.float32)
    flow[..., 0] = 4.5
    _, mask = warp(_smooth_image(16), flow)
    assert mask[:, 11:].all() and not mask[:, :11].any()
    assert np.array_equal(outside(flow), mask)


def test_random_flow_is_seeded_smooth_and_bounded() -> None:
    a = random_flow(64, 64, np.random.default_rng(5))
    assert np.array_equal(a, random_flow(64, 64, np.random.default_rng(5)))
    assert not np.array_equal(a, random_flow(64, 64, np.random.default_rng(6)))
    assert np.abs(a).max() < 0.4 * 64  # a small head motion, not a scramble
    assert np.abs(np.diff(a, axis=0)).max() < 1.0 and np.abs(np.diff(a, axis=1)).max() < 1.0  # smooth
    with pytest.raises(ConfigError):
        MotionRange(rotation_deg=-1)


# --------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny data root: av/ (two clips of one person), av2/ (a portrait clip, one of an
    evaluation person), face/ (one clip), images/ (three photos, one a group photo), and the
    people table that says who is who."""
    r = tmp_path_factory.mktemp("data")
    for d in ("av", "av2", "face", "face2", "images", "av-eval"):
        (r / d).mkdir()
    write_clip(r / "av" / "a1.mp4", n=14, width=48, height=40, audio=False)
    write_clip(r / "av" / "a2.mp4", n=10, width=40, height=40, audio=False)
    write_clip(r / "av2" / "portrait.mp4", n=12, width=36, height=64, fps=30, audio=False)
    write_clip(r / "av2" / "evalguy.mp4", n=8, width=40, height=40, audio=False)
    write_clip(r / "face" / "f1.mp4", n=9, width=56, height=40, audio=False)
    for i, name in enumerate(("p1.png", "p2.jpg", "group.png")):
        img = talking_face(1, 50 + 10 * i, 40, seed=i)[0]
        cv2.imwrite(str(r / "images" / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    table = r / "people.csv"
    table.write_text("file,person\nav/a1.mp4,ann\nav/a2.mp4,ann\nav2/portrait.mp4,bob\nav2/evalguy.mp4,eve\n"
                     "face/f1.mp4,cat\nimages/p1.png,dan\nimages/p2.jpg,cat\nimages/group.png,dan+fay\n"
                     "av-eval/e.mp4,eve\n")
    return r


def _prepare(root, cache, **kw):
    kw.setdefault("sizes", [32])
    return prepare_corpus(root, cache, folders=("av", "av2", "face", "face2", "images"),
                          people_table=root / "people.csv", **kw)


def test_corpus_is_built_once_then_resumed_without_recomputation(root, tmp_path, monkeypatch) -> None:
    corpus = _prepare(root, tmp_path, sizes=[32, 48], codec="av1", qps=[50, 60], stride=4)
    assert corpus.prepared == 7 and not corpus.failed
    assert corpus.dropped == {"av2/evalguy.mp4": ["eve"]}  # an av-eval person never enters
    assert all(i.rel != "av2/evalguy.mp4" for i in corpus.items)
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert len(manifest["items"]) == 7 and manifest["dropped"] == {"av2/evalguy.mp4": ["eve"]}
    by_rel = {i.rel: i for i in corpus.items}
    clip = np.load(corpus.dir / by_rel["av/a1.mp4"].folder / "frames-48.npy", allow_pickle=False)
    assert clip.dtype == np.uint8 and clip.shape == (14, 48, 48, 3)
    portrait = np.load(corpus.dir / by_rel["av2/portrait.mp4"].folder / "frames-32.npy")
    assert portrait.shape == (10, 32, 32, 3)  # 12 frames at 30 fps read at 25 fps
    assert by_rel["av2/portrait.mp4"].source_size == [36, 64]
    photo = np.load(corpus.dir / by_rel["images/p2.jpg"].folder / "frames-32.npy")
    assert photo.shape == (1, 32, 32, 3) and by_rel["images/p2.jpg"].kind == "photo"
    coded = np.load(corpus.dir / by_rel["av/a1.mp4"].folder / "coded-32-av1-q50_60-s4.npy")
    assert coded.shape == (2, 4, 32, 32, 3)  # frames 0, 4, 8, 12 at two QPs
    stamps = {p: p.stat().st_mtime_ns for p in corpus.dir.rglob("*.npy")}

    def boom(*a, **k):  # nothing may be decoded or coded again
        raise AssertionError("recomputed")

    monkeypatch.setattr(corpus_mod, "read_video_crops", boom)
    monkeypatch.setattr(corpus_mod, "read_photo_crops", boom)
    monkeypatch.setattr(corpus_mod, "code_references", boom)
    again = _prepare(root, tmp_path, sizes=[32, 48], codec="av1", qps=[50, 60], stride=4)
    assert again.prepared == 0 and [i.rel for i in again.items] == [i.rel for i in corpus.items]
    assert {p: p.stat().st_mtime_ns for p in corpus.dir.rglob("*.npy")} == stamps


def test_cache_keys_follow_the_bytes_not_the_file_times(root, tmp_path) -> None:
    """A data folder copied or mounted again keeps its bytes but not its times: nothing is redone;
    a source whose bytes change is."""
    corpus = _prepare(root, tmp_path)
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(1, 1))
    assert _prepare(root, tmp_path).prepared == 0
    write_clip(root / "av" / "a1.mp4", n=16, width=48, height=40, audio=False)  # new bytes
    again = _prepare(root, tmp_path)
    assert again.prepared == 1
    folder = {i.rel: i.folder for i in again.items}
    assert folder["av/a1.mp4"] != {i.rel: i.folder for i in corpus.items}["av/a1.mp4"]


def test_an_interrupted_item_is_redone(root, tmp_path) -> None:
    corpus = _prepare(root, tmp_path)
    item = corpus.items[0]
    (corpus.dir / item.folder / "meta.json").unlink()  # as if killed before the item finished
    again = _prepare(root, tmp_path)
    assert again.prepared == 1


def test_streaming_read_matches_the_v3_preparation(tmp_path) -> None:
    write_clip(tmp_path / "c.mp4", n=15, width=72, height=56, audio=False)
    crops, _, wh = read_video_crops(tmp_path / "c.mp4", [32], max_frames=12)
    ref = load_clip(prepare_clip(tmp_path / "c.mp4", 32, tmp_path / "v3", max_frames=12), 32)
    assert wh == (72, 56) and np.array_equal(crops[32], ref)


def test_large_frames_are_searched_for_a_face_at_a_reduced_size(tmp_path, monkeypatch) -> None:
    write_clip(tmp_path / "tall.mp4", n=6, width=48, height=96, audio=False)
    monkeypatch.setattr(corpus_mod, "DETECT_SIDE", 32)  # as a 1080x1920 clip is searched at 360x640
    crops, box, wh = read_video_crops(tmp_path / "tall.mp4", [24])
    assert wh == (48, 96) and crops[24].shape == (6, 24, 24, 3)
    assert box.w == box.h and 0 <= box.y and box.y + box.h <= 96 and box.x + box.w <= 48


def test_cached_arrays_are_read_lazily(root, tmp_path) -> None:
    corpus = _prepare(root, tmp_path)
    clips, coded = corpus_arrays(corpus, 32, None, "video")
    assert coded is None and len(clips) == 4
    arr = clips[0]
    assert arr._arr is None and arr.shape[1:] == (32, 32, 3)  # header read, nothing mapped yet
    assert isinstance(arr.array(), np.memmap)
    blob = pickle.dumps(arr)
    assert len(blob) < 2000  # workers get the path, not the frames
    back = pickle.loads(blob)
    assert back._arr is None and np.array_equal(back[1], arr[1])


# --------------------------------------------------------------------------- the split


def test_split_keeps_each_person_on_one_side_and_drops_eval_people(root) -> None:
    table = load_people(root / "people.csv")
    files = ["av/a1.mp4", "av/a2.mp4", "av2/portrait.mp4", "av2/evalguy.mp4", "face/f1.mp4", "images/p1.png",
             "images/p2.jpg", "images/group.png", "images/unlisted.png"]
    for seed in range(20):
        s = split_files(files, table, dev_fraction=0.5, seed=seed)
        assert s.dropped == {"av2/evalguy.mp4": ("eve",)}
        assert sorted(s.train + s.dev) == sorted(f for f in files if f != "av2/evalguy.mp4")
        assert not s.people("train", table) & s.people("dev", table)
        assert s.side("av/a1.mp4") == s.side("av/a2.mp4")  # one person
        assert s.side("face/f1.mp4") == s.side("images/p2.jpg")  # cat, in a clip and a photo
        assert s.side("images/p1.png") == s.side("images/group.png")  # dan, alone and in a group
    assert {s.side("av/a1.mp4") for s in (split_files(files, table, dev_fraction=0.5, seed=k)
                                          for k in range(20))} == {"train", "dev"}
    assert eval_overlap(["av-eval/e.mp4"], table) == {"av-eval/e.mp4": ("eve",)}


def test_the_shipped_people_table_keeps_av_eval_people_out(shared_dir) -> None:
    table = load_people()
    data = shared_dir / "data"
    evals = {p for f, ps in table.items() if f.startswith("av-eval/") for p in ps}
    assert {"alexandria_ocasio_cortez", "katie_hill"} <= evals
    s = split_files([f for f in table if not f.startswith("av-eval/")], table)
    assert not s.dropped  # no av-eval person in av, av2, face, face2, images
    assert not s.people("train", table) & s.people("dev", table) and s.dev
    if not data.is_dir():
        pytest.skip("../shared/data is absent")
    files = [f.relative_to(data).as_posix() for d in ("av", "av2", "face", "face2", "images", "av-eval")
             for f in (data / d).rglob("*") if f.is_file()]
    assert sorted(f for f in files if f not in table) == []  # every file is in the table


# --------------------------------------------------------------------------- the loader


def _sampler(root, tmp_path, **kw):
    corpus = _prepare(root, tmp_path, codec="av1", qps=[55], stride=5)
    clips, coded = corpus_arrays(corpus, 32, None, "video", "av1", [55], 5, min_frames=2)
    photos, photos_coded = corpus_arrays(corpus, 32, None, "photo", "av1", [55], 5)
    return CorpusSampler(clips, 2, photos=photos, coded=coded, photos_coded=photos_coded, coded_stride=5, **kw)


def test_loader_mixes_photo_pairs_at_the_ratio_deterministically(root, tmp_path) -> None:
    data = _sampler(root, tmp_path, photo_ratio=0.3, seed=3)
    rng = np.random.default_rng(0)
    samples = [data.sample(rng) for _ in range(400)]
    for s in samples[:20]:
        assert s["frames"].shape == (3, 3, 32, 32) and s["frames"].dtype == torch.float32
        assert s["indices"].shape == (3,) and s["indices"].dtype == torch.int64
        assert 0.0 <= float(s["frames"].min()) and float(s["frames"].max()) <= 1.0
    share = np.mean([bool(s["photo"]) for s in samples])
    assert abs(share - 0.3) < 0.07  # binomial sd 0.023
    assert all(int(s["indices"].abs().sum()) == 0 for s in samples if s["photo"])
    first = [b["frames"] for _, b in zip(range(5), iter(data))]
    again = [b["frames"] for _, b in zip(range(5), iter(_sampler(root, tmp_path, photo_ratio=0.3, seed=3)))]
    other = [b["frames"] for _, b in zip(range(5), iter(_sampler(root, tmp_path, photo_ratio=0.3, seed=4)))]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))
    only_video = _sampler(root, tmp_path, photo_ratio=0.0)
    assert not any(bool(only_video.sample(rng)["photo"]) for _ in range(50))


def test_loader_batches_in_worker_processes(root, tmp_path) -> None:
    data = _sampler(root, tmp_path, photo_ratio=0.5, seed=1)
    loader = DataLoader(data, batch_size=4, num_workers=2)
    batches = [b for _, b in zip(range(4), loader)]
    assert all(b["frames"].shape == (4, 3, 3, 32, 32) and b["photo"].shape == (4,) for b in batches)
    # the two workers draw different streams
    assert not torch.equal(batches[0]["frames"], batches[1]["frames"])


# --------------------------------------------------------------------------- training


def test_train_on_the_corpus_and_resume(root, tmp_path) -> None:
    from avfc.train import get_config, train

    def cfg(steps: int):
        return get_config("cpu-v4", {
            "model": {"size": 64, "num_kp": 4, "max_refs": 2, "motion_size": 16},
            "data": {"corpus": str(root), "cache_dir": str(tmp_path / "cache"), "ref_qps": [55], "ref_stride": 5,
                     "photo_ratio": 0.5, "dev_fraction": 0.0, "corpus_folders": ["av", "face", "images"]},
            "loss": {"lpips": 0.0}, "init_from": None, "freeze": [],
            "steps": steps, "batch_size": 2, "checkpoint_every": 1, "log_every": 1, "eval_every": 1,
            "eval_samples": 2, "out_dir": str(tmp_path / "run"), "threads": 1,
        })

    with pytest.raises(ConfigError):
        get_config("cpu-v4", {"data": {"photo_ratio": 1.5}})
    final = train(cfg(2), progress=False)
    assert final.is_file()
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 2
    train(cfg(3), progress=False)  # resumes at step 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3]
