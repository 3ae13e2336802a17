"""Measure the motion coder's rate on keypoint trajectories (not a test; run by hand).

    python tests/entropy/motion_rates.py             # synthetic trajectories (no data needed)
    python tests/entropy/motion_rates.py --real DIR  # also points tracked in DIR's videos

Synthetic trajectories: 10 keypoints x 2 in [-1, 1], a face that translates, rotates and
scales smoothly, three "mouth" points with extra local motion, talking/still activity,
detector jitter and occasional jumps; mean per-frame motion 0.5 %, 1 % and 2 % of the
image width. Real trajectories (``--real``): 10 corner points inside the Haar-detected face
of each video, tracked with pyramidal Lucas-Kanade, normalised to a crop of 1.5x the face
box. Prints bits per frame of ``encode_motion`` (exact sizes), the per-packet overhead
over the ideal code length, and the adaptation rules that were compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from avfc.entropy import encode_motion, laplace_table, quantize
from avfc.entropy import tables as tb


def synthetic_trajectories(rng: np.random.Generator, frames: int, motion: float,
                           keypoints: int = 10) -> np.ndarray:
    """(frames, 2*keypoints) smooth keypoint tracks; mean |per-frame step| = motion * 2 units."""
    base = rng.uniform(-0.5, 0.5, (keypoints, 2))
    mouth = rng.choice(keypoints, 3, replace=False)
    activity = np.clip(np.exp(np.cumsum(rng.normal(0, 0.1, frames))), 0, None)
    activity = np.clip(activity / activity.mean(), 0.2, 3.0)

    def smooth(shape: tuple[int, ...], a: float) -> np.ndarray:
        v, p = np.zeros(shape), np.zeros(shape)
        out = np.zeros((frames,) + shape)
        for t in range(frames):
            v = a * v + rng.normal(0, 1, shape) * activity[t]
            p = 0.95 * p + v
            out[t] = p
        return out

    trans, ang, scl = smooth((2,), 0.8), smooth((), 0.8) * 0.3, smooth((), 0.8) * 0.1
    local = smooth((keypoints, 2), 0.6) * 0.2
    local[:, mouth] *= 3.0
    c, s = np.cos(ang), np.sin(ang)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    disp = np.einsum("tij,kj->tki", rot, base) - base + scl[:, None, None] * base
    disp = disp + trans[:, None, :] + local
    disp *= motion * 2 / np.abs(np.diff(disp, axis=0)).mean()
    jumps = np.zeros((frames, 2))
    for t in np.flatnonzero(rng.random(frames) < 0.01):
        jumps[t:t + int(rng.integers(5, 50))] += rng.normal(0, 0.08, 2)
    x = base[None] + disp + jumps[:, None, :] + rng.normal(0, 0.002, (frames, keypoints, 2))
    return np.clip(x.reshape(frames, 2 * keypoints), -1, 1)


def tracked_trajectories(path: Path, frames: int = 250, keypoints: int = 10) -> np.ndarray | None:
    """Lucas-Kanade tracks of corner points inside the first detected face (or None)."""
    import av
    import cv2

    with av.open(str(path)) as container:
        grays = [f.to_ndarray(format="gray") for _, f in zip(range(frames), container.decode(video=0))]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(grays[0], 1.1, 5, minSize=(40, 40))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    mask = np.zeros_like(grays[0])
    mask[y:y + h, x:x + w] = 255
    pts = cv2.goodFeaturesToTrack(grays[0], keypoints, 0.01, w / 8, mask=mask)
    if pts is None or len(pts) < keypoints:
        return None
    track = [pts.reshape(-1, 2).copy()]
    for prev, cur in zip(grays, grays[1:]):
        nxt, ok, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(21, 21), maxLevel=3)
        nxt[ok[:, 0] == 0] = pts[ok[:, 0] == 0]
        pts = nxt
        track.append(pts.reshape(-1, 2).copy())
    a = np.array(track)
    half = 0.75 * max(w, h)
    a = np.stack([(a[..., 0] - x - w / 2) / half, (a[..., 1] - y - h / 2) / half], -1)
    return np.clip(a.reshape(len(a), -1), -1, 1)


def coded_bits(q: np.ndarray, packet: int) -> tuple[int, int]:
    """(bits, packets) of coding q with one INTRA packet then predicted packets."""
    bits, prev, count = 0, None, 0
    for start in range(0, len(q), packet):
        bits += 8 * len(encode_motion(q[start:start + packet], prev))
        prev, count = q[min(start + packet, len(q)) - 1], count + 1
    return bits, count


# --- the adaptation rules compared (ideal code lengths, same tables) ---------------------

_COST = -np.log2(np.stack([laplace_table(j) for j in range(tb.NUM_SCALES)]) / tb.TABLE_TOTAL)
_COST[:, tb.ESCAPE] += 17
_THRESH = np.array(tb.SCALE_THRESHOLDS_Q12)


def _symbols(r: np.ndarray) -> np.ndarray:
    return np.where(np.abs(r) <= tb.RESIDUAL_MAX, r + tb.RESIDUAL_OFFSET, tb.ESCAPE)


def _backward(res: np.ndarray, inits: np.ndarray, shift: int) -> np.ndarray:
    s = np.repeat(inits[:, None], res.shape[1], axis=1).astype(np.int64)
    total = np.zeros(len(inits))
    for row in res:
        total += _COST[np.searchsorted(_THRESH, s, side="right"), _symbols(row)[None]].sum(1)
        s = s + (((np.minimum(np.abs(row), 256) << 12)[None] - s) >> shift)
    return total


def rule_bits(q: np.ndarray, packet: int, rule: str) -> float:
    """Ideal bits of the residual frames under an adaptation rule (+ its side info)."""
    bits, prev = 0.0, None
    for start in range(0, len(q), packet):
        p = q[start:start + packet]
        res = np.diff(p, axis=0) if prev is None else np.diff(np.vstack([prev[None], p]), axis=0)
        prev = p[-1]
        if len(res) == 0:
            continue
        if rule == "static":  # one forward table index per packet, no adaptation
            bits += _COST[:, _symbols(res.ravel())].sum(1).min() + 5
        elif rule.startswith("fixed"):  # backward, zero side info, fixed initial state
            bits += _backward(res, np.array([tb.initial_state(16)]), int(rule[-1]))[0]
        else:  # "fwd<shift>": backward, forward initial index (5 bits): the chosen rule
            bits += _backward(res, np.array(tb.INITIAL_STATE_Q12), int(rule[-1])).min() + 5
    return bits


def report(name: str, tracks: list[np.ndarray]) -> None:
    frames = sum(len(t) for t in tracks)
    print(f"\n{name}: {len(tracks)} sequences, {frames} frames")
    print("precision packet bits/frame  bps@25fps  overhead/packet(bits)")
    for precision in (6, 7, 8):
        qs = [quantize(t, precision).astype(np.int64) for t in tracks]
        for packet in (10, 25, 50):
            bits = packets = 0
            ideal = 0.0
            for q in qs:
                b, n = coded_bits(q, packet)
                bits, packets = bits + b, packets + n
                ideal += rule_bits(q, packet, "fwd3")
            intra = sum(_COST[:, _symbols(q[0])].sum(1).min() + 5 for q in qs)
            overhead = (bits - ideal - intra) / packets
            print(f"{precision:9d} {packet:6d} {bits / frames:11.1f} {bits / frames * 25:10.0f}"
                  f" {overhead:10.1f}")
    print("adaptation rules, ideal bits/frame of residual frames (packet 25):")
    for precision in (6, 7, 8):
        qs = [quantize(t, precision).astype(np.int64) for t in tracks]
        row = {r: sum(rule_bits(q, 25, r) for q in qs) / frames
               for r in ("static", "fixed2", "fixed3", "fwd2", "fwd3")}
        print(f"  precision {precision}: " + "  ".join(f"{k} {v:.1f}" for k, v in row.items()))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, help="folder of face videos to track (read only)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2024)
    for motion in (0.005, 0.01, 0.02):
        tracks = [synthetic_trajectories(rng, 250, motion) for _ in range(4)]
        report(f"synthetic, motion {motion:.1%} of the image per frame", tracks)
    if args.real is not None:
        videos = sorted(p for p in args.real.rglob("*") if p.suffix in (".mp4", ".mpg"))
        tracks = [t for t in (tracked_trajectories(v) for v in videos) if t is not None]
        report(f"tracked face points in {args.real}", tracks)


if __name__ == "__main__":
    main(sys.argv[1:])
