"""Drift: quality against distance from the nearest reference, at one total rate.

Codes every clip of ``--data`` (default ``/work/shared/data/av-eval``, read only) with the
shipped model in three reference structures, all at the same *total* rate (``--rate`` kbit/s
for the whole ``.avfc`` file, audio off so that every bit is video):

* ``single``: one key frame, at frame 0 (``key_interval=0, max_refs=1, first_key=0``);
* ``multi``: a key frame every 50 frames, up to 4 references (``key_interval=50, max_refs=4``);
* ``bidir``: bi-directional, a key frame every 50 frames coded ahead, 2 references
  (``key_interval=50, max_refs=2, reference_mode="bidirectional"``).

Reference lines:

* ``held still``: the do-nothing codec. The first frame intra coded with AV1 at the best quality
  within the same total bytes (``rate * duration``), repeated for the whole clip
  (:mod:`avfc.eval.anchors`); its distance is the frame index.
* ``<mode> keys held``: the same decoded stream with every frame replaced by its nearest
  reference key frame (what that mode's key frames give without any motion).

Test conditions are those of ``avfc bench``: each clip is read at 25 fps, cut to ``--frames``
frames and cropped by :func:`avfc.api.prepare` to 256x256; those frames are what every line codes
and is scored against (avfc gets them with ``crop="none"``). Key frames are read from the stream
itself. The *distance* of frame ``t`` is the distance to the nearest key frame the decoder may draw
it from: the last key frame at or before ``t`` in low-delay modes, the nearer of the key frames
around ``t`` in bi-directional mode; key frames have distance 0.

Metrics: PSNR (RGB) on every frame; LPIPS-Alex on every ``--lpips-stride``-th frame (frames
``stride // 2, stride // 2 + stride, ...``, the same frames for every line) with the metric weights of
``--weights``. Distance bins pool the frames of all clips (a frame counts once); the per-line means
average the clips' own means (each clip counts once). The markdown tables go to stdout and to ``--out``.

Streams are written in the encoder's default format (2.0 since avfc 0.2); key frames are read in the
layout of the stream's own major version.

Run: ``python benchmarks/drift.py --out /tmp/drift.md [--data DIR] [--rate 5] [--frames 125]``
``--smoke``: a check that the script runs, in seconds, on no data: one synthetic clip of 20 frames written
to a temporary folder, the ``tiny-test`` model at 64x64, key frames every 8 frames, no LPIPS (``--out``
may then be omitted); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

import avfc
from avfc import bitstream as bs
from avfc.api import prepare
from avfc.config import EncoderConfig
from avfc.errors import AvfcError, ConfigError
from avfc.eval import anchors
from avfc.eval.metrics import psnr
from avfc.eval.report import cpu_model
from avfc.media import Media, read_media
from avfc.media.synthetic import write_clip

KEY_INTERVAL = 50  # of the modes with several key frames
MODES: dict[str, dict[str, object]] = {
    "single": {"key_interval": 0, "max_refs": 1, "first_key": 0},  # at frame 0 (the search efforts would place it)
    "multi": {"key_interval": KEY_INTERVAL, "max_refs": 4},
    "bidir": {"key_interval": KEY_INTERVAL, "max_refs": 2, "reference_mode": "bidirectional"},
}
#: distance bins, inclusive; None: no upper end
BINS: tuple[tuple[int, Optional[int]], ...] = ((0, 0), (1, 10), (11, 25), (26, 50), (51, 100), (101, None))
HELD = "held still"
FPS = 25
SIZE = 256
#: what --smoke changes
SMOKE = {"frames": 20, "size": 64, "model": "tiny-test", "key_interval": 8, "rate": 5.0, "threads": 1}


@dataclass
class Line:
    """Per-frame scores of one line (a mode, or a reference line) on one clip."""

    distance: np.ndarray  # (T,) int
    psnr: np.ndarray  # (T,) dB
    lpips: np.ndarray  # (T,) NaN where not sampled or not measured
    kbps: float = math.nan
    keys: int = 0
    key_qps: list[int] = field(default_factory=list)
    motion_kbps: float = math.nan


def nearest_reference(count: int, keys: list[int], bidirectional: bool) -> tuple[np.ndarray, np.ndarray]:
    """For every frame the nearest key frame it may be drawn from, and the distance to it.

    Low delay: the last key frame at or before the frame. Bi-directional: the nearer of the
    last key frame at or before and the first one after (ties go to the earlier one).

    Raises:
        ConfigError: no key frame at or before frame 0.
    """
    k = np.array(sorted(keys), dtype=np.int64)
    if k.size == 0 or k[0] > 0:
        raise ConfigError(f"the stream must start with a key frame, key frames: {list(k)}")
    t = np.arange(count)
    prev = k[np.searchsorted(k, t, side="right") - 1]
    near = prev.copy()
    if bidirectional:
        j = np.searchsorted(k, t, side="left")
        has_next = j < k.size
        nxt = np.where(has_next, k[np.minimum(j, k.size - 1)], -1)
        use_next = has_next & (nxt - t < t - prev)
        near[use_next] = nxt[use_next]
    return near, np.abs(t - near)


def key_indices(data: bytes) -> list[int]:
    """Frame indices of the KEY_FRAME units of an .avfc stream."""
    parsed = bs.parse_stream(data)
    major = parsed.version[0]  # 2.0 by default since avfc 0.2: its key frames do not parse as 1.x
    return [int(bs.decode_payload(u, major).frame_index) for u in parsed.units if u.type == bs.UnitType.KEY_FRAME]


class Scorer:
    """PSNR on every frame, LPIPS-Alex on a fixed sample of frames (when its weights exist)."""

    def __init__(self, weights: Path, stride: int) -> None:
        self.stride = stride
        self.lpips = None
        self.why_no_lpips = ""
        try:
            from avfc.eval.perceptual import LPIPS

            self.lpips = LPIPS("alex", weights_dir=weights)
        except ConfigError as exc:
            self.why_no_lpips = str(exc)

    def sample(self, count: int) -> np.ndarray:
        """Frame indices scored with LPIPS."""
        return np.arange(self.stride // 2, count, self.stride)

    def score(self, ref: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame PSNR, and per-frame LPIPS (NaN off the sample)."""
        p = psnr(ref, dist).per_frame
        lp = np.full(len(ref), np.nan)
        idx = self.sample(len(ref))
        if self.lpips is not None and idx.size:
            lp[idx] = self.lpips.score(ref[idx], np.ascontiguousarray(dist[idx])).per_frame
        return p, lp


