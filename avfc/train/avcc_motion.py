"""Train the speech-conditioned motion predictor and the lips-from-speech model (AVCC 2 and 3).

``python -m avfc.train.avcc_motion --model mrdac-cpu-v1 --out /tmp/avcc/avcc_motion.safetensors``

Both models are fitted in float64 by ridge regression (closed form, seconds on a CPU) on the
aligned clips of :mod:`avfc.train.avcc_data` (``/work/shared/data/av`` by default) and exported
once to fixed-point integer arrays; the coding path only ever uses those integers.

* Predictor: base term (last motion delta + per-lag energy / voicing embeddings) fitted to the
  frame-to-frame keypoint delta; in-frame cross-channel weights fitted to the base residuals of
  the earlier channels; the table-index offsets per (speech activity, in-frame magnitude)
  context chosen to minimise the exact code length on the training packets.
* Lips: per-lag energy / voicing / vq1-bucket embeddings fitted to the keypoints' offset from
  the key picture's keypoints with the common (head) motion of each axis removed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from avfc.avcc.lips import LipsFromSpeech, VQ_BUCKET_SHIFT, VQ_BUCKETS, lips_target
from avfc.avcc.motion_pred import (
    ENERGY_UNKNOWN,
    MAG_LEVELS,
    NUM_ACTIVITY,
    VOICED_UNKNOWN,
    SpeechMotionPredictor,
    residuals_and_contexts,
    audio_indexes,
    encode_predicted_motion,
)
from avfc.entropy import encode_motion
from avfc.entropy.motion import _costs, next_states, _symbol_index
from avfc.entropy.tables import INITIAL_STATE_Q12, NUM_SCALES, SCALE_THRESHOLDS_Q12
from avfc.errors import ConfigError

PACKET = 25
SHIFT = 12


# ---------------------------------------------------------------------- features
def audio_window(fields: np.ndarray, first: int, count: int, before: int, after: int = 0) -> np.ndarray:
    """Rows of frames ``first-before .. first+count+after-1`` of ``fields`` (-1 outside the clip)."""
    out = np.full((count + before + after, 4), -1, dtype=np.int64)
    lo, hi = first - before, first + count + after
    src_lo, src_hi = max(lo, 0), min(hi, len(fields))
    if src_hi > src_lo:
        out[src_lo - lo:src_hi - lo] = fields[src_lo:src_hi]
    return out


def _onehot(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(index), size))
    out[np.arange(len(index)), index] = 1.0
    return out


def audio_design(fields: np.ndarray, t_index: np.ndarray, lags: Sequence[int]) -> np.ndarray:
    """One-hot energy (17) and voicing (3) columns of audio frame ``t + lag`` for every lag."""
    cols = []
    for lag in lags:
        rows = np.stack([audio_window(fields, int(t) + lag, 1, 0)[0] for t in t_index])
        energy, voiced = audio_indexes(rows)
        cols += [_onehot(energy, ENERGY_UNKNOWN + 1), _onehot(voiced, VOICED_UNKNOWN + 1)]
    return np.concatenate(cols, axis=1)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    reg = lam * np.eye(x.shape[1])
    return np.linalg.solve(x.T @ x + reg, x.T @ y)


def _to_int(w: np.ndarray, shift: int = SHIFT) -> np.ndarray:
    return np.rint(np.asarray(w) * (1 << shift)).astype(np.int64)


# ---------------------------------------------------------------------- predictor
def _predictor_rows(clips: Sequence, history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design matrix pieces (last delta, audio one-hots) and target deltas of every frame t >= 1."""
    deltas, audio, target = [], [], []
    for clip in clips:
        q = clip.q.astype(np.float64)
        t = np.arange(1, len(q))
        prev_delta = np.vstack([np.zeros((1, q.shape[1])), np.diff(q, axis=0)])[t - 1]
        deltas.append(prev_delta)
        audio.append(audio_design(clip.fields, t, range(-history, 1)))
        target.append(q[t] - q[t - 1])
    return np.concatenate(deltas), np.concatenate(audio), np.concatenate(target)


