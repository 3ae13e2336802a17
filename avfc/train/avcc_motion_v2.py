"""Feasibility study: richer speech features for the speech-conditioned motion coder (issue 21).

``python -m avfc.train.avcc_motion_v2 --train av av2 --eval av-eval`` prints a markdown table of
motion bits per frame on the evaluation clips for the plain coder (``encode_motion``), the
format 1.1 predictor (:mod:`avfc.avcc.motion_pred`) and candidate predictors with richer speech
features, each next to its speech ablation (the same variant refitted with every speech feature
removed) and the same predictor with its speech terms zeroed.

Nothing here changes a bitstream. A *variant* (:class:`Variant`) is a generalisation of the 1.1
predictor that a future MOTION_PRED version could carry; it is computed exactly as a decoder
would (integer tables indexed by integer categories of the decoded 700C fields, int64 sums and
floor shifts, the same channel-by-channel in-frame term, adaptive tables and escapes as
:mod:`avfc.avcc.motion_pred`), and its packets are coded into real rANS bytes with
:func:`avfc.entropy.rans.encode_symbols`, so the bits are exact for that hypothetical format.

Speech features of frame ``t`` (each a category per audio frame, ``unknown`` outside the clip or
past the packet's end; lag ``l`` is audio frame ``t + l``):

* ``energy`` (17 categories) and ``voiced`` (3), as format 1.1;
* ``denergy``: the energy change ``e[t+l] - e[t+l-1]`` clipped to ``[-4, 4]`` (10 categories);
* ``vq``: each spectral VQ index (``vq1``, ``vq2``, 512 values) through a learned integer lookup
  table into ``vq_classes`` classes (k-means of per-index ridge embeddings on the training set);
* lags ``-history .. lookahead``; look-ahead stops at the packet's last frame (the packet's audio
  is decoded before its motion, so it costs no delay beyond the packet).

Speech terms may be restricted to ``speech_channels`` (the other channels get none), and the
table-index offsets may depend on a speech context (``offsets_ctx``: silence / speech / energy
rising / falling) per channel (``channel_offsets``). Without speech, ``anchor`` adds a linear term
in the previous frame minus a running mean of the packet's past frames (Q4, decay 1/4).

Options: ``--first-intra`` (only a clip's first packet INTRA), ``--eval dev`` (fit and measure on
the people-disjoint split of the training folders, :data:`DEV_PEOPLE`), ``--searched FOLDER``
(measure decoded motion ``<clip>.npy`` instead of the detector's keypoints), ``--model``,
``--precision``, ``--hysteresis`` (the keypoints' detector and grid), ``--bundle`` (the shipped
predictor measured as today's).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np

from avfc.avcc.motion_pred import (
    ENERGY,
    ENERGY_UNKNOWN,
    MAG_LEVELS,
    PITCH,
    SILENCE_ENERGY,
    VOICED_UNKNOWN,
    SpeechMotionPredictor,
    _best_initial_index,
)
from avfc.entropy import encode_motion
from avfc.entropy.motion import _LAPLACE_KEYS, _SIDE_KEY, _append_residual, _costs, _intra_frame_symbols, _symbol_index, next_states
from avfc.entropy.quant import QMAX
from avfc.entropy.rans import ModelKey, encode_symbols
from avfc.entropy.tables import INITIAL_STATE_Q12, NUM_SCALES, SCALE_THRESHOLDS_Q12, initial_state, scale_index, update_state
from avfc.errors import ConfigError

PACKET = 25
SHIFT = 12
VQ_SIZE = 512
DENERGY_MAX = 4
#: running mean of past keypoints (the anchor term): fractional bits and decay shift (1/4 per frame)
ANCHOR_FRAC = 4
ANCHOR_DECAY = 2
#: speech contexts of the table-index offsets with onsets (see speech_context)
NUM_SPEECH_CTX = 5
ONSET_STEP = 2

#: people seen in more than one clip of av/ and av2/ (../shared/data SOURCES-2026-12.md "person"):
#: prefix of the clip name -> person; other clips are one person each
PERSON_PREFIXES: tuple[tuple[str, str], ...] = (
    ("grid_", "grid"),  # the GRID speakers are not named per file: kept together
    ("retalk_", "retalk"),
    ("styletalk_Obama", "obama"), ("edtalk_uncrop_Obama", "obama"),
    ("pcavs_audio_741400104", "rdj"), ("pcavs_pose_741400163", "rdj"),
    ("pcavs_input_00002", "lily"), ("pcavs_pose_517600055", "lily"),
    ("styletalk_andrew", "andrew"), ("styletalk_feifeili", "feifeili"),
)
#: the 4 channels of mrdac-cpu-v2's keypoints that follow the source mouth opening best on av/
#: (benchmarks/avcc_motion.py: |r| 0.74-0.77 pooled over the clips)
MOUTH_CHANNELS = (11, 3, 5, 7)
#: development people held out of the fit when choosing a variant's settings
DEV_PEOPLE = ("andrew", "feifeili", "pcavs_pose_731200067", "pcavs_audio_00015", "mimictalk_German_20s",
              "latentsync_demo1_video", "real3dportrait_May_5s", "tpsmm_driving")


def person_of(name: str) -> str:
    """The person of a clip name (see :data:`PERSON_PREFIXES`)."""
    for prefix, person in PERSON_PREFIXES:
        if name.startswith(prefix):
            return person
    return name


def split_people(clips: Sequence, dev_people: Sequence[str] = DEV_PEOPLE) -> tuple[list, list]:
    """``(fit, dev)`` clips with every person on one side."""
    dev = set(dev_people)
    return ([c for c in clips if person_of(c.name) not in dev], [c for c in clips if person_of(c.name) in dev])


# ---------------------------------------------------------------------- frames and features
@dataclass
class Frames:
    """Every predicted frame (in-packet index >= 1) of some clips, in coding order."""

    q: np.ndarray  # (N, C) keypoints of the frame
    p1: np.ndarray  # (N, C) previous decoded frame
    delta: np.ndarray  # (N, C) p1 - p2 as the packet coder sees them
    packet: np.ndarray  # (N,) packet number (frames of one packet are contiguous)
    dev: np.ndarray  # (N, C) p1 - running mean of the packet's past frames, ANCHOR_FRAC fractional bits
    cats: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, lags) categories


def _rows(clip, t: int, packet_end: int) -> np.ndarray:
    """700C fields of audio frame ``t`` (-1 when outside the clip or past the packet's end)."""
    if 0 <= t < clip.num_frames and t < packet_end:
        return np.asarray(clip.fields[t], dtype=np.int64)
    return np.full(4, -1, np.int64)


def packet_frames(clips: Sequence, intra: bool = True) -> Frames:
    """The predicted frames of the clips' packets of :data:`PACKET` frames.

    ``intra``: every packet INTRA (frame 1 of a packet repeats frame 0 as its ``p2``); else only
    the first packet of a clip is INTRA and later packets continue from the previous one.
    """
    qs, p1s, ds, devs, pk, idx = [], [], [], [], [], []
    n_packet = 0
    for ci, clip in enumerate(clips):
        q = clip.q.astype(np.int64)
        mean = q[0] << ANCHOR_FRAC
        for first in range(0, clip.num_frames, PACKET):
            end = min(first + PACKET, clip.num_frames)
            start = first + 1 if (intra or first == 0) else first
            if intra:
                mean = q[first] << ANCHOR_FRAC
            for t in range(start, end):
                p1 = q[t - 1]
                p2 = q[t - 2] if t - 2 >= (first if intra else 0) else q[t - 1]
                mean = mean + (((p1 << ANCHOR_FRAC) - mean) >> ANCHOR_DECAY)
                qs.append(q[t])
                p1s.append(p1)
                ds.append(p1 - p2)
                pk.append(n_packet)
                devs.append((p1 << ANCHOR_FRAC) - mean)
                idx.append((ci, t, end))
            n_packet += 1
    c = clips[0].q.shape[1]
    fr = Frames(q=np.array(qs, np.int64).reshape(-1, c), p1=np.array(p1s, np.int64).reshape(-1, c),
                delta=np.array(ds, np.int64).reshape(-1, c), packet=np.array(pk, np.int64),
                dev=np.array(devs, np.int64).reshape(-1, c))
    fr.cats["_index"] = np.array(idx, np.int64).reshape(-1, 3)
    return fr


def audio_lags(clips: Sequence, fr: Frames, history: int, lookahead: int) -> np.ndarray:
    """``(N, history + lookahead + 2, 4)`` fields of audio frames ``t - history - 1 .. t + lookahead``."""
    lags = range(-history - 1, lookahead + 1)
    return np.stack([np.stack([_rows(clips[ci], t + lag, end) for lag in lags]) for ci, t, end in fr.cats["_index"]])


def energy_cat(rows: np.ndarray) -> np.ndarray:
    """Energy category (16 unknown) of rows ``(..., 4)``."""
    return np.where(rows[..., ENERGY] < 0, ENERGY_UNKNOWN, rows[..., ENERGY])


def voiced_cat(rows: np.ndarray) -> np.ndarray:
    """Voiced category (0 unvoiced, 1 voiced, 2 unknown)."""
    return np.where(rows[..., ENERGY] < 0, VOICED_UNKNOWN, (rows[..., PITCH] > 0).astype(np.int64))


def denergy_cat(rows: np.ndarray) -> np.ndarray:
    """Energy change of each lag from the one before, clipped to +-DENERGY_MAX; 2*DENERGY_MAX+1 unknown."""
    e = rows[..., ENERGY]
    d = np.clip(e[:, 1:] - e[:, :-1], -DENERGY_MAX, DENERGY_MAX) + DENERGY_MAX
    return np.where((e[:, 1:] < 0) | (e[:, :-1] < 0), 2 * DENERGY_MAX + 1, d)


def speech_context(rows: np.ndarray, history: int, onsets: bool = True) -> np.ndarray:
    """Context ``(N,)`` of the table-index offsets from audio frames ``t`` and ``t - 1``.

    0 unknown, 1 silence (energy <= SILENCE_ENERGY), 2 speech (format 1.1's activity); with
    ``onsets`` also 3 energy rising and 4 falling by at least ONSET_STEP.
    """
    e0, e1 = rows[:, history + 1, ENERGY], rows[:, history, ENERGY]
    ctx = np.where(e0 <= SILENCE_ENERGY, 1, 2)
    if onsets:
        rising, falling = (e1 >= 0) & (e0 - e1 >= ONSET_STEP), (e1 >= 0) & (e1 - e0 >= ONSET_STEP)
        ctx = np.where(rising, 3, np.where(falling, 4, ctx))
    return np.where(e0 < 0, 0, ctx)


# ---------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """A candidate predictor (see the module doc)."""

    name: str
    history: int = 2
    lookahead: int = 0
    energy: bool = True
    voiced: bool = True
    denergy: bool = False
    vq_classes: int = 0
    speech_channels: Optional[tuple[int, ...]] = None  # None: every channel
    anchor: bool = False  # linear term in p1 minus the running mean of the past frames (no speech)
    channel_offsets: bool = False  # one offset table per channel (else per channel group)
    offsets_ctx: str = "activity"  # table-index offsets per: "none", "activity" (1.1), "onset" (5 contexts)
    lam: float = 100.0

    def ablation(self) -> "Variant":
        """The same variant without any speech feature."""
        return replace(self, name=self.name + " (no speech)", energy=False, voiced=False, denergy=False,
                       vq_classes=0, offsets_ctx="none")

    @property
    def has_speech(self) -> bool:
        return self.energy or self.voiced or self.denergy or self.vq_classes > 0 or self.offsets_ctx != "none"


@dataclass
class Fitted:
    """Integer tables of a fitted variant (everything the decoder would need)."""

    variant: Variant
    bias: np.ndarray  # (C,)
    w_delta: np.ndarray  # (C, C)
    tables: dict[str, np.ndarray]  # feature name -> (lags, categories, C) int64
    cross: np.ndarray  # (C, C) strictly lower triangular
    offsets: np.ndarray  # (NUM_SPEECH_CTX or 1, groups, MAG_LEVELS)
    vq_map: Optional[np.ndarray] = None  # (2, 512) vq index -> class
    groups: Optional[np.ndarray] = None  # (C,) channel group (1 = speech channel)
    w_dev: Optional[np.ndarray] = None  # (C, C) weights of the anchor term

    def zeroed(self) -> "Fitted":
        """The same predictor with its speech tables set to zero (offsets kept)."""
        return replace(self, tables={k: np.zeros_like(v) for k, v in self.tables.items()})


def categories(v: Variant, rows: np.ndarray, vq_map: Optional[np.ndarray]) -> dict[str, tuple[np.ndarray, int]]:
    """Feature name -> ``((N, lags) categories, number of categories)`` of ``rows`` (N, H+L+2, 4)."""
    cur = rows[:, 1:]  # lags -history .. lookahead
    out: dict[str, tuple[np.ndarray, int]] = {}
    if v.energy:
        out["energy"] = (energy_cat(cur), ENERGY_UNKNOWN + 1)
    if v.voiced:
        out["voiced"] = (voiced_cat(cur), VOICED_UNKNOWN + 1)
    if v.denergy:
        out["denergy"] = (denergy_cat(rows), 2 * DENERGY_MAX + 2)
    if v.vq_classes and vq_map is not None:
        for f in (0, 1):
            out[f"vq{f + 1}"] = (np.where(cur[..., f] < 0, v.vq_classes, vq_map[f][np.maximum(cur[..., f], 0)]),
                                 v.vq_classes + 1)
    return out


def _onehots(cats: dict[str, tuple[np.ndarray, int]]) -> np.ndarray:
    cols = []
    for c, size in cats.values():
        for lag in range(c.shape[1]):
            m = np.zeros((len(c), size))
            m[np.arange(len(c)), c[:, lag]] = 1.0
            cols.append(m)
    return np.concatenate(cols, axis=1) if cols else np.zeros((0, 0))


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def _to_int(w: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(w, dtype=np.float64) * (1 << SHIFT)).astype(np.int64)


def learn_vq_map(rows: np.ndarray, y: np.ndarray, classes: int, lam: float = 30.0, seed: int = 0) -> np.ndarray:
    """``(2, 512)`` lookup tables vq index -> class: k-means of per-index ridge embeddings of ``y``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((2, VQ_SIZE), np.int64)
    cur = rows[:, -1]
    known = cur[:, 0] >= 0
    for f in (0, 1):
        idx = cur[known, f]
        yy = y[known] - y[known].mean(axis=0)
        counts = np.bincount(idx, minlength=VQ_SIZE).astype(np.float64)
        sums = np.zeros((VQ_SIZE, y.shape[1]))
        np.add.at(sums, idx, yy)
        emb = sums / (counts[:, None] + lam)  # shrunk mean target per index
        centres = emb[rng.choice(VQ_SIZE, classes, replace=False, p=(counts + 1) / (counts + 1).sum())]
        for _ in range(30):
            d = ((emb[:, None, :] - centres[None]) ** 2).sum(axis=2)
            lab = d.argmin(axis=1)
            for k in range(classes):
                w = counts[lab == k] + 1e-3
                if w.size:
                    centres[k] = (emb[lab == k] * w[:, None]).sum(axis=0) / w.sum()
        out[f] = lab
    return out


def _design(v: Variant, fr: Frames, rows: np.ndarray, vq_map: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(base columns [1, delta], speech one-hots)``."""
    cols = [np.ones((len(fr.q), 1)), fr.delta.astype(np.float64)]
    if v.anchor:
        cols.append(fr.dev.astype(np.float64))
    base = np.concatenate(cols, axis=1)
    cats = categories(v, rows, vq_map)
    sp = _onehots(cats) if cats else np.zeros((len(fr.q), 0))
    return base, sp


def fit_variant(v: Variant, clips: Sequence, intra: bool = True) -> Fitted:
    """Fit a variant to aligned clips (ridge in float64, then fixed point; offsets by exact code length)."""
    if not clips:
        raise ConfigError("no training clips")
    fr = packet_frames(clips, intra)
    rows = audio_lags(clips, fr, v.history, v.lookahead)
    y = (fr.q - fr.p1).astype(np.float64)
    c = y.shape[1]
    vq_map = learn_vq_map(rows, y, v.vq_classes) if v.vq_classes else None
    base, sp = _design(v, fr, rows, vq_map)
    speech_ch = np.ones(c, bool) if v.speech_channels is None else np.isin(np.arange(c), v.speech_channels)
    w_base = np.zeros((base.shape[1], c))
    w_sp = np.zeros((sp.shape[1], c))
    x_all = np.concatenate([base, sp], axis=1)
    if speech_ch.any():
        w = _ridge(x_all, y[:, speech_ch], v.lam)
        w_base[:, speech_ch], w_sp[:, speech_ch] = w[:base.shape[1]], w[base.shape[1]:]
    if (~speech_ch).any():
        w_base[:, ~speech_ch] = _ridge(base, y[:, ~speech_ch], v.lam)
    e = y - base @ w_base - sp @ w_sp
    cross = np.zeros((c, c))
    for ch in range(1, c):
        cross[ch, :ch] = _ridge(e[:, :ch], e[:, ch], v.lam)
    tables: dict[str, np.ndarray] = {}
    col = 0
    for name, (cat, size) in categories(v, rows, vq_map).items():
        n = cat.shape[1] * size
        tables[name] = _to_int(w_sp[col:col + n].reshape(cat.shape[1], size, c))
        col += n
    if v.channel_offsets:
        groups = np.arange(c, dtype=np.int64)
    else:
        groups = speech_ch.astype(np.int64) if v.speech_channels is not None else np.zeros(c, np.int64)
    n_ctx = {"none": 1, "activity": 3, "onset": NUM_SPEECH_CTX}[v.offsets_ctx]
    w_dev = _to_int(w_base[1 + c:].T) if v.anchor else None
    fitted = Fitted(v, bias=_to_int(w_base[0]), w_delta=_to_int(w_base[1:1 + c].T), w_dev=w_dev, tables=tables,
                    cross=_to_int(np.tril(cross, -1)), offsets=np.zeros((n_ctx, int(groups.max()) + 1, MAG_LEVELS), np.int64),
                    vq_map=vq_map, groups=groups)
    fitted.offsets = fit_offsets(fitted, fr, rows)
    return fitted


# ---------------------------------------------------------------------- exact coding
def base_numerators(f: Fitted, fr: Frames, rows: np.ndarray) -> np.ndarray:
    """Integer base numerators ``(N, C)`` (bias + delta term + speech tables), as a decoder computes them."""
    num = f.bias[None, :] + fr.delta @ f.w_delta.T
    if f.w_dev is not None:
        num = num + fr.dev @ f.w_dev.T
    for name, (cat, _) in categories(f.variant, rows, f.vq_map).items():
        table = f.tables[name]
        for lag in range(cat.shape[1]):
            num = num + table[lag][cat[:, lag]]
    return num


def residuals(f: Fitted, fr: Frames, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals ``(N, C)`` and magnitude contexts ``(N, C)`` (channel by channel, as motion_pred)."""
    base = base_numerators(f, fr, rows)
    n, c = fr.q.shape
    res = np.zeros((n, c), np.int64)
    mag = np.zeros((n, c), np.int64)
    abs_sum = np.zeros(n, np.int64)
    half = 1 << (SHIFT - 1)
    for ch in range(c):
        num = base[:, ch] + res[:, :ch] @ f.cross[ch, :ch] if ch else base[:, ch]
        pred = np.clip(fr.p1[:, ch] + ((num + half) >> SHIFT), -QMAX, QMAX)
        res[:, ch] = fr.q[:, ch] - pred
        mag[:, ch] = 0 if ch == 0 else 1 + np.minimum(abs_sum, MAG_LEVELS - 2)
        abs_sum += np.abs(res[:, ch])
    return res, mag


def contexts(f: Fitted, rows: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Flat offset-table context ``(N, C)`` of every residual."""
    n_ctx, n_groups, _ = f.offsets.shape
    h = f.variant.history
    sctx = speech_context(rows, h, n_ctx > 3) if n_ctx > 1 else np.zeros(len(rows), np.int64)
    groups = f.groups if f.groups is not None else np.zeros(mag.shape[1], np.int64)
    return (sctx[:, None] * n_groups + groups[None, :]) * MAG_LEVELS + mag


def fit_offsets(f: Fitted, fr: Frames, rows: np.ndarray, span: int = 8) -> np.ndarray:
    """Offsets per context minimising the exact code length (k0 per packet chosen without offsets)."""
    res, mag = residuals(f, fr, rows)
    ctx = contexts(f, rows, mag)
    costs = _costs()
    thresholds = np.asarray(SCALE_THRESHOLDS_Q12, np.int64)
    cand = np.arange(-span, span + 1)
    total = np.zeros((f.offsets.size, len(cand)))
    sym = _symbol_index(res)
    for lo, hi in _packet_bounds(fr.packet):
        r = res[lo:hi]
        k0 = _best_initial_index(r, np.zeros_like(r))
        st = np.full(r.shape[1], INITIAL_STATE_Q12[k0], np.int64)
        for t in range(lo, hi):
            sc = np.searchsorted(thresholds, st, side="right")
            idx = np.clip(sc[:, None] + cand[None, :], 0, NUM_SCALES - 1)
            np.add.at(total, ctx[t], costs[idx, sym[t][:, None]])
            st = next_states(st, res[t])
    total += 1e-6 * np.abs(cand)[None, :]
    return cand[np.argmin(total, axis=1)].reshape(f.offsets.shape).astype(np.int64)


def _packet_bounds(packet: np.ndarray) -> list[tuple[int, int]]:
    if len(packet) == 0:
        return []
    cuts = np.flatnonzero(np.diff(packet)) + 1
    lo = np.concatenate([[0], cuts])
    hi = np.concatenate([cuts, [len(packet)]])
    return list(zip(lo.tolist(), hi.tolist()))


def variant_bits(f: Fitted, clips: Sequence, intra: bool = True) -> tuple[int, int]:
    """Real rANS bits and frames of the clips' packets coded with the fitted variant."""
    fr = packet_frames(clips, intra)
    rows = audio_lags(clips, fr, f.variant.history, f.variant.lookahead)
    res, mag = residuals(f, fr, rows)
    offs = f.offsets.reshape(-1)[contexts(f, rows, mag)]
    by_packet = dict(zip(fr.packet[[lo for lo, _ in _packet_bounds(fr.packet)]].tolist(), _packet_bounds(fr.packet)))
    bits = frames = 0
    n_packet = 0
    for clip in clips:
        for first in range(0, clip.num_frames, PACKET):
            q = clip.q[first:first + PACKET].astype(np.int64)
            out: list[tuple[int, ModelKey]] = []
            if intra or first == 0:
                _intra_frame_symbols(out, q[0])
            if n_packet in by_packet:
                lo, hi = by_packet[n_packet]
                k0 = _best_initial_index(res[lo:hi], offs[lo:hi])
                out.append((k0, _SIDE_KEY))
                states = [initial_state(k0)] * q.shape[1]
                for row, orow in zip(res[lo:hi].tolist(), offs[lo:hi].tolist()):
                    for ch, (r, o) in enumerate(zip(row, orow)):
                        j = min(NUM_SCALES - 1, max(0, scale_index(states[ch]) + o))
                        _append_residual(out, r, _LAPLACE_KEYS[j])
                        states[ch] = update_state(states[ch], r)
            bits += 8 * len(encode_symbols(out))
            frames += len(q)
            n_packet += 1
    return bits, frames


def plain_bits(clips: Sequence, intra: bool = True) -> tuple[int, int]:
    """Bits and frames of the existing coder (``encode_motion``) on the same packets."""
    bits = frames = 0
    for clip in clips:
        for first in range(0, clip.num_frames, PACKET):
            q = clip.q[first:first + PACKET]
            prev = None if (intra or first == 0) else clip.q[first - 1]
            bits += 8 * len(encode_motion(q, prev))
            frames += len(q)
    return bits, frames


def from_predictor(p: SpeechMotionPredictor) -> Fitted:
    """A format 1.1 predictor as a :class:`Fitted` (same integer tables, same bits)."""
    v = Variant("format 1.1", history=p.history)
    return Fitted(v, bias=p.bias, w_delta=p.w_delta, tables={"energy": p.energy, "voiced": p.voiced},
                  cross=p.cross, offsets=p.index_offset.reshape(3, 1, MAG_LEVELS).copy(), groups=None)


def to_predictor(f: Fitted) -> SpeechMotionPredictor:
    """The format 1.1 predictor of a variant that format 1.1 can carry (energy + voiced, causal, all channels).

    Raises:
        ConfigError: the variant needs more than format 1.1 has.
    """
    v = f.variant
    if v.lookahead or v.anchor or v.denergy or v.vq_classes or v.offsets_ctx == "onset" or v.speech_channels is not None:
        raise ConfigError(f"variant {v.name!r} does not fit format 1.1")
    c = f.bias.shape[0]
    energy = f.tables.get("energy", np.zeros((v.history + 1, ENERGY_UNKNOWN + 1, c), np.int64))
    voiced = f.tables.get("voiced", np.zeros((v.history + 1, VOICED_UNKNOWN + 1, c), np.int64))
    offsets = np.repeat(f.offsets[:, 0], 3, axis=0) if f.offsets.shape[0] == 1 else f.offsets[:, 0]
    return SpeechMotionPredictor.create(c, v.history, SHIFT, bias=f.bias, w_delta=f.w_delta, energy=energy,
                                        voiced=voiced, cross=f.cross, index_offset=offsets)


# ---------------------------------------------------------------------- CLI
DEFAULT_VARIANTS: tuple[Variant, ...] = (
    Variant("1.1 refit (energy+voiced, H=2)"),
    Variant("H=8", history=8),
    Variant("H=8 + denergy", history=8, denergy=True),
    Variant("H=8 + vq16", history=8, vq_classes=16, lam=300.0),
    Variant("H=4 + look-ahead 4", history=4, lookahead=4),
    Variant("H=4 + look-ahead 4 + denergy + vq16", history=4, lookahead=4, denergy=True, vq_classes=16, lam=300.0),
    Variant("H=2 + onset offsets", offsets_ctx="onset"),
    Variant("H=2 + onset offsets per channel", offsets_ctx="onset", channel_offsets=True),
    Variant("H=8 + vq16, lam 3000", history=8, vq_classes=16, lam=3000.0),
    Variant("anchor + H=8 + vq16 + onset offsets per channel", history=8, vq_classes=16, anchor=True,
            offsets_ctx="onset", channel_offsets=True, lam=1000.0),
    Variant("anchor + H=4 + look-ahead 4 + denergy + onset offsets per channel", history=4, lookahead=4,
            denergy=True, anchor=True, offsets_ctx="onset", channel_offsets=True, lam=1000.0),
    Variant("H=8 + vq16, mouth channels only", history=8, vq_classes=16, lam=300.0, speech_channels=MOUTH_CHANNELS),
    Variant("H=4 + look-ahead 4 + denergy, mouth channels only + onset offsets per channel", history=4,
            lookahead=4, denergy=True, speech_channels=MOUTH_CHANNELS, offsets_ctx="onset", channel_offsets=True),
)


def _pct(a: float, b: float) -> str:
    return f"{100 * (a / b - 1):+.1f} %"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line (see the module doc)."""
    from pathlib import Path

    from avfc.train.avcc_data import load_clips

    ap = argparse.ArgumentParser(prog="python -m avfc.train.avcc_motion_v2", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--train", nargs="+", default=["av", "av2"])
    ap.add_argument("--eval", default="av-eval", help="folder measured ('dev': the people-disjoint dev split)")
    ap.add_argument("--model", default="mrdac-cpu-v2", help="zoo model whose keypoint detector gives the motion")
    ap.add_argument("--precision", type=int, default=5)
    ap.add_argument("--hysteresis", type=float, default=0.3)
    ap.add_argument("--bundle", default="avcc-mrdac-cpu-v2", help="shipped AVCC bundle measured as 'today'")
    ap.add_argument("--first-intra", action="store_true", help="only each clip's first packet INTRA")
    ap.add_argument("--searched", type=Path, default=None,
                    help="folder of <clip>.npy decoded motion (T, C) replacing the measured clips' keypoints")
    args = ap.parse_args(argv)
    def load(folders: list[str]) -> list:
        return load_clips([args.data / f for f in folders], args.model, precision=args.precision,
                          hysteresis=args.hysteresis)

    clips = load(args.train)
    if args.eval == "dev":
        train, evals = split_people(clips)
    else:
        train, evals = clips, load([args.eval])
    if args.searched is not None:
        evals = [replace(c, q=np.load(args.searched / f"{c.name}.npy").astype(np.int32)) for c in evals
                 if (args.searched / f"{c.name}.npy").is_file()]
    intra = not args.first_intra
    b0, n = plain_bits(evals, intra)
    print(f"{len(train)} training clips ({sum(c.num_frames for c in train)} frames), {len(evals)} measured "
          f"({n} frames), {'every' if intra else 'first'} packet INTRA\n")
    print("| predictor | bits/frame | vs plain | speech terms zeroed | refit without speech | with speech vs without |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| plain coder (`encode_motion`) | {b0 / n:.2f} | - | - | - | - |")
    if args.bundle:
        from avfc.avcc.zoo import load_avcc

        today = from_predictor(load_avcc(args.bundle).motion)
        b1 = variant_bits(today, evals, intra)[0]
        bz = variant_bits(today.zeroed(), evals, intra)[0]
        print(f"| {args.bundle} (av/ only) | {b1 / n:.2f} | {_pct(b1, b0)} | {bz / n:.2f} | - | {_pct(b1, bz)} (vs zeroed) |")
    for v in DEFAULT_VARIANTS:
        f = fit_variant(v, train, intra)
        b1 = variant_bits(f, evals, intra)[0]
        bz = variant_bits(f.zeroed(), evals, intra)[0]
        ba = variant_bits(fit_variant(v.ablation(), train, intra), evals, intra)[0]
        print(f"| {v.name} | {b1 / n:.2f} | {_pct(b1, b0)} | {bz / n:.2f} | {ba / n:.2f} | {_pct(b1, ba)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