def run_clip(path: Path, args: argparse.Namespace, scorer: Scorer, notes: list[str]) -> dict[str, Line]:
    """Every line of one clip."""
    size = args.size
    media = read_media(path, fps=FPS, max_frames=args.frames)
    ref, _ = prepare(media, EncoderConfig.make(size=size, fps=FPS, max_frames=args.frames, audio="none",
                                               model=args.model))
    ref = np.ascontiguousarray(ref)
    n = len(ref)
    duration = n / FPS
    src = Media.from_arrays(ref, FPS)
    lines: dict[str, Line] = {}

    budget = int(args.rate * 1000 / 8 * duration)
    payload, qp, fits = anchors.encode_held_key_frame(ref[0], budget)
    held = anchors.decode_held_key_frame(payload, n, size, size)
    p, lp = scorer.score(ref, held)
    lines[HELD] = Line(np.arange(n), p, lp, kbps=len(payload) * 8 / 1000 / duration, keys=1, key_qps=[qp])
    if not fits:
        notes.append(f"{path.stem}: held still: the key frame does not fit {budget} bytes even at QP {qp}")

    for mode, overrides in modes(args.key_interval).items():
        res = avfc.encode(src, bitrate_kbps=args.rate, audio="none", size=size, fps=FPS, crop="none",
                          model=args.model, **overrides)
        dec = avfc.decode(res.data)
        notes += [f"{path.stem}: {mode}: {w}" for w in res.warnings]
        notes += [f"{path.stem}: {mode}: decoder: {i.message}" for i in dec.issues]
        if dec.frames.shape != ref.shape:
            raise AvfcError(f"{path.stem}: {mode} decoded {dec.frames.shape}, expected {ref.shape}")
        keys = key_indices(res.data)
        near, dist = nearest_reference(n, keys, overrides.get("reference_mode") == "bidirectional")
        p, lp = scorer.score(ref, dec.frames)
        motion = res.stats.bytes_by_type.get("motion", 0) * 8 / 1000 / duration
        lines[mode] = Line(dist, p, lp, kbps=res.kbps, keys=len(keys), key_qps=list(res.stats.key_qps),
                           motion_kbps=motion)
        p, lp = scorer.score(ref, dec.frames[near])
        lines[f"{mode} keys held"] = Line(dist, p, lp, kbps=res.kbps, keys=len(keys))
    return lines