def fit_predictor(clips: Sequence, history: int = 2, lam: float = 100.0, use_audio: bool = True,
                  use_cross: bool = True, use_offsets: bool = True) -> SpeechMotionPredictor:
    """Fit a :class:`SpeechMotionPredictor` to aligned clips (ablations via the ``use_*`` flags)."""
    if not clips:
        raise ConfigError("no training clips")
    c = clips[0].q.shape[1]
    d, a, y = _predictor_rows(clips, history)
    if not use_audio:
        a = np.zeros((len(y), 0))
    x = np.concatenate([np.ones((len(y), 1)), d, a], axis=1)
    w = _ridge(x, y, lam)
    e = y - x @ w  # base residuals
    cross = np.zeros((c, c))
    if use_cross:
        for ch in range(1, c):
            cross[ch, :ch] = _ridge(e[:, :ch], e[:, ch], lam)
    n_lag = history + 1
    per_lag = ENERGY_UNKNOWN + 1 + VOICED_UNKNOWN + 1
    energy = np.zeros((n_lag, ENERGY_UNKNOWN + 1, c))
    voiced = np.zeros((n_lag, VOICED_UNKNOWN + 1, c))
    if use_audio:
        aw = w[1 + c:].reshape(n_lag, per_lag, c)
        energy, voiced = aw[:, :ENERGY_UNKNOWN + 1], aw[:, ENERGY_UNKNOWN + 1:]
    pred = SpeechMotionPredictor.create(
        c, history, SHIFT, bias=_to_int(w[0]), w_delta=_to_int(w[1:1 + c].T),
        energy=_to_int(energy), voiced=_to_int(voiced), cross=_to_int(np.tril(cross, -1)))
    if use_offsets:
        pred = SpeechMotionPredictor.create(c, history, SHIFT, **{
            k.split(".", 1)[1]: v for k, v in pred.to_arrays().items()
            if k not in ("motion.meta", "motion.index_offset")},
            index_offset=fit_offsets(clips, pred))
    return pred


def _packets(clip, history: int):
    """``(first, q, audio rows, prev)`` of the clip's packets of :data:`PACKET` frames, all INTRA."""
    for first in range(0, clip.num_frames, PACKET):
        q = clip.q[first:first + PACKET]
        yield first, q, audio_window(clip.fields, first, len(q), history), None


def fit_offsets(clips: Sequence, pred: SpeechMotionPredictor, span: int = 8) -> np.ndarray:
    """Table-index offset per (activity, magnitude) context minimising the exact code length."""
    costs = _costs()
    thresholds = np.asarray(SCALE_THRESHOLDS_Q12, dtype=np.int64)
    cand = np.arange(-span, span + 1)
    total = np.zeros((NUM_ACTIVITY * MAG_LEVELS, len(cand)))
    for clip in clips:
        for _, q, rows, prev in _packets(clip, pred.history):
            if len(q) < 2:
                continue
            res, ctx = residuals_and_contexts(q.astype(np.int64), pred, rows, prev, 1)
            sym = _symbol_index(res)
            # the encoder picks k0 per packet; take the one best without offsets
            states0 = np.repeat(np.asarray(INITIAL_STATE_Q12, np.int64)[:, None], res.shape[1], axis=1)
            states = states0
            tot = np.zeros(NUM_SCALES)
            for t in range(len(res)):
                sc = np.searchsorted(thresholds, states, side="right")
                tot += costs[sc, sym[t][None, :]].sum(axis=1)
                states = next_states(states, res[t][None, :])
            best = int(np.argmin(tot))
            st = np.full(res.shape[1], INITIAL_STATE_Q12[best], np.int64)
            for t in range(len(res)):
                sc = np.searchsorted(thresholds, st, side="right")
                idx = np.clip(sc[:, None] + cand[None, :], 0, NUM_SCALES - 1)
                np.add.at(total, ctx[t], costs[idx, sym[t][:, None]])
                st = next_states(st, res[t])
    # ties (contexts never seen in training, e.g. unknown audio) go to the smallest |offset|
    total += 1e-6 * np.abs(cand)[None, :]
    return cand[np.argmin(total, axis=1)].reshape(NUM_ACTIVITY, MAG_LEVELS).astype(np.int64)


