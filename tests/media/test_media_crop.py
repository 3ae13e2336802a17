"""The fixed face-aware square crop."""

from __future__ import annotations

import numpy as np
import pytest

import avfc.media.crop as crop
from avfc.errors import ConfigError, MediaError
from avfc.media.crop import CropBox, apply_crop, box_around_face, find_crop


def clip(width: int, height: int, frames: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def inside(box: CropBox, width: int, height: int) -> bool:
    return box.x >= 0 and box.y >= 0 and box.x + box.w <= width and box.y + box.h <= height


@pytest.mark.parametrize("method", ["face", "center", "none"])
def test_square_input_is_coded_whole(method: str) -> None:
    assert find_crop(clip(96, 96), method=method) == CropBox(0, 0, 96, 96)


def test_no_face_gives_the_centred_square() -> None:
    frames = np.full((3, 90, 160, 3), 128, np.uint8)  # flat grey: nothing to detect
    assert find_crop(frames) == CropBox(35, 0, 90, 90)
    portrait = np.full((3, 160, 90, 3), 128, np.uint8)
    assert find_crop(portrait, method="center") == CropBox(0, 35, 90, 90)


def test_method_none_and_unknown_method() -> None:
    with pytest.raises(ConfigError, match="square"):
        find_crop(clip(160, 90), method="none")
    with pytest.raises(ConfigError, match="unknown"):
        find_crop(clip(160, 90), method="middle")


def test_bad_frames() -> None:
    with pytest.raises(MediaError):
        find_crop(np.zeros((90, 160, 3), np.uint8))
    with pytest.raises(MediaError):
        find_crop(np.zeros((1, 90, 160, 3), np.float32))


def test_face_box_is_expanded_lowered_and_clamped() -> None:
    # a 100 px face centred at (300, 200) in a 640x360 frame
    box = box_around_face(300, 200, 100, 640, 360)
    assert box.w == box.h == round(crop.FACE_SCALE * 100)
    assert box.x + box.w / 2 == pytest.approx(300, abs=1)
    assert box.y + box.h / 2 == pytest.approx(200 + crop.FACE_SHIFT * 100, abs=1)
    # near the corner the box moves inside the frame instead of leaving it
    corner = box_around_face(20, 20, 100, 640, 360)
    assert (corner.x, corner.y) == (0, 0) and inside(corner, 640, 360)
    # a face bigger than the frame allows shrinks the box to the short side
    huge = box_around_face(320, 180, 400, 640, 360)
    assert huge.w == huge.h == 360 and inside(huge, 640, 360)


def test_find_crop_uses_the_median_face(monkeypatch: pytest.MonkeyPatch) -> None:
    detections = iter([(300.0, 150.0, 80.0), None, (310.0, 160.0, 90.0), (900.0, 10.0, 10.0), (305.0, 155.0, 85.0)])
    seen = []

    def fake_detect(frame: np.ndarray):
        seen.append(frame)
        return next(detections)

    monkeypatch.setattr(crop, "_detect_face", fake_detect)
    box = find_crop(clip(640, 360, frames=20))
    assert len(seen) == crop.DETECT_FRAMES
    assert box == box_around_face(307.5, 152.5, 82.5, 640, 360)
    assert box.w == box.h and inside(box, 640, 360)


def test_real_detector_returns_a_square_inside_the_frame() -> None:
    frames = clip(200, 120)
    box = find_crop(frames)
    assert box.w == box.h and inside(box, 200, 120)


def test_apply_crop_copies_and_resizes() -> None:
    frames = clip(160, 90)
    box = CropBox(35, 0, 90, 90)
    same = apply_crop(frames, box, 90)
    np.testing.assert_array_equal(same, frames[:, :, 35:125])
    small = apply_crop(frames, box, 45)
    assert small.shape == (4, 45, 45, 3) and small.dtype == np.uint8
    # INTER_AREA halving is the 2x2 mean
    ref = frames[0, :, 35:125].reshape(45, 2, 45, 2, 3).mean(axis=(1, 3))
    assert np.abs(small[0].astype(float) - ref).max() <= 1
    flat = np.full((2, 90, 160, 3), 77, np.uint8)
    assert (apply_crop(flat, box, 256) == 77).all()  # enlarging a flat picture keeps it flat


@pytest.mark.parametrize(
    "box, size",
    [(CropBox(0, 0, 90, 80), 64), (CropBox(100, 0, 90, 90), 64), (CropBox(-1, 0, 90, 90), 64), (CropBox(0, 0, 90, 90), 0)],
)
def test_apply_crop_refuses_bad_boxes(box: CropBox, size: int) -> None:
    with pytest.raises(ConfigError):
        apply_crop(clip(160, 90), box, size)