def modes(key_interval: int) -> dict[str, dict[str, object]]:
    """MODES with ``key_interval`` frames between key frames where MODES has KEY_INTERVAL."""
    return {m: {k: (key_interval if k == "key_interval" and v == KEY_INTERVAL else v) for k, v in o.items()}
            for m, o in MODES.items()}


def line_order() -> list[str]:
    """Column order of the tables."""
    return [HELD] + [name for m in MODES for name in (m, f"{m} keys held")]


def _fmt(x: float, digits: int) -> str:
    return "-" if not np.isfinite(x) else f"{x:.{digits}f}"


def _bin_label(lo: int, hi: Optional[int]) -> str:
    if hi is None:
        return f"{lo}+"
    return "0 (key frames)" if hi == 0 else f"{lo}-{hi}"


def _binned(lines: list[Line], metric: str, lo: int, hi: Optional[int]) -> tuple[float, int]:
    """Mean of ``metric`` over the frames of ``lines`` whose distance is in ``lo..hi``, and their count."""
    values = []
    for ln in lines:
        d = ln.distance
        sel = (d >= lo) & (d <= (hi if hi is not None else d.max()))
        v = getattr(ln, metric)[sel]
        values.append(v[np.isfinite(v)])
    pooled = np.concatenate(values) if values else np.zeros(0)
    return (float(pooled.mean()) if pooled.size else math.nan), int(pooled.size)


def _column(results: dict[str, dict[str, Line]], line: str) -> list[Line]:
    return [lines[line] for lines in results.values()]


def _difference(results: dict[str, dict[str, Line]], a: str, b: str) -> list[Line]:
    """Per clip, line ``a`` minus line ``b`` frame by frame (both must have the same distances)."""
    out = []
    for lines in results.values():
        x, y = lines[a], lines[b]
        if not np.array_equal(x.distance, y.distance):
            raise ConfigError(f"{a!r} and {b!r} do not share their distances")
        out.append(Line(x.distance, x.psnr - y.psnr, x.lpips - y.lpips))
    return out


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _by_distance(results: dict[str, dict[str, Line]], scope: str) -> list[str]:
    """PSNR and LPIPS tables: distance bins x lines, frames of all ``results`` pooled per bin."""
    md = []
    for metric, title, digits in (("psnr", "PSNR (dB, higher is better)", 2),
                                  ("lpips", "LPIPS-Alex (lower is better)", 4)):
        rows = []
        for lo, hi in BINS:
            rows.append([_bin_label(lo, hi)] + [_fmt(_binned(_column(results, ln), metric, lo, hi)[0], digits)
                                                for ln in line_order()])
        md += [f"### {title} by distance{scope}", ""] + _table(["distance (frames)"] + line_order(), rows) + [""]
    return md


