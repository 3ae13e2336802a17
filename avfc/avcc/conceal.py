"""Speech concealment from motion: lost Codec2 700C frames rebuilt by the joint audio-video model.

When an audio unit is lost or damaged, the decoder usually still has the keypoints of those
frames (motion comes in its own units) and the audio around the gap. The joint model is the
transformer of :mod:`avfc.avcc.diffusion` (the same trunk: motion offsets, 700C field embeddings,
roles, positions, noise level) with two kinds of heads: the motion head (clean lips offsets, as
in the diffusion lips model) and four *audio heads*, the logits of each 700C field (``vq1``,
``vq2``, ``energy``, ``pitch``) of every token. It is trained on both tasks at once
(:mod:`avfc.train.avcc_conceal`): denoise the motion of a block, and recover 700C fields hidden
at random ("unknown" embedding row) from the motion and the fields left.

Filling a gap is absorbing-state discrete diffusion (MaskGIT-style): all fields of the lost
frames start "unknown"; each of ``S`` steps runs the network on the window and fixes, at their
most probable value, the fields it is most sure of, until after step ``s`` only
``floor(n cos(pi/2 s/S))`` of the ``n`` fields remain unknown. Ties go to the earlier frame and
field, so the result is a deterministic function of the received data.

The rebuilt tokens feed only Codec2's synthesis, never an entropy decoder: a stream decodes to
the same tokens with or without concealment wherever its units are intact, and the concealment
is decoder behaviour, not part of the format (docs/bitstream.md E.6). Inference is float64 numpy
(no torch), like the diffusion lips model; the weights ship inside the package with their sha256
in :data:`CONCEAL_ZOO`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np

from avfc.avcc.diffusion import (
    FIELD_NAMES,
    ROLE_ABSENT,
    ROLE_BLOCK,
    ROLE_CONTEXT,
    ROLE_LOOKAHEAD,
    LipsDiffusion,
    field_indexes,
    float_arrays,
)
from avfc.avcc.motion_pred import FIELD_SIZES
from avfc.errors import AvfcError, EntropyError, ModelMismatchError

#: steps of the unmasking schedule the decoder runs per gap chunk
DEFAULT_STEPS = 8
MAX_STEPS = 64
#: longest run of lost audio frames the decoder fills (longer runs: the rest stays silent)
MAX_GAP_FRAMES = 250


@dataclass(frozen=True)
class ConcealEntry:
    """A shipped joint concealment model."""

    name: str
    sha256: str
    animation_model: str  # keypoints it was trained on
    kp_precision: int  # their grid
    description: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.sha256[:8]}.safetensors"


#: released entries are never changed (a retrained model is a new name)
CONCEAL_ZOO: dict[str, ConcealEntry] = {
    e.name: e
    for e in [
        ConcealEntry(
            name="avcc-conceal-v1",
            sha256="1e262f303569241d5c0752df2ba8d5d927e6ce0f16db54345fd22844fbc75069",
            animation_model="mrdac-cpu-v2",
            kp_precision=5,
            description="Joint transformer (width 32, 2 layers, 68 068 parameters) over mrdac-cpu-v2 lips offsets "
                        "and 700C fields, trained on av/ and speech/ (python -m avfc.train.avcc_conceal --steps "
                        "1500 --width 32 --layers 2 --ffn 64 --embed 8 --dropout 0.3 --weight-decay 0.1; kept "
                        "step 300); float32, 277 kB. See docs/model-card.md.",
        ),
    ]
}


def audio_head_shapes(width: int) -> dict[str, tuple[int, ...]]:
    """The audio heads' arrays (names without the ``conceal.`` prefix) and their shapes."""
    out: dict[str, tuple[int, ...]] = {}
    for name, size in zip(FIELD_NAMES, FIELD_SIZES):
        out[f"audio_head.{name}.weight"] = (size, width)
        out[f"audio_head.{name}.bias"] = (size,)
    return out


