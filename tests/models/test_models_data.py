"""Training data: clip preparation and cache, sampling, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import write_clip

from avfc.errors import ConfigError, MediaError
from avfc.media import decode_intra, encode_intra
from avfc.train.data import (
    ClipSampler,
    augment,
    coded_positions,
    find_videos,
    load_clip,
    load_clips,
    load_coded,
    prepare_clip,
    prepare_coded,
)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_clip(d / "a.mp4", n=20, width=96, height=80, audio=False)
    (d / "sub").mkdir()
    write_clip(d / "sub" / "b.mp4", n=12, width=64, height=64, audio=False)
    (d / "notes.txt").write_text("not a video")
    return d


def test_find_videos_recurses_and_skips_other_files(video_dir) -> None:
    assert [p.name for p in find_videos([video_dir])] == ["a.mp4", "b.mp4"]
    assert find_videos([video_dir / "a.mp4"]) == [video_dir / "a.mp4"]
    with pytest.raises(ConfigError):
        find_videos([video_dir / "missing"])


def test_prepare_clip_caches_uint8_square_frames(video_dir, tmp_path) -> None:
    path = prepare_clip(video_dir / "a.mp4", 32, tmp_path)
    assert path.parent == tmp_path / "clips" and path.suffix == ".npy"
    clip = load_clip(path, 32)
    assert clip.dtype == np.uint8 and clip.shape == (20, 32, 32, 3)
    stamp = path.stat().st_mtime_ns
    assert prepare_clip(video_dir / "a.mp4", 32, tmp_path) == path  # reused, not rewritten
    assert path.stat().st_mtime_ns == stamp
    assert prepare_clip(video_dir / "a.mp4", 64, tmp_path) != path  # another size, another entry
    with pytest.raises(MediaError):
        load_clip(path, 64)


def test_prepare_clip_rejects_a_non_video(video_dir, tmp_path) -> None:
    with pytest.raises(MediaError):
        prepare_clip(video_dir / "notes.txt", 32, tmp_path)


def test_load_clips_filters_short_clips(video_dir, tmp_path) -> None:
    clips = load_clips([video_dir], 32, tmp_path, min_frames=15)
    assert [c.shape[0] for c in clips] == [20]
    with pytest.raises(ConfigError):
        load_clips([video_dir], 32, tmp_path, min_frames=100)


def _ramp_clip(n: int = 30, size: int = 16) -> np.ndarray:
    """Frame i is filled with the value 8 * i, so a sampled frame tells its index."""
    return (np.arange(n, dtype=np.uint8)[:, None, None, None] * 8).repeat(size, 1).repeat(size, 2).repeat(3, 3)


def test_sampler_draws_targets_and_nearby_references() -> None:
    sampler = ClipSampler([_ramp_clip()], num_refs=3, max_ref_distance=4, scale_jitter=0.0, flip=False,
                          color_jitter=0.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = sampler.sample(rng)
        assert s["frames"].shape == (4, 3, 16, 16) and s["indices"].shape == (4,)
        t, refs = int(s["indices"][0]), s["indices"][1:].tolist()
        assert all(0 < abs(r - t) <= 4 for r in refs) and len(set(refs)) == 3
        # the pixels are those of the indexed frames
        assert torch.allclose(s["frames"][:, 0, 0, 0] * 255, s["indices"].float() * 8)


def test_sampler_streams_are_seeded() -> None:
    a = next(iter(ClipSampler([_ramp_clip()], 2, seed=3)))
    b = next(iter(ClipSampler([_ramp_clip()], 2, seed=3)))
    c = next(iter(ClipSampler([_ramp_clip()], 2, seed=4)))
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["indices"], b["indices"])
    assert not torch.equal(a["indices"], c["indices"])


def test_augmentation_treats_all_frames_alike() -> None:
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 3, 32, 32, generator=g)
    frames = frame.repeat(3, 1, 1, 1)
    for seed in range(10):
        out = augment(frames, np.random.default_rng(seed), scale_jitter=0.3, flip=True, color_jitter=0.3)
        assert out.shape == frames.shape and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    flipped = [augment(frame, np.random.default_rng(s), scale_jitter=0.0, flip=True, color_jitter=0.0)
               for s in range(10)]
    assert any(torch.equal(f, frame.flip(-1)) for f in flipped) and any(torch.equal(f, frame) for f in flipped)


def test_sampler_checks_its_arguments() -> None:
    with pytest.raises(ConfigError):
        ClipSampler([], 1)
    with pytest.raises(ConfigError):
        ClipSampler([_ramp_clip()], 0)


def test_coded_references_are_the_decoders_pictures_and_cached(video_dir, tmp_path) -> None:
    path = prepare_clip(video_dir / "a.mp4", 32, tmp_path)
    clip = load_clip(path, 32)
    coded_path = prepare_coded(path, 32, "av1", [30, 60], 8)
    coded = load_coded(coded_path, clip, 2, 8)
    assert coded.shape == (2, 3, 32, 32, 3) and coded_positions(20, 8).tolist() == [0, 8, 16]
    for a, qp in enumerate([30, 60]):
        want = decode_intra(encode_intra(np.ascontiguousarray(clip[8]), "av1", qp), "av1", 32, 32)
        assert np.array_equal(coded[a, 1], want)
    assert np.abs(coded[1].astype(int) - clip[[0, 8, 16]]).mean() > np.abs(coded[0].astype(int) - clip[[0, 8, 16]]).mean()
    stamp = coded_path.stat().st_mtime_ns
    assert prepare_coded(path, 32, "av1", [30, 60], 8) == coded_path and coded_path.stat().st_mtime_ns == stamp
    assert prepare_coded(path, 32, "av1", [30], 8) != coded_path  # other QPs, another entry
    with pytest.raises(MediaError):
        load_coded(coded_path, clip, 3, 8)
    with pytest.raises(ConfigError):
        prepare_coded(path, 32, "av1", [], 8)


def test_sampler_with_coded_references_shows_them_at_coded_positions() -> None:
    clip = _ramp_clip(30)
    coded = np.stack([clip[::5] + 1, clip[::5] + 2])  # tell the QP apart by the pixel value
    sampler = ClipSampler([clip], num_refs=2, max_ref_distance=6, scale_jitter=0.0, flip=False,
                          color_jitter=0.0, coded=[coded], coded_stride=5)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        s = sampler.sample(rng)
        idx = s["indices"].tolist()
        values = (s["frames"][:, 0, 0, 0] * 255).round().long().tolist()
        assert values[0] == idx[0] * 8  # the target is the original frame
        for r, v in zip(idx[1:], values[1:]):
            assert r % 5 == 0 and abs(r - idx[0]) <= 6 and v - r * 8 in (1, 2)
            seen.add(v - r * 8)
    assert seen == {1, 2}  # both QPs are drawn
    same = ClipSampler([clip], num_refs=1, scale_jitter=0.0, flip=False, color_jitter=0.0, coded=[coded],
                       coded_stride=5, same_frame=1.0)
    for _ in range(10):
        idx = same.sample(rng)["indices"].tolist()
        assert idx[0] == idx[1]
    with pytest.raises(ConfigError):
        ClipSampler([clip], 1, coded=[coded, coded])
    with pytest.raises(ConfigError):
        ClipSampler([clip], 1, coded=[coded], same_frame=1.5)
