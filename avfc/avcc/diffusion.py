"""Lips from speech by a small denoising diffusion model (format 1.3, ``DIFFUSION_LIPS``).

A transformer denoises the lips offsets of a block of ``B`` frames from the joint sequence of
motion and audio tokens: the ``P`` frames before the block (the previous block's output, or
"absent" for the first block), the ``B`` frames of the block (noisy offsets) and ``L`` lookahead
frames (audio only). Every token carries the four Codec2 700C fields of its frame. Sampling is
deterministic DDIM (eta = 0, ``x0`` prediction, cosine schedule) with ``S`` steps from a noise
drawn by a counter-based integer generator (:func:`gaussian_noise`), so a stream's keypoints are
fixed by the stream (seed and step count are in its header, docs/bitstream.md F.10).

Blocks are absolute: block ``k`` holds frames ``kB .. kB+B-1`` and depends only on the audio
fields of frames ``kB-P .. kB+B+L-1``, on the previous block's output and on ``(seed, frame)``,
so the keypoints of a frame never depend on how the stream was split into calls, and a key
frame changes only the reference keypoints added to the offsets, not the offsets. Attention
spans one window of ``P + B + L`` tokens: the work per frame is bounded whatever the length.

No torch here: inference runs in float64 numpy (training, in :mod:`avfc.train.avcc_diffusion`,
uses torch with the same parameter names). The offsets are rounded to the integer keypoint grid;
they feed only the animation model, never an entropy decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from avfc.avcc.motion_pred import FIELD_SIZES, check_audio_rows
from avfc.entropy.quant import QMAX, check_symbols
from avfc.errors import EntropyError

_FORMAT_VERSION = 1
#: token roles: a frame of the block (noisy offsets), a context frame (the previous block's
#: output), a context frame before the first block (no motion known), a lookahead frame (audio only)
ROLE_BLOCK, ROLE_CONTEXT, ROLE_ABSENT, ROLE_LOOKAHEAD = 0, 1, 2, 3
NUM_ROLES = 4
#: embedding rows per 700C field: its values, then one row for "unknown"
FIELD_ROWS: tuple[int, ...] = tuple(n + 1 for n in FIELD_SIZES)
FIELD_NAMES: tuple[str, ...] = ("vq1", "vq2", "energy", "pitch")
#: offset of the cosine schedule
SCHEDULE_S = 0.008
#: steps a stream may ask for (header field diffusion_steps)
MAX_STEPS = 64
LN_EPS = 1e-5
_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
#: uniforms summed per normal draw (Irwin-Hall): 12 uniforms have variance exactly 1
NOISE_TERMS = 12
_UNIFORM_BITS = 48


# --------------------------------------------------------------------------- noise
def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of ``x + golden`` (uint64 arrays, arithmetic modulo 2**64)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def gaussian_noise(seed: int, first_frame: int, frames: int, channels: int) -> np.ndarray:
    """Standard-normal-like noise of frames ``first_frame ..`` and ``channels`` channels, float64.

    Counter based, integer only up to one exact conversion, so identical on every machine::

        k_f    = splitmix64(splitmix64(seed) ^ f)                 (frame f, absolute index)
        h_j    = splitmix64(k_f ^ (12 c + j)) >> 16               (j = 0..11, 48-bit uniforms)
        z[f,c] = (sum_j h_j - 6 * 2**48) / 2**48                  (exact in float64)

    ``z`` is the Irwin-Hall sum of 12 uniforms centred: mean 0, variance 1, range (-6, 6).
    """
    if not 0 <= int(seed) <= 0xFFFF_FFFF:
        raise EntropyError(f"diffusion seed must be a u32, got {seed}")
    if first_frame < 0 or frames < 0 or channels < 1:
        raise EntropyError(f"bad noise request: frames {first_frame}+{frames}, channels {channels}")
    with np.errstate(over="ignore"):
        k_seed = splitmix64(np.array([int(seed)], dtype=np.uint64))
        idx = np.arange(first_frame, first_frame + frames, dtype=np.uint64)
        k_frame = splitmix64(k_seed ^ idx)  # (F,)
        ctr = np.arange(channels * NOISE_TERMS, dtype=np.uint64).reshape(channels, NOISE_TERMS)
        h = splitmix64(k_frame[:, None, None] ^ ctr[None]) >> np.uint64(64 - _UNIFORM_BITS)
    total = h.sum(axis=2, dtype=np.uint64).astype(np.int64) - NOISE_TERMS // 2 * (1 << _UNIFORM_BITS)
    return total.astype(np.float64) / float(1 << _UNIFORM_BITS)


# --------------------------------------------------------------------------- schedule
def alpha_bar(u: np.ndarray | float) -> np.ndarray:
    """Signal fraction of the cosine schedule at noise level ``u`` in [0, 1] (1 at u = 0)."""
    s = SCHEDULE_S
    u = np.asarray(u, dtype=np.float64)
    return (np.cos((u + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)) ** 2


def time_features(u: np.ndarray, count: int) -> np.ndarray:
    """Sinusoidal features of the noise level: ``sin`` then ``cos`` of ``1000 u 10000**(-i/count)``."""
    u = np.asarray(u, dtype=np.float64).reshape(-1, 1)
    freqs = 10000.0 ** (-np.arange(count, dtype=np.float64) / count)
    ang = 1000.0 * u * freqs[None, :]
    return np.concatenate([np.sin(ang), np.cos(ang)], axis=1)


def field_indexes(rows: np.ndarray) -> np.ndarray:
    """Embedding row of each 700C field of checked audio rows: the value, or its last row if unknown."""
    rows = np.asarray(rows, dtype=np.int64)
    unknown = rows[..., 0:1] < 0
    return np.where(unknown, np.asarray(FIELD_SIZES, dtype=np.int64), rows)


def offsets_to_grid(x: np.ndarray, kp_dim: int) -> np.ndarray:
    """Round float offsets to the integer grid (``floor(x + 0.5)``) and remove each axis' mean
    with a floor division, exactly as :mod:`avfc.avcc.lips` does (int64)."""
    r = np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)
    per_axis = r.shape[-1] // kp_dim
    for axis in range(kp_dim):
        r[..., axis::kp_dim] -= r[..., axis::kp_dim].sum(axis=-1, keepdims=True) // per_axis
    return np.clip(r, -QMAX, QMAX)


def grid_offsets(q: np.ndarray, ref_q: np.ndarray, kp_dim: int = 2) -> np.ndarray:
    """Training target of the diffusion model: ``q - ref_q`` with each axis' floor mean removed (int64)."""
    return offsets_to_grid(np.asarray(q, np.int64) - np.asarray(ref_q, np.int64)[None, :], kp_dim)


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class DiffusionMeta:
    """Sizes of a diffusion lips model (``diffusion.meta``)."""

    channels: int  # C
    kp_dim: int  # D: values per keypoint (axes)
    block: int  # B: frames per block
    context: int  # P: frames of the previous block the model sees
    lookahead: int  # L: audio frames after the block
    width: int  # model width
    layers: int
    heads: int
    ffn: int  # hidden width of the feed-forward layers
    embed: int  # width of each 700C field embedding
    time_freqs: int  # sinusoidal frequencies of the noise level

    @property
    def tokens(self) -> int:
        """Window length ``P + B + L``."""
        return self.context + self.block + self.lookahead

    def as_array(self) -> np.ndarray:
        return np.array([_FORMAT_VERSION, self.channels, self.kp_dim, self.block, self.context, self.lookahead,
                         self.width, self.layers, self.heads, self.ffn, self.embed, self.time_freqs], np.int64)


