"""Synthetic head motion for still photos: a (source, driving) training pair from one face crop.

A photo has no second frame, so the driving picture is the photo warped by a plausible head
motion: a small projective transform (rotation, scale, translation, a little perspective, about
the picture's centre) plus a smooth non-rigid displacement (Gaussian values on a coarse grid,
interpolated bicubically: low frequency only). The warp is *backward*: the returned flow
``(H, W, 2)`` holds, for each driving pixel ``(x, y)``, the displacement ``(dx, dy)`` in pixels
such that ``driving[y, x] = source[y + dy, x + dx]`` (bilinear, pixel centres on integers).

Where the flow points outside the source the driving picture shows what the photo does not
have (a turned head reveals background): those pixels are marked in ``mask`` (True: from
outside the source) and filled by mirroring the source at its border, so the picture stays
plausible; a loss can leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avfc.errors import ConfigError


@dataclass(frozen=True)
class MotionRange:
    """How far the synthetic motion goes (uniform draws within these bounds, Gaussian grid values)."""

    rotation_deg: float = 10.0  # in-plane rotation, +-
    scale: float = 0.08  # log-scale, +- (zoom in and out)
    translation: float = 0.06  # of the half side, +- per axis
    perspective: float = 0.06  # projective terms (a head turning), +- per axis, in half-side units
    nonrigid: float = 0.025  # standard deviation of the smooth displacement, in half-side units
    grid: int = 4  # the displacement's control grid (grid x grid values over the picture)

    def __post_init__(self) -> None:
        if min(self.rotation_deg, self.scale, self.translation, self.perspective, self.nonrigid) < 0 or self.grid < 2:
            raise ConfigError(f"motion ranges must be >= 0 and grid >= 2, got {self}")


@dataclass(frozen=True)
class PhotoPair:
    """``source`` and ``driving`` uint8 ``(H, W, 3)``; ``flow`` float32 ``(H, W, 2)`` (see the
    module doc); ``mask`` bool ``(H, W)``, True where the driving pixel comes from outside the source."""

    source: np.ndarray
    driving: np.ndarray
    flow: np.ndarray
    mask: np.ndarray


def random_flow(height: int, width: int, rng: np.random.Generator, motion: MotionRange = MotionRange()) -> np.ndarray:
    """A random backward flow ``(height, width, 2)`` float32 in pixels (see the module doc)."""
    if height < 2 or width < 2:
        raise ConfigError(f"a flow needs at least 2x2 pixels, got {width}x{height}")
    m = motion
    hx, hy = (width - 1) / 2.0, (height - 1) / 2.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = (xs - hx) / hx, (ys - hy) / hy  # driving pixel in [-1, 1]
    angle = np.deg2rad(rng.uniform(-m.rotation_deg, m.rotation_deg))
    scale = np.exp(rng.uniform(-m.scale, m.scale))
    tx, ty = rng.uniform(-m.translation, m.translation, size=2)
    px, py = rng.uniform(-m.perspective, m.perspective, size=2) * 0.5
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    w = 1.0 + px * u + py * v
    su = (c * u - s * v + tx) / w
    sv = (s * u + c * v + ty) / w
    if m.nonrigid > 0:
        ctrl = rng.normal(0.0, m.nonrigid, size=(m.grid, m.grid, 2)).astype(np.float32)
        field = cv2.resize(ctrl, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        su, sv = su + field[..., 0], sv + field[..., 1]
    flow = np.stack([su * hx + hx - xs, sv * hy + hy - ys], axis=-1)
    return flow.astype(np.float32)


def outside(flow: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: the driving pixels whose source position lies outside the picture."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    return (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` ``(H, W, C)`` uint8 warped backward by ``flow``; returns (warped, mask of
    pixels from outside the source, which are filled by mirroring at the border)."""
    if image.ndim != 3 or image.dtype != np.uint8 or flow.shape != (*image.shape[:2], 2):
        raise ConfigError(f"warp needs uint8 (H, W, C) and a flow (H, W, 2), got {image.dtype} {image.shape}"
                          f" and {flow.shape}")
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    out = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if out.ndim == 2:
        out = out[..., None]
    return out, outside(flow)


def photo_pair(photo: np.ndarray, rng: np.random.Generator, motion: MotionRange = MotionRange()) -> PhotoPair:
    """A training pair from one face crop ``(H, W, 3)`` uint8: the crop, and the crop moved by a
    random head motion, with the flow applied and the mask of what came from outside."""
    flow = random_flow(photo.shape[0], photo.shape[1], rng, motion)
    driving, mask = warp(np.ascontiguousarray(photo), flow)
    return PhotoPair(photo, driving, flow, mask)
