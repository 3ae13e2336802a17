"""A fixed, face-aware square crop for a whole clip.

Rules (in this order):

1. A square source is coded whole (no re-crop), so decoded video lines up with the input.
2. ``method="face"``: OpenCV's bundled frontal-face Haar cascade runs on ``DETECT_FRAMES``
   frames spread over the clip (on a copy scaled to at most ``DETECT_SIDE`` pixels); the
   largest face of each frame votes, and the median box wins. The crop is a square of
   ``FACE_SCALE`` times the face box side, centred ``FACE_SHIFT`` face sides below the face
   centre (so the face sits slightly above the crop centre and the chin and neck fit),
   shrunk to fit the frame and then moved inside it. With no face found, the largest
   centred square.
3. ``method="center"``: the largest centred square. ``method="none"``: the whole frame,
   which must already be square.

The box is fixed for the whole clip (no jitter between frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from avfc.errors import ConfigError, MediaError

CropMethod = Literal["face", "center", "none"]

#: Frames (spread evenly over the clip) the face detector looks at.
DETECT_FRAMES = 5
#: Frames are scaled down to at most this many pixels a side before detection.
DETECT_SIDE = 640
#: Crop side over detected face side (the Haar box spans brows to mouth, about 0.6 of a head).
FACE_SCALE = 1.8
#: Crop centre below the face centre, in face sides.
FACE_SHIFT = 0.1
#: Faces narrower than this fraction of the short frame side are ignored.
MIN_FACE_FRACTION = 0.08


@dataclass(frozen=True)
class CropBox:
    """A rectangle in source pixels: left ``x``, top ``y``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise MediaError(f"OpenCV face cascade not found or unreadable: {path}")
    return cascade


def _check_frames(frames: object) -> None:
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[3] != 3
        or min(frames.shape[:3]) < 1
    ):
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise MediaError(f"frames must be a non-empty uint8 array (T, H, W, 3), got {got}")


