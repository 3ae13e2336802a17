"""Unit loss: what losing 1 % and 5 % of a live stream's units does to what the receiver shows and plays.

A live sender that carries every unit as its own datagram (examples/live_webrtc.py: a WebRTC data channel
with no retransmission) loses whole units. This codes each clip once as a live stream (one-pass rate
control at ``--kbps``, a REFRESH every ``--refresh-interval`` s, packets of ``--packet`` s), then drops
units at random, each with probability p (``--losses``; the preamble and sequence header are never
dropped: a receiver that lost them would join at the next REFRESH), with fixed seeds (``--seeds``), and
decodes what is left with the decoder's concealment (lost motion: the last frame held; lost Codec2
audio: the last frame repeated, up to 1 s; a lost key frame: the frames drawn from the references left).

Scored against the lossless decode of the same stream (so only what the loss changed counts):

* video PSNR (RGB, 8-bit; the clip's mean squared error over every frame, pooled over the seeds), and
  LPIPS-Alex on every ``--lpips-stride``-th frame with ``--weights`` (the metric weights; without them
  no LPIPS); frames the loss changed, as a share of all;
* the same two against the source frames, lossless and lossy, for scale;
* audio SNR of the lossy decode against the lossless decode (energy pooled over the seeds), on the
  waveform and on STFT magnitudes (20-ms windows, 10-ms hop). Codec2 700C's decoder draws the phases of
  unvoiced harmonics from a process-global random generator, so two lossless decodes differ: the SNR
  of a second lossless decode against the first is the floor of each (row "0"); the magnitude SNR
  hardly sees the phases.

Each clip counts once in the means. Clips are read at 25 fps, cut to ``--frames`` and cropped to
256x256 as ``avfc bench`` does (``avfc.api.prepare``), with their speech at 16 kHz.

Run (measurement only, ``/work/shared`` read only)::

    python benchmarks/loss.py --data ../shared/data/av-eval --clips hdtf_WDA_AOC_000,lrs2_00019 \
        --weights ../shared/weights --out loss.md

``--smoke``: a check that the script runs, in seconds, on no data: one synthetic clip of 40 frames, the
``tiny-test`` model at 64x64, a REFRESH every 0.4 s, losses 10 % and 30 %, two seeds, no LPIPS; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

import avfc
from avfc import bitstream as bs
from avfc.api import prepare
from avfc.config import EncoderConfig
from avfc.media import read_media
from avfc.media.synthetic import write_clip

FPS = 25
SAMPLE_RATE = 16000
DEFAULT_CLIPS = "hdtf_WDA_AOC_000,hdtf_WDA_KatieHill_000,lrs2_00001,lrs2_00019"
SMOKE = {"model": "tiny-test", "size": 64, "frames": 40, "refresh_interval": 0.4, "losses": "0.1,0.3",
         "seeds": 2, "packet": 0.2}


def drop_units(data: bytes, p: float, rng: np.random.Generator) -> tuple[bytes, int, int]:
    """The stream with each unit after the sequence header dropped with probability ``p``: the bytes left,
    the units dropped and the units that could be."""
    units = bs.parse_stream(data).units  # every intact unit after the header
    start = units[0].offset if units else len(data)  # the preamble and the header: never dropped
    lost = rng.random(len(units)) < p
    kept = [data[u.offset:u.offset + u.size] for u, gone in zip(units, lost) if not gone]
    return data[:start] + b"".join(kept), int(lost.sum()), len(units)


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))


def _psnr(mse: float) -> float:
    return math.inf if mse <= 0 else 10 * math.log10(255.0 ** 2 / mse)


def _db(signal: float, noise: float) -> float:
    return math.inf if noise <= 0 else 10 * math.log10(signal / noise)


def _snr(ref: np.ndarray, err_energy: float) -> float:
    return math.inf if err_energy <= 0 else 10 * math.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err_energy)


def _magnitudes(pcm: np.ndarray, n: int = 320, hop: int = 160) -> np.ndarray:
    """STFT magnitudes (Hann window of ``n`` samples, ``hop``), frames x bins."""
    if len(pcm) < n:
        pcm = np.concatenate([pcm, np.zeros(n - len(pcm), np.float32)])
    idx = np.arange(0, len(pcm) - n + 1, hop)[:, None] + np.arange(n)[None, :]
    return np.abs(np.fft.rfft(pcm[idx].astype(np.float64) * np.hanning(n), axis=1))


def _fit(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames: frames past the end of a shorter decode (its END_OF_STREAM lost) show its last frame."""
    if len(frames) >= n:
        return frames[:n]
    return np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])