def parameter_shapes(m: DiffusionMeta) -> dict[str, tuple[int, ...]]:
    """Every float array of the model (names without the ``diffusion.`` prefix) and its shape."""
    d, c = m.width, m.channels
    shapes: dict[str, tuple[int, ...]] = {
        "x_scale": (1,), "guidance": (1,),
        "in.weight": (d, c), "in.bias": (d,),
        "role": (NUM_ROLES, d), "pos": (m.tokens, d),
        **{f"emb.{n}": (rows, m.embed) for n, rows in zip(FIELD_NAMES, FIELD_ROWS)},
        "audio.weight": (d, 4 * m.embed), "audio.bias": (d,),
        "time1.weight": (d, 2 * m.time_freqs), "time1.bias": (d,),
        "time2.weight": (d, d), "time2.bias": (d,),
    }
    for i in range(m.layers):
        p = f"layer{i}."
        shapes.update({
            p + "ln1.weight": (d,), p + "ln1.bias": (d,),
            p + "qkv.weight": (3 * d, d), p + "qkv.bias": (3 * d,),
            p + "proj.weight": (d, d), p + "proj.bias": (d,),
            p + "ln2.weight": (d,), p + "ln2.bias": (d,),
            p + "ff1.weight": (m.ffn, d), p + "ff1.bias": (m.ffn,),
            p + "ff2.weight": (d, m.ffn), p + "ff2.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,), "head.weight": (c, d), "head.bias": (c,)})
    return shapes


def float_arrays(arrays: dict[str, np.ndarray], prefix: str, shapes: dict[str, tuple[int, ...]],
                 what: str) -> dict[str, np.ndarray]:
    """float64 copies of the float32 arrays ``prefix + name`` of ``shapes``, each checked for presence,
    dtype, shape and finiteness (EntropyError naming ``what`` and the array otherwise)."""
    out = {}
    for name, shape in shapes.items():
        a = arrays.get(prefix + name)
        if a is None:
            raise EntropyError(f"{what}: {prefix}{name} is missing")
        a = np.asarray(a)
        if a.dtype != np.float32 or a.shape != shape:
            raise EntropyError(f"{what}: {prefix}{name} must be float32 {shape}, got {a.dtype} {a.shape}")
        if not np.isfinite(a).all():
            raise EntropyError(f"{what}: {prefix}{name} is not finite")
        out[name] = a.astype(np.float64)
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


@dataclass(frozen=True)
class LipsDiffusion:
    """The denoiser and its sampler (see the module doc and docs/bitstream.md F.10)."""

    meta: DiffusionMeta
    params: dict[str, np.ndarray] = field(repr=False)  # float64 copies of the float32 arrays

    @property
    def num_channels(self) -> int:
        return self.meta.channels

    @property
    def x_scale(self) -> float:
        return float(self.params["x_scale"][0])

    @property
    def guidance(self) -> float:
        return float(self.params["guidance"][0])

    # ------------------------------------------------------------------ arrays
    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "diffusion.") -> "LipsDiffusion":
        """Load from ``<prefix>meta`` (int) and the float32 arrays of :func:`parameter_shapes`.

        Raises:
            EntropyError: if an array is missing, of another dtype or shape, or not finite, or a
                size is out of range.
        """
        raw = arrays.get(prefix + "meta")
        if raw is None:
            raise EntropyError(f"diffusion model: {prefix}meta is missing")
        meta_arr = np.asarray(raw)
        if meta_arr.dtype.kind not in "iu" or meta_arr.shape != (12,):
            raise EntropyError(f"diffusion model: {prefix}meta must be 12 integers, got {meta_arr.dtype} "
                               f"{meta_arr.shape}")
        version, *sizes = (int(v) for v in meta_arr)
        if version != _FORMAT_VERSION:
            raise EntropyError(f"diffusion model format {version} is not supported")
        m = DiffusionMeta(*sizes)
        if (not 1 <= m.channels <= 256 or not 1 <= m.kp_dim <= 3 or m.channels % m.kp_dim
                or not 1 <= m.block <= 256 or not 0 <= m.context <= min(m.block, 64) or not 0 <= m.lookahead <= 64
                or not 1 <= m.width <= 1024 or not 1 <= m.layers <= 16 or not 1 <= m.heads <= 16
                or m.width % m.heads or not 1 <= m.ffn <= 4096 or not 1 <= m.embed <= 256
                or not 1 <= m.time_freqs <= 256):
            raise EntropyError(f"diffusion model sizes out of range: {m}")
        params = float_arrays(arrays, prefix, parameter_shapes(m), "diffusion model")
        if not params["x_scale"][0] > 0:
            raise EntropyError("diffusion model: x_scale must be positive")
        return cls(meta=m, params=params)

    def to_arrays(self, prefix: str = "diffusion.") -> dict[str, np.ndarray]:
        """The model as arrays (int64 meta, float32 parameters; inverse of :meth:`from_arrays`)."""
        out = {prefix + "meta": self.meta.as_array()}
        out.update({prefix + k: v.astype(np.float32) for k, v in self.params.items()})
        return out

    # ------------------------------------------------------------------ network
    def denoise(self, x_in: np.ndarray, roles: np.ndarray, fields: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The network: predicted clean offsets (model units) of every token.

        Args:
            x_in: ``(N, T, C)`` motion input (noisy offsets, context offsets or 0), model units.
            roles: ``(N, T)`` token roles.
            fields: ``(N, T, 4)`` embedding rows of the 700C fields (:func:`field_indexes`).
            u: ``(N,)`` noise levels.

        Returns:
            ``(N, T, C)`` float64.
        """
        p = self.params
        return self.features(x_in, roles, fields, u) @ p["head.weight"].T + p["head.bias"]

    def features(self, x_in: np.ndarray, roles: np.ndarray, fields: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The transformer's normalised output ``(N, T, width)`` that the heads read (arguments as
        :meth:`denoise`)."""
        p, m = self.params, self.meta
        h = x_in @ p["in.weight"].T + p["in.bias"]
        h = h + p["role"][roles] + p["pos"][None, :x_in.shape[1]]
        emb = np.concatenate([p[f"emb.{n}"][fields[..., i]] for i, n in enumerate(FIELD_NAMES)], axis=-1)
        h = h + emb @ p["audio.weight"].T + p["audio.bias"]
        t = np.maximum(time_features(u, m.time_freqs) @ p["time1.weight"].T + p["time1.bias"], 0.0)
        h = h + (t @ p["time2.weight"].T + p["time2.bias"])[:, None, :]
        n, tok, d = h.shape
        hd = d // m.heads
        for i in range(m.layers):
            q = f"layer{i}."
            a = _layer_norm(h, p[q + "ln1.weight"], p[q + "ln1.bias"])
            qkv = (a @ p[q + "qkv.weight"].T + p[q + "qkv.bias"]).reshape(n, tok, 3, m.heads, hd)
            qh, kh, vh = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))  # (n, heads, tok, hd)
            s = qh @ kh.transpose(0, 1, 3, 2) / math.sqrt(hd)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s = s / s.sum(axis=-1, keepdims=True)
            o = (s @ vh).transpose(0, 2, 1, 3).reshape(n, tok, d)
            h = h + o @ p[q + "proj.weight"].T + p[q + "proj.bias"]
            a = _layer_norm(h, p[q + "ln2.weight"], p[q + "ln2.bias"])
            h = h + np.maximum(a @ p[q + "ff1.weight"].T + p[q + "ff1.bias"], 0.0) @ p[q + "ff2.weight"].T \
                + p[q + "ff2.bias"]
        return _layer_norm(h, p["ln_f.weight"], p["ln_f.bias"])

    # ------------------------------------------------------------------ sampler
    def window_inputs(self, rows: np.ndarray, context: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Roles, field rows and the context part of the motion input of one block's window.

        ``rows``: ``(P + B + L, 4)`` 700C fields of frames ``kB-P .. kB+B+L-1`` (-1 unknown);
        ``context``: ``(P, C)`` integer offsets of frames ``kB-P .. kB-1``, or None for block 0.
        """
        m = self.meta
        rows = check_audio_rows(rows, m.tokens)
        roles = np.full(m.tokens, ROLE_BLOCK, np.int64)
        roles[:m.context] = ROLE_ABSENT if context is None else ROLE_CONTEXT
        roles[m.context + m.block:] = ROLE_LOOKAHEAD
        x_ctx = np.zeros((m.context, m.channels))
        if context is not None:
            ctx = check_symbols(context, "context")
            if ctx.shape != (m.context, m.channels):
                raise EntropyError(f"context must have shape ({m.context}, {m.channels}), got {ctx.shape}")
            x_ctx = ctx.astype(np.float64) / self.x_scale
        return roles, field_indexes(rows), x_ctx

    def sample_block(self, block: int, rows: np.ndarray, context: Optional[np.ndarray], seed: int,
                     steps: int) -> np.ndarray:
        """Integer offsets ``(B, C)`` of frames ``block*B .. block*B+B-1`` (docs/bitstream.md F.10).

        Raises:
            EntropyError: bad rows, context, seed or step count.
        """
        m = self.meta
        if not 1 <= int(steps) <= MAX_STEPS:
            raise EntropyError(f"diffusion steps must be in 1..{MAX_STEPS}, got {steps}")
        if block < 0:
            raise EntropyError(f"block index must be >= 0, got {block}")
        roles, fidx, x_ctx = self.window_inputs(rows, context)
        x = gaussian_noise(seed, block * m.block, m.block, m.channels)
        guided = self.guidance != 1.0
        n = 2 if guided else 1
        roles_b = np.repeat(roles[None], n, axis=0)
        fidx_b = np.repeat(fidx[None], n, axis=0)
        if guided:  # second copy: the same window with every audio field unknown
            fidx_b[1] = np.asarray(FIELD_SIZES, dtype=np.int64)[None, :]
        x_in = np.zeros((n, m.tokens, m.channels))
        x_in[:, :m.context] = x_ctx
        sl = slice(m.context, m.context + m.block)
        x0 = x
        for k in range(int(steps), 0, -1):
            u, u_next = k / steps, (k - 1) / steps
            x_in[:, sl] = x
            out = self.denoise(x_in, roles_b, fidx_b, np.full(n, u))[:, sl]
            x0 = out[0] if not guided else out[1] + self.guidance * (out[0] - out[1])
            if k > 1:
                ab, ab_next = float(alpha_bar(u)), float(alpha_bar(u_next))
                eps = (x - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)
                x = math.sqrt(ab_next) * x0 + math.sqrt(1.0 - ab_next) * eps
        return offsets_to_grid(x0 * self.x_scale, m.kp_dim)

    def block_rows(self, fields: np.ndarray, block: int) -> np.ndarray:
        """The window rows of ``block`` from the fields of audio frames ``0 .. len(fields)-1``
        (-1 outside them)."""
        m = self.meta
        start = block * m.block - m.context
        out = np.full((m.tokens, 4), -1, dtype=np.int64)
        lo, hi = max(start, 0), min(start + m.tokens, len(fields))
        if hi > lo:
            out[lo - start:hi - start] = np.asarray(fields[lo:hi], dtype=np.int64)
        return out

    def generate(self, fields: np.ndarray, num_frames: int, seed: int, steps: int) -> np.ndarray:
        """Integer offsets ``(num_frames, C)`` of a whole clip, block after block (offline use).

        ``fields``: ``(A, 4)`` 700C fields of audio frames ``0 .. A-1``; later frames are unknown.
        """
        m = self.meta
        out, context = [], None
        for block in range((int(num_frames) + m.block - 1) // m.block):
            off = self.sample_block(block, self.block_rows(fields, block), context, seed, steps)
            out.append(off)
            context = off[m.block - m.context:] if m.context else None
        if not out:
            return np.zeros((0, m.channels), np.int64)
        return np.concatenate(out)[:num_frames]

    def context_of(self, offsets: np.ndarray) -> Optional[np.ndarray]:
        """The context the next block takes from a block's ``(B, C)`` offsets."""
        return np.asarray(offsets)[self.meta.block - self.meta.context:] if self.meta.context else None


def keypoints_from_offsets(ref_q: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``clip(ref_q + offsets, -QMAX, QMAX)`` as int32 (offsets ``(T, C)`` or ``(C,)``)."""
    ref = check_symbols(ref_q, "ref_q").astype(np.int64)
    return np.clip(ref + np.asarray(offsets, dtype=np.int64), -QMAX, QMAX).astype(np.int32)