def center_square(width: int, height: int) -> CropBox:
    """The largest square centred in a ``width`` x ``height`` frame."""
    side = min(width, height)
    return CropBox((width - side) // 2, (height - side) // 2, side, side)


def _detect_faces(rgb: np.ndarray) -> list[tuple[float, float, float]]:
    """Every face in one RGB frame as (centre x, centre y, side) in its pixels, largest first."""
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    min_side = max(20, round(MIN_FACE_FRACTION * min(grey.shape)))
    faces = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    ordered = sorted((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3], reverse=True)
    return [((x + w / 2) / scale, (y + h / 2) / scale, max(w, h) / scale) for x, y, w, h in ordered]


def _detect_face(rgb: np.ndarray) -> tuple[float, float, float] | None:
    """The largest face in one RGB frame as (centre x, centre y, side) in its pixels, or None."""
    faces = _detect_faces(rgb)
    return faces[0] if faces else None


def box_around_face(cx: float, cy: float, face_side: float, width: int, height: int) -> CropBox:
    """The crop square for a face at (cx, cy) of side ``face_side`` in a width x height frame."""
    side = min(round(FACE_SCALE * face_side), width, height)
    x = round(cx - side / 2)
    y = round(cy + FACE_SHIFT * face_side - side / 2)
    x = min(max(x, 0), width - side)
    y = min(max(y, 0), height - side)
    return CropBox(int(x), int(y), int(side), int(side))


def find_crop(frames: np.ndarray, *, method: CropMethod = "face") -> CropBox:
    """Choose one square crop box for a whole clip.

    Args:
        frames: uint8 (T, H, W, 3) RGB.
        method: ``"face"``, ``"center"`` or ``"none"`` (see the module doc).

    Returns:
        A square :class:`CropBox` inside the frame; the whole frame when it is square.

    Raises:
        MediaError: ``frames`` is not a uint8 (T, H, W, 3) array.
        ConfigError: unknown method, or ``"none"`` on a non-square frame.
    """
    _check_frames(frames)
    if method not in ("face", "center", "none"):
        raise ConfigError(f"unknown crop method {method!r}; expected 'face', 'center' or 'none'")
    count, height, width = frames.shape[:3]
    if width == height:
        return CropBox(0, 0, width, height)
    if method == "none":
        raise ConfigError(f"crop method 'none' needs square frames, got {width}x{height}")
    if method == "center":
        return center_square(width, height)
    return crop_from_faces([_detect_face(frames[i]) for i in detect_picks(count)], width, height)


def detect_picks(count: int) -> np.ndarray:
    """The indices (spread evenly over a clip of ``count`` frames) of the frames the face detector
    looks at: :func:`find_crop` and :func:`face_warnings` on the whole clip, and the streaming reader
    (:mod:`avfc.media.stream`), which looks at the same frames without holding the clip."""
    return np.unique(np.linspace(0, count - 1, num=min(DETECT_FRAMES, count)).round().astype(int))



def crop_from_faces(faces: list[tuple[float, float, float] | None], width: int, height: int) -> CropBox:
    """The ``method="face"`` box of a ``width`` x ``height`` clip (not square) from the largest face
    of each frame looked at, (centre x, centre y, side) or None: the median face's box, or the
    centred square when no frame has a face."""
    found = [face for face in faces if face is not None]
    if not found:
        return center_square(width, height)
    cx, cy, side = (float(v) for v in np.median(np.array(found), axis=0))
    return box_around_face(cx, cy, side, width, height)


def face_warnings(frames: np.ndarray, *, method: CropMethod = "face") -> list[str]:
    """What :func:`find_crop` with the same arguments could not do as asked, in words for the user.

    Only ``method="face"`` on frames that are not square looks for faces (a square source is coded
    whole, the other methods look for none); then, on the frames :func:`find_crop` looks at:

    * no face in any: one message (the largest centred square is coded instead);
    * two faces or more in at least half of them: one message (each frame's largest face voted).

    These are warnings, not errors: the crop is still made, and a caller that wants to refuse such
    input can do so on the message. Runs the face detector again (``DETECT_FRAMES`` frames).
    """
    _check_frames(frames)
    count, height, width = frames.shape[:3]
    if method != "face" or width == height:
        return []
    return warnings_from_face_counts([len(_detect_faces(frames[i])) for i in detect_picks(count)], width, height)


def warnings_from_face_counts(found: list[int], width: int, height: int) -> list[str]:
    """The :func:`face_warnings` of a ``width`` x ``height`` clip (not square, ``method="face"``) from
    the number of faces found in each frame looked at."""
    if not any(found):
        return [f"no face found in the {width}x{height} input ({len(found)} frames looked at): the centred "
                f"square is coded instead; the model draws faces, crop the input around one, or choose crop 'center'"]
    several = [n for n in found if n >= 2]
    if 2 * len(several) >= len(found):
        return [f"{max(several)} faces found in the {width}x{height} input (several in {len(several)} of the "
                f"{len(found)} frames looked at): the crop is around the largest; crop the input around the "
                f"face to code"]
    return []


def apply_crop(frames: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Crop every frame to ``box`` and resize it to ``size`` x ``size``.

    Shrinking uses ``cv2.INTER_AREA``, enlarging ``cv2.INTER_CUBIC``; an unchanged size is a
    plain copy.

    Returns:
        uint8 array (T, size, size, 3).

    Raises:
        MediaError: bad ``frames``.
        ConfigError: a box that is not square or not inside the frame, or a bad ``size``.
    """
    _check_frames(frames)
    height, width = frames.shape[1:3]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= 8192:
        raise ConfigError(f"crop output size must be an integer in 1..8192, got {size!r}")
    if box.w != box.h or box.w < 1:
        raise ConfigError(f"crop box must be a non-empty square, got {box}")
    if box.x < 0 or box.y < 0 or box.x + box.w > width or box.y + box.h > height:
        raise ConfigError(f"crop box {box} is not inside the {width}x{height} frame")
    region = frames[:, box.y : box.y + box.h, box.x : box.x + box.w]
    if box.w == size:
        return np.ascontiguousarray(region)
    interpolation = cv2.INTER_AREA if box.w > size else cv2.INTER_CUBIC
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(region):
        out[i] = cv2.resize(frame, (int(size), int(size)), interpolation=interpolation)
    return out


__all__ = [
    "CropBox",
    "CropMethod",
    "apply_crop",
    "box_around_face",
    "center_square",
    "crop_from_faces",
    "detect_picks",
    "face_warnings",
    "find_crop",
    "warnings_from_face_counts",
]