def report(results: dict[str, dict[str, Line]], args: argparse.Namespace, scorer: Scorer, notes: list[str],
           loads: tuple[tuple[float, ...], tuple[float, ...]], seconds: float) -> str:
    """The markdown report."""
    order = line_order()
    frames = sum(len(lines[HELD].psnr) for lines in results.values())
    md = [
        "## Drift: quality against distance from the nearest reference",
        "",
        f"- Clips: {len(results)} from `{args.data}` ({frames} frames, at most {args.frames} per clip: "
        + ", ".join(f"{c} {len(lines[HELD].psnr)}" for c, lines in results.items()) + ").",
        f"- Rate: `bitrate_kbps={args.rate:g}` for the whole file, `audio=\"none\"`; model "
        f"`{args.model}`, AV1 key frames, {args.size}x{args.size}, 25 fps, format "
        f"{EncoderConfig().format_major}.x. `held still`: one AV1 intra frame within "
        f"{args.rate:g} kbit/s x duration bytes, repeated.",
        "- Modes: " + "; ".join(f"`{m}`: " + ", ".join(f"{k}={v}" for k, v in o.items())
                                for m, o in modes(args.key_interval).items())
        + ". `<mode> keys held`: that stream's decoded key frames, each frame replaced by its nearest reference.",
        f"- PSNR (RGB) on every frame; LPIPS-Alex on every {args.lpips_stride}th frame (frames "
        f"{args.lpips_stride // 2}, {args.lpips_stride // 2 + args.lpips_stride}, ...)"
        + (f": **not measured**: {scorer.why_no_lpips}" if scorer.lpips is None else "") + ".",
        "- Distance: frames to the nearest key frame the decoder may use (low delay: the last one at or "
        "before; bi-directional: the nearer of the two around). Bins pool frames of all clips.",
        f"- Machine: {cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average {loads[0][0]:.2f} at the start, {loads[1][0]:.2f} "
        f"at the end; {seconds / 60:.1f} min.",
        "",
    ]
    md += _by_distance(results, "")
    long = {c: lines for c, lines in results.items() if len(lines[HELD].psnr) > BINS[-1][0]}
    if long and len(long) < len(results):
        md += _by_distance(long, f", only the {len(long)} clips of more than {BINS[-1][0]} frames "
                                 f"({', '.join(long)}): the same clips in every bin")
    count_rows = []
    for lo, hi in BINS:
        count_rows.append([_bin_label(lo, hi)] + [
            f"{_binned(_column(results, m), 'psnr', lo, hi)[1]} / {_binned(_column(results, m), 'lpips', lo, hi)[1]}"
            for m in [HELD, *MODES]])
    md += ["### Frames per bin (PSNR / LPIPS)", ""] + _table(["distance (frames)", HELD, *MODES], count_rows)
    md += ["", "Each `keys held` line has the same frames as its mode.", ""]
    pairs = [(m, f"{m} keys held") for m in MODES] + [("single", HELD)]
    gain_rows = []
    for lo, hi in BINS[1:]:
        cells = []
        for a, b in pairs:
            d = _difference(results, a, b)
            cells += [_fmt(_binned(d, "psnr", lo, hi)[0], 2), _fmt(_binned(d, "lpips", lo, hi)[0], 4)]
        gain_rows.append([_bin_label(lo, hi)] + cells)
    md += ["### What the motion adds, on the same frames (line minus line; PSNR dB up and LPIPS down are "
           "better)", ""]
    md += _table(["distance (frames)"] + [f"{a} - {b}: {k}" for a, b in pairs for k in ("PSNR", "LPIPS")],
                 gain_rows) + [""]

    mean_rows = []
    for ln in order:
        per_clip = [lines[ln] for lines in results.values()]
        lp = [np.nanmean(x.lpips) for x in per_clip if np.isfinite(x.lpips).any()]
        qps = [q for x in per_clip for q in x.key_qps]
        mean_rows.append([
            ln, _fmt(float(np.mean([x.kbps for x in per_clip])), 2),
            _fmt(float(np.mean([x.motion_kbps for x in per_clip])), 2) if ln in MODES else "-",
            _fmt(float(np.mean([x.keys for x in per_clip])), 2),
            _fmt(float(np.mean(qps)), 1) if qps else "-",
            _fmt(float(np.mean([x.psnr.mean() for x in per_clip])), 2),
            _fmt(float(np.mean(lp)) if lp else math.nan, 4),
        ])
    md += ["### Means per line (each clip counts once)", ""]
    md += _table(["line", "kbps total", "kbps motion", "key frames per clip", "mean key QP", "PSNR (dB)",
                  "LPIPS-Alex"], mean_rows)
    clip_rows = [[c] + [_fmt(float(lines[ln].psnr.mean()), 2) for ln in [HELD, *MODES]]
                 for c, lines in results.items()]
    md += ["", "### PSNR (dB) per clip", ""] + _table(["clip", HELD, *MODES], clip_rows)
    md += ["", "### Notes", ""] + ([f"- {n}" for n in notes] or ["- none: no warnings, no decoder issues."])
    return "\n".join(md) + "\n"