def motion_bits(clips: Sequence, pred: Optional[SpeechMotionPredictor], intra: bool = True) -> tuple[int, int]:
    """Total bits and frames of the clips' motion packets: ``pred`` None = the existing coder.

    ``intra``: every packet INTRA (the encoder's default ``intra_period=1``); else only the first.
    """
    bits = frames = 0
    history = pred.history if pred is not None else 0
    for clip in clips:
        last: Optional[np.ndarray] = None
        for first, q, rows, _ in _packets(clip, history):
            prev = None if intra or last is None else last
            if pred is None:
                data = encode_motion(q, None if prev is None else prev[0])
            else:
                data = encode_predicted_motion(q, pred, rows, prev)
            bits += 8 * len(data)
            frames += len(q)
            last = np.stack([clip.q[first + len(q) - 1], clip.q[max(first + len(q) - 2, 0)]])
    return bits, frames


# ---------------------------------------------------------------------- lips
def _lips_design(clip, history: int, lookahead: int) -> np.ndarray:
    t = np.arange(clip.num_frames)
    energy_voiced = audio_design(clip.fields, t, range(-history, lookahead + 1))
    vq = []
    for lag in range(-history, lookahead + 1):
        rows = np.stack([audio_window(clip.fields, int(i) + lag, 1, 0)[0] for i in t])
        b = np.where(rows[:, 0] < 0, VQ_BUCKETS, rows[:, 0] >> VQ_BUCKET_SHIFT)
        vq.append(_onehot(b, VQ_BUCKETS + 1))
    return np.concatenate([energy_voiced] + vq, axis=1)


def fit_lips(clips: Sequence, history: int = 3, lookahead: int = 2, lam: float = 1000.0) -> LipsFromSpeech:
    """Fit :class:`LipsFromSpeech` (ridge, then fixed point) to aligned clips."""
    if not clips:
        raise ConfigError("no training clips")
    c = clips[0].q.shape[1]
    x = np.concatenate([_lips_design(cl, history, lookahead) for cl in clips])
    y = np.concatenate([lips_target(cl.q, cl.ref_q).astype(np.float64) for cl in clips])
    x1 = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    w = _ridge(x1, y, lam)
    n_lag = history + lookahead + 1
    ev = w[1:1 + n_lag * (ENERGY_UNKNOWN + VOICED_UNKNOWN + 2)].reshape(n_lag, -1, c)
    vq = w[1 + n_lag * (ENERGY_UNKNOWN + VOICED_UNKNOWN + 2):].reshape(n_lag, VQ_BUCKETS + 1, c)
    return LipsFromSpeech.create(
        c, history, lookahead, SHIFT, bias=_to_int(w[0]),
        energy=_to_int(ev[:, :ENERGY_UNKNOWN + 1]), voiced=_to_int(ev[:, ENERGY_UNKNOWN + 1:]),
        vq=_to_int(vq))


# ---------------------------------------------------------------------- CLI
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: fit both models on the training clips and write one safetensors file."""
    from safetensors.numpy import save_file

    from avfc.train.avcc_data import load_clips

    ap = argparse.ArgumentParser(prog="python -m avfc.train.avcc_motion", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mrdac-cpu-v1", help="zoo model whose keypoints are coded")
    ap.add_argument("--out", required=True, type=Path, help="output .safetensors (integer arrays)")
    ap.add_argument("--data", nargs="+", default=["/work/shared/data/av"], help="training folders")
    ap.add_argument("--history", type=int, default=2, help="predictor: audio frames before the current one")
    ap.add_argument("--lam", type=float, default=100.0, help="predictor ridge strength")
    ap.add_argument("--precision", type=int, default=6, help="keypoint grid of the streams (kp_precision)")
    ap.add_argument("--hysteresis", type=float, default=0.0, help="the encoder's keypoint dead zone (kp_hysteresis)")
    args = ap.parse_args(argv)
    clips = load_clips(args.data, args.model, precision=args.precision, hysteresis=args.hysteresis)
    pred = fit_predictor(clips, history=args.history, lam=args.lam)
    lips = fit_lips(clips)
    arrays = {**pred.to_arrays(), **lips.to_arrays()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(args.out))
    base, n = motion_bits(clips, None)
    ours, _ = motion_bits(clips, pred)
    print(f"{len(clips)} clips, {n} frames; motion bits/frame on the training clips (in-sample): "
          f"existing {base / n:.2f}, speech-conditioned {ours / n:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
