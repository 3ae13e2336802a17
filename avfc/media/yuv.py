"""Integer RGB <-> YUV 4:2:0 conversion (BT.601, full range), identical on every machine.

The key-frame codec codes YUV 4:2:0 pictures; the conversion to and from RGB is ours, in
integer numpy arithmetic (int64, arithmetic shifts that round towards minus infinity), so the
decoded RGB picture is bit-exact on any CPU (swscale's SIMD paths may differ). The formulas
are written out in ``docs/bitstream.md (part D)``; changing any constant changes decoded pictures.
"""

from __future__ import annotations

import numpy as np

from avfc.errors import MediaError

# RGB -> YUV, BT.601 full range (JFIF), coefficients x 2^16; each row sums to 65536 or 0.
_KY = (19595, 38470, 7471)
_KCB = (-11059, -21709, 32768)
_KCR = (32768, -27439, -5329)
# YUV -> RGB, BT.601 full range, coefficients x 2^16.
_K_R_CR = 91881  # 1.402
_K_G_CB = 22554  # 0.344136
_K_G_CR = 46802  # 0.714136
_K_B_CB = 116130  # 1.772


def _check_rgb_even(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MediaError(
            f"expected a uint8 RGB picture of shape (H, W, 3), got "
            f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}"
        )
    h, w = rgb.shape[:2]
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise MediaError(f"YUV 4:2:0 needs an even picture size of at least 2x2, got {w}x{h}")


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert an RGB picture to BT.601 full-range YUV 4:2:0 planes with integer arithmetic.

    Args:
        rgb: uint8 array (H, W, 3), H and W even.

    Returns:
        ``(y, u, v)``: uint8 arrays of shapes (H, W), (H/2, W/2), (H/2, W/2). Luma is rounded
        per pixel; each chroma sample is the rounded mean of the 2x2 block it covers.

    Raises:
        MediaError: wrong dtype, shape, or an odd size.
    """
    _check_rgb_even(rgb)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    y = (_KY[0] * r + _KY[1] * g + _KY[2] * b + (1 << 15)) >> 16
    cb = _KCB[0] * r + _KCB[1] * g + _KCB[2] * b
    cr = _KCR[0] * r + _KCR[1] * g + _KCR[2] * b

    def pool(c: np.ndarray) -> np.ndarray:
        s = c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2]
        return np.clip((s + (128 << 18) + (1 << 17)) >> 18, 0, 255)

    return (
        np.clip(y, 0, 255).astype(np.uint8),
        pool(cb).astype(np.uint8),
        pool(cr).astype(np.uint8),
    )


def upsample_chroma(c: np.ndarray) -> np.ndarray:
    """Upsample a chroma plane 2x in each direction with fixed integer weights.

    Each output sample is ``(9*a + 3*b + 3*c + d + 8) >> 4`` where ``a`` is the nearest chroma
    sample, ``b``/``c`` the next nearest horizontally/vertically and ``d`` the diagonal one
    (bilinear interpolation for chroma sited at the centre of its 2x2 block; edges replicate).

    Args:
        c: uint8 array (h, w).

    Returns:
        uint8 array (2h, 2w).
    """
    p = np.pad(c.astype(np.int64), 1, mode="edge")
    h, w = c.shape
    out = np.empty((2 * h, 2 * w), dtype=np.int64)
    centre = p[1:-1, 1:-1]
    for dy in (0, 1):
        vert = p[2 * dy : 2 * dy + h, 1:-1]  # row above (dy=0) or below (dy=1)
        for dx in (0, 1):
            horiz = p[1:-1, 2 * dx : 2 * dx + w]
            diag = p[2 * dy : 2 * dy + h, 2 * dx : 2 * dx + w]
            out[dy::2, dx::2] = (9 * centre + 3 * horiz + 3 * vert + diag + 8) >> 4
    return out.astype(np.uint8)


def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Convert BT.601 full-range YUV 4:2:0 planes to an RGB picture with integer arithmetic.

    Args:
        y: uint8 (H, W) with H, W even; u, v: uint8 (H/2, W/2).

    Returns:
        uint8 array (H, W, 3).

    Raises:
        MediaError: plane shapes or dtypes that do not fit together.
    """
    planes = (y, u, v)
    if any(not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 2 for p in planes):
        raise MediaError("YUV planes must be 2-D uint8 arrays")
    h, w = y.shape
    if h % 2 or w % 2 or u.shape != (h // 2, w // 2) or v.shape != (h // 2, w // 2):
        raise MediaError(f"YUV 4:2:0 plane shapes do not fit: {y.shape}, {u.shape}, {v.shape}")
    yy = y.astype(np.int64) << 16
    cb = upsample_chroma(u).astype(np.int64) - 128
    cr = upsample_chroma(v).astype(np.int64) - 128
    half = 1 << 15
    r = (yy + _K_R_CR * cr + half) >> 16
    g = (yy - _K_G_CB * cb - _K_G_CR * cr + half) >> 16
    b = (yy + _K_B_CB * cb + half) >> 16
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


__all__ = ["rgb_to_yuv420", "upsample_chroma", "yuv420_to_rgb"]