def write_csv(path: Path, results: dict[str, dict[str, Line]]) -> None:
    """Per-frame scores: clip, line, frame, distance, PSNR, LPIPS (empty where not measured)."""
    rows = ["clip,line,frame,distance,psnr,lpips_alex"]
    for clip, lines in results.items():
        for name, ln in lines.items():
            for t, (d, p, lp) in enumerate(zip(ln.distance, ln.psnr, ln.lpips)):
                rows.append(f"{clip},{name},{t},{d},{p:.4f},{'' if np.isnan(lp) else f'{lp:.5f}'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def main() -> int:
    """Run the drift measurement (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/av-eval"))
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here (required "
                                                                "unless --smoke)")
    parser.add_argument("--rate", type=float, default=5.0, help="total kbit/s of every line (default 5)")
    parser.add_argument("--frames", type=int, default=125, help="at most this many frames per clip")
    parser.add_argument("--clips", type=int, default=None, help="only the first N clips")
    parser.add_argument("--weights", type=Path, default=Path("/work/shared/weights"), help="LPIPS weights")
    parser.add_argument("--lpips-stride", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--csv", type=Path, default=None, help="also write per-frame scores here")
    parser.add_argument("--model", default=EncoderConfig().model, help="zoo model (default: the encoder's)")
    parser.add_argument("--size", type=int, default=SIZE, help="coded width = height (default 256)")
    parser.add_argument("--key-interval", type=int, default=KEY_INTERVAL,
                        help=f"frames between key frames of multi and bidir (default {KEY_INTERVAL})")
    parser.add_argument("--smoke", action="store_true",
                        help="check that the script runs: one synthetic 20-frame clip, tiny-test at 64x64, no "
                             "LPIPS, in seconds (the figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
        args.clips, args.weights = None, Path("/nonexistent/smoke-weights")  # never ../shared
        with tempfile.TemporaryDirectory() as tmp:
            args.data = Path(tmp)
            write_clip(args.data / "synthetic.mp4", n=args.frames, width=96, height=96, audio=False)
            return run(args)
    if args.out is None:
        parser.error("--out is required (unless --smoke)")
    if args.frames < 1 or args.lpips_stride < 1 or args.rate <= 0 or args.key_interval < 1:
        parser.error("--frames, --lpips-stride and --key-interval must be >= 1, --rate > 0")
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Measure every clip of ``args.data`` and write the report."""
    clips = sorted(p for p in args.data.glob("*") if p.suffix.lower() in (".mp4", ".mov", ".mkv")) \
        if args.data.is_dir() else []
    if not clips:
        print(f"no clips in {args.data}: nothing to measure")
        return 0
    clips = clips[: args.clips] if args.clips else clips
    torch.set_num_threads(args.threads)
    scorer = Scorer(args.weights, args.lpips_stride)
    load0, t0 = os.getloadavg(), time.perf_counter()
    results: dict[str, dict[str, Line]] = {}
    notes: list[str] = []
    for i, clip in enumerate(clips):
        print(f"[{i + 1}/{len(clips)}] {clip.name}", file=sys.stderr, flush=True)
        try:
            results[clip.stem] = run_clip(clip, args, scorer, notes)
        except AvfcError as exc:
            notes.append(f"{clip.stem}: skipped: {exc}")
    if not results:
        print("no clip could be measured:\n" + "\n".join(notes))
        return 1
    md = report(results, args, scorer, notes, (load0, os.getloadavg()), time.perf_counter() - t0)
    print(md)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
    if args.csv is not None:
        write_csv(args.csv, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