@dataclass(frozen=True)
class JointConcealer:
    """The joint model (trunk and motion head as :class:`LipsDiffusion`, plus the audio heads)."""

    net: LipsDiffusion
    heads: dict[str, np.ndarray] = field(repr=False)  # float64

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "conceal.") -> "JointConcealer":
        """Load from the arrays of a concealment file (EntropyError when malformed)."""
        net = LipsDiffusion.from_arrays(arrays, prefix=prefix)
        heads = float_arrays(arrays, prefix, audio_head_shapes(net.meta.width), "concealment model")
        return cls(net=net, heads=heads)

    def to_arrays(self, prefix: str = "conceal.") -> dict[str, np.ndarray]:
        out = self.net.to_arrays(prefix)
        out.update({prefix + k: v.astype(np.float32) for k, v in self.heads.items()})
        return out

    def logits(self, h: np.ndarray) -> list[np.ndarray]:
        """Per field, ``(..., size)`` logits from trunk features ``h``."""
        return [h @ self.heads[f"audio_head.{n}.weight"].T + self.heads[f"audio_head.{n}.bias"] for n in FIELD_NAMES]

    # ------------------------------------------------------------------ one window
    def fill_window(self, rows: np.ndarray, motion: np.ndarray, known: np.ndarray, steps: int = DEFAULT_STEPS,
                    stop: Optional[int] = None) -> np.ndarray:
        """Fill the unknown fields (-1) of the block of one window.

        Args:
            rows: ``(P + B + L, 4)`` 700C fields of the window's frames, -1 where unknown.
            motion: ``(P + B, C)`` integer lips offsets of the context and block frames.
            known: ``(P + B,)`` bool, whether each of those frames' motion is known.
            steps: unmasking steps.
            stop: fill only the block tokens before this token index (default ``P + B``); unknown
                rows after it stay unknown.

        Returns:
            ``rows`` with every -1 of the block tokens before ``stop`` replaced (other rows unchanged).
        """
        m = self.net.meta
        P, B = m.context, m.block
        if not 1 <= int(steps) <= MAX_STEPS:
            raise EntropyError(f"concealment steps must be in 1..{MAX_STEPS}, got {steps}")
        rows = np.array(rows, dtype=np.int64)
        if rows.shape != (m.tokens, 4):
            raise EntropyError(f"window rows must have shape ({m.tokens}, 4), got {rows.shape}")
        motion = np.asarray(motion)
        known = np.asarray(known, dtype=bool)
        if motion.shape != (P + B, m.channels) or known.shape != (P + B,):
            raise EntropyError(f"window motion must be ({P + B}, {m.channels}) with a ({P + B},) mask")
        roles = np.full(m.tokens, ROLE_BLOCK, np.int64)
        roles[:P] = np.where(known[:P], ROLE_CONTEXT, ROLE_ABSENT)
        roles[P + B:] = ROLE_LOOKAHEAD
        x_in = np.zeros((1, m.tokens, m.channels))
        x_in[0, :P + B] = np.where(known[:, None], motion.astype(np.float64) / self.net.x_scale, 0.0)
        # block frames whose motion is lost: input 0 at noise level 1 (nothing known), else clean (level 0)
        u = np.array([0.0 if known[P:].all() else 1.0])
        if not known[P:].all():
            x_in[0, P:P + B] = 0.0
        stop = P + B if stop is None else int(stop)
        if not P <= stop <= P + B:
            raise EntropyError(f"stop must be in {P}..{P + B}, got {stop}")
        todo = [(t, f) for t in range(P, stop) for f in range(4) if rows[t, f] < 0]
        n0 = len(todo)
        for s in range(1, int(steps) + 1):
            if not todo:
                break
            h = self.net.features(x_in, roles[None], field_indexes(rows)[None], u)[0]
            lg = self.logits(h)
            cand = []
            for i, (t, f) in enumerate(todo):
                z = lg[f][t]
                k = int(np.argmax(z))
                e = np.exp(z - z[k])
                cand.append((-1.0 / float(e.sum()), i, k))  # confidence = max softmax probability
            keep = int(math.floor(n0 * math.cos(math.pi / 2 * s / int(steps)))) if s < int(steps) else 0
            keep = min(keep, len(todo) - 1)  # at least one field per step
            order = sorted(cand)
            fixed = {i: k for _, i, k in order[:len(todo) - keep]}
            for i, k in fixed.items():
                t, f = todo[i]
                rows[t, f] = k
            todo = [tf for i, tf in enumerate(todo) if i not in fixed]
        return rows

    # ------------------------------------------------------------------ a whole clip
    def conceal(self, fields: np.ndarray, offsets: np.ndarray, known: np.ndarray,
                steps: int = DEFAULT_STEPS) -> np.ndarray:
        """Fill the lost audio frames of a clip.

        Args:
            fields: ``(A, 4)`` 700C fields of audio frames ``0 .. A-1``; a lost frame is all -1.
            offsets: ``(T, C)`` integer lips offsets of video frames ``0 .. T-1`` (frame t pairs with
                audio frame t); rows where ``known`` is False are ignored.
            known: ``(T,)`` bool.

        Returns:
            ``(A, 4)`` fields with the lost frames filled, gap by gap in time order, each chunk of
            at most ``B`` frames seeing the audio rebuilt before it. Runs longer than
            :data:`MAX_GAP_FRAMES` are filled for their first ``MAX_GAP_FRAMES`` frames only.
        """
        m = self.net.meta
        P, B = m.context, m.block
        out = np.array(fields, dtype=np.int64)
        if out.ndim != 2 or out.shape[1] != 4:
            raise EntropyError(f"fields must be (A, 4), got {out.shape}")
        offsets = np.asarray(offsets)
        known = np.asarray(known, dtype=bool)
        if offsets.ndim != 2 or offsets.shape[1] != m.channels or known.shape != (offsets.shape[0],):
            raise EntropyError(f"offsets must be (T, {m.channels}) with a (T,) mask")
        lost = (out < 0).all(axis=1)
        assert isinstance(lost, np.ndarray)  # (out is 2-D: one flag per row)
        a = 0
        while a < len(out):
            if not lost[a]:
                a += 1
                continue
            b = a
            while b < len(out) and lost[b]:
                b += 1
            end = min(b, a + MAX_GAP_FRAMES)
            for s in range(a, end, B):
                w0 = s - P
                rows = np.full((m.tokens, 4), -1, np.int64)
                lo, hi = max(w0, 0), min(w0 + m.tokens, len(out))
                rows[lo - w0:hi - w0] = out[lo:hi]
                stop = min(s + B, end) - w0
                mot = np.zeros((P + B, m.channels), np.int64)
                kn = np.zeros(P + B, bool)
                for j in range(P + B):
                    t = w0 + j
                    if 0 <= t < len(known) and known[t]:
                        mot[j], kn[j] = offsets[t], True
                filled = self.fill_window(rows, mot, kn, steps, stop=stop)
                out[s:s + stop - P] = filled[P:stop]
            a = b
        return out


@lru_cache(maxsize=2)
def load_concealer(name: str) -> JointConcealer:
    """The shipped concealment model ``name``, its file checked against the zoo's sha256.

    Raises:
        ModelMismatchError: unknown name, missing or damaged file, malformed arrays.
    """
    from avfc.avcc.zoo import read_shipped

    entry = CONCEAL_ZOO.get(name)
    if entry is None:
        raise ModelMismatchError(f"unknown concealment model {name!r}; known: {', '.join(sorted(CONCEAL_ZOO)) or 'none'}")
    what = f"concealment model {name!r}"
    try:
        return JointConcealer.from_arrays(read_shipped(entry.filename, entry.sha256, what))
    except ModelMismatchError:
        raise
    except AvfcError as exc:
        raise ModelMismatchError(f"{what} cannot be read: {exc}") from None


def concealer_for(animation_model: str, kp_precision: int) -> Optional[JointConcealer]:
    """The newest shipped concealment model for streams of ``animation_model`` on grid
    ``kp_precision``, or None when there is none."""
    names = [e.name for e in CONCEAL_ZOO.values()
             if e.animation_model == animation_model and e.kp_precision == kp_precision]
    return load_concealer(names[-1]) if names else None