def _fit_audio(pcm: Optional[np.ndarray], n: int) -> np.ndarray:
    pcm = np.zeros(0, np.float32) if pcm is None else pcm
    return pcm[:n] if len(pcm) >= n else np.concatenate([pcm, np.zeros(n - len(pcm), np.float32)])


def load_clip(path: Path, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    media = read_media(path, fps=FPS, sample_rate=SAMPLE_RATE, max_frames=frames)
    video, _ = prepare(media, EncoderConfig.make(size=size, fps=FPS, max_frames=frames))
    n = int(round(len(video) / FPS * SAMPLE_RATE))
    pcm = _fit_audio(media.audio, n) if media.audio is not None else np.zeros(n, np.float32)
    return video, pcm


def measure_clip(name: str, video: np.ndarray, pcm: np.ndarray, args: argparse.Namespace,
                 lpips: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    cfg = dict(model=args.model, size=video.shape[1], fps=FPS, crop="none", bitrate_kbps=args.kbps,
               rate_control="stream", refresh_interval=args.refresh_interval,
               packet_frames=max(1, round(args.packet * FPS)), effort=args.effort, threads=args.threads)
    data = avfc.encode(video, pcm=pcm, **cfg).data
    clean = avfc.decode(data, conceal_motion=args.conceal_motion)
    assert clean.frames is not None
    n, n_audio = len(clean.frames), len(clean.audio) if clean.audio is not None else 0
    ref_audio = _fit_audio(clean.audio, n_audio)
    ref_mag = _magnitudes(ref_audio) if n_audio else None
    # a second lossless decode: the same frames; Codec2's audio differs by its random phases (the floor)
    again = avfc.decode(data, conceal_motion=args.conceal_motion)
    assert again.frames is not None and np.array_equal(again.frames, clean.frames)
    sampled = np.arange(args.lpips_stride // 2, n, args.lpips_stride)
    source = _fit(video, n)
    row: dict[str, Any] = {
        "clip": name, "frames": n, "kbps": len(data) * 8 / 1000 / (n / FPS),
        "units": len(bs.parse_stream(data).units), "bytes": len(data),
        "psnr_source_lossless": _psnr(float(_mse(clean.frames, source).mean())),
    }
    if lpips is not None:
        row["lpips_source_lossless"] = float(lpips.score(source[sampled], clean.frames[sampled]).mean)
    if n_audio:
        floor = _fit_audio(again.audio, n_audio)
        row["snr_floor"] = _snr(ref_audio, float(np.sum((floor.astype(np.float64) - ref_audio) ** 2)))
        row["mag_snr_floor"] = _db(float(np.sum(ref_mag ** 2)), float(np.sum((_magnitudes(floor) - ref_mag) ** 2)))
    for p in args.loss_list:
        key = f"{p:g}"
        mse, src_mse, lpips_vals, lpips_src = [], [], [], []
        lost = total = changed = 0
        err = mag_err = 0.0
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, int(round(p * 1e6))])
            lossy, dropped, units = drop_units(data, p, rng)
            lost, total = lost + dropped, total + units
            got = avfc.decode(lossy, conceal_motion=args.conceal_motion) if dropped else again
            assert got.frames is not None
            frames, audio = _fit(got.frames, n), _fit_audio(got.audio, n_audio)
            m = _mse(frames, clean.frames)
            mse.append(m)
            src_mse.append(float(_mse(frames, source).mean()))
            changed += int((m > 0).sum())
            if lpips is not None:
                lpips_vals.append(float(lpips.score(clean.frames[sampled], frames[sampled]).mean) if dropped else 0.0)
                lpips_src.append(float(lpips.score(source[sampled], frames[sampled]).mean) if dropped
                                 else row["lpips_source_lossless"])
            if n_audio:
                err += float(np.sum((audio.astype(np.float64) - ref_audio) ** 2))
                mag_err += float(np.sum((_magnitudes(audio) - ref_mag) ** 2))
        row[f"lost_{key}"] = lost / max(total, 1)
        row[f"changed_{key}"] = changed / (n * args.seeds)
        row[f"psnr_{key}"] = _psnr(float(np.concatenate(mse).mean()))
        row[f"psnr_source_{key}"] = _psnr(float(np.mean(src_mse)))
        if lpips is not None:
            row[f"lpips_{key}"] = float(np.mean(lpips_vals))
            row[f"lpips_source_{key}"] = float(np.mean(lpips_src))
        if n_audio:
            row[f"snr_{key}"] = _db(args.seeds * float(np.sum(ref_audio.astype(np.float64) ** 2)), err)
            row[f"mag_snr_{key}"] = _db(args.seeds * float(np.sum(ref_mag ** 2)), mag_err)
    row["seconds"] = time.monotonic() - t0
    return row


def _fmt(v: float, digits: int) -> str:
    return "inf" if math.isinf(v) else f"{v:.{digits}f}"


def report(rows: list[dict[str, Any]], args: argparse.Namespace, lpips: bool) -> str:
    lines = [f"Unit loss, {args.model} at {args.kbps:g} kbps (one pass), REFRESH every {args.refresh_interval:g} s, "
             f"packets of {args.packet:g} s, effort {args.effort}, conceal motion {args.conceal_motion}; "
             f"{len(rows)} clip(s), {args.seeds} seed(s) per loss rate; means over clips.", ""]
    head = "| loss | units lost | frames changed | PSNR vs lossless | " + (
        "LPIPS vs lossless | " if lpips else "") + "PSNR vs source | " + ("LPIPS vs source | " if lpips else "") + \
        "audio SNR vs lossless (waveform / STFT magnitude) |"
    lines += [head, "|" + " --- |" * (head.count("|") - 1)]
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731

    def mean_db(key: str) -> float:  # finite clips only; inf when every clip was unchanged
        vals = [r[key] for r in rows if not math.isinf(r[key])]
        return float(np.mean(vals)) if vals else math.inf

    audio = all("snr_floor" in r for r in rows)
    cells = ["0 (lossless)", "0", "0", "inf"] + (["0"] if lpips else []) + [
        _fmt(mean_db("psnr_source_lossless"), 2)] + ([f"{mean('lpips_source_lossless'):.4f}"] if lpips else []) + [
        f"{_fmt(mean_db('snr_floor'), 1)} / {_fmt(mean_db('mag_snr_floor'), 1)} (a second decode)" if audio else "-"]
    lines.append("| " + " | ".join(cells) + " |")
    for p in args.loss_list:
        k = f"{p:g}"
        cells = [f"{100 * p:g} %", f"{100 * mean('lost_' + k):.1f} %", f"{100 * mean('changed_' + k):.1f} %",
                 _fmt(mean_db("psnr_" + k), 2)] + ([f"{mean('lpips_' + k):.4f}"] if lpips else []) + [
            _fmt(mean_db("psnr_source_" + k), 2)] + ([f"{mean('lpips_source_' + k):.4f}"] if lpips else []) + [
            f"{_fmt(mean_db('snr_' + k), 1)} / {_fmt(mean_db('mag_snr_' + k), 1)}" if audio else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per clip: " + "; ".join(
        f"{r['clip']} {r['frames']} frames, {r['kbps']:.2f} kbps, {r['units']} units" for r in rows)]
    lines.append("(PSNR vs lossless: the clip's mean squared error pooled over the seeds, in dB, then the mean "
                 "over clips of the finite ones; inf: nothing changed; audio SNR likewise, in dB)")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/av-eval"))
    p.add_argument("--clips", default=DEFAULT_CLIPS, help="comma-separated clip names (no suffix) in --data")
    p.add_argument("--model", default="mrdac-cpu-v3")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--kbps", type=float, default=5.0)
    p.add_argument("--refresh-interval", type=float, default=2.0, help="seconds between REFRESH units")
    p.add_argument("--packet", type=float, default=0.48, help="seconds per motion/audio packet (the live example's)")
    p.add_argument("--effort", default="live", help="encoder effort (live: what a live sender uses)")
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--losses", default="0.01,0.05", help="unit loss probabilities")
    p.add_argument("--seeds", type=int, default=5, help="random drops per loss rate (seeds 0..N-1)")
    p.add_argument("--conceal-motion", default="hold", choices=["hold", "joint"])
    p.add_argument("--weights", type=Path, help="LPIPS weights folder (../shared/weights); none: no LPIPS")
    p.add_argument("--lpips-stride", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, help="also write the markdown table here")
    p.add_argument("--json", type=Path, help="write the per-clip rows here")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    tmp = None
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
        args.weights = None
        tmp = tempfile.TemporaryDirectory()
        write_clip(Path(tmp.name) / "synthetic.mp4", n=SMOKE["frames"], width=96, height=96)
        args.data, args.clips = Path(tmp.name), "synthetic"
    args.loss_list = [float(x) for x in args.losses.split(",") if x]
    lpips = None
    if args.weights is not None:
        from avfc.eval.perceptual import LPIPS

        lpips = LPIPS("alex", args.weights, "cpu")
    rows = []
    for name in [c for c in args.clips.split(",") if c]:
        path = args.data / f"{name}.mp4"
        video, pcm = load_clip(path, args.frames, args.size)
        row = measure_clip(name, video, pcm, args, lpips)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    text = report(rows, args, lpips is not None)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
