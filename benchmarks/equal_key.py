"""The animation model alone: rendered frames against the same decoded key picture held still.

    python benchmarks/equal_key.py [--models mrdac-cpu-v2,mrdac-cpu-v3] [--qps 47,55] [--set av-eval]
                                   [--frames 100] [--stride 10] [--weights ../shared/weights]

For each clip (first ``--frames`` frames, face crop, 256x256) the first frame is coded with AV1 at
each QP and decoded; every ``--stride``-th frame from frame 5 on is rendered by each zoo model from
that one decoded picture (``make_reference``, as the decoder does) with the frame's transmitted
keypoints (the encoder's analysis: grid and dead zone of ``EncoderConfig`` defaults), and scored
against the source with PSNR, LPIPS-Alex and DISTS, next to the decoded picture held still. No bytes
are counted: this separates the model from the rate (``avfc bench`` measures whole files). All models
must share one keypoint detector (as v2 and v3 do), since the keypoints are analysed once.

JSON lines on stdout (one per clip, QP and model), then a markdown table of the means.

``--efforts fast,medium,...``: also the encoder's motion search (avfc.codec.search) at each effort
against that same decoded key picture, every frame of the clip coded in packets of 25 as the encoder
does (INTRA packets, every frame's keypoints, no hold), with the search's lambda for ``--kbps``. Its
rows are ``MODEL EFFORT``; the JSON lines add the motion's kbit/s (exact bytes of the motion coder),
the search's seconds per frame and the flicker (mean |frame-to-frame change of the render minus that
of the source|, 8-bit levels, on every frame).

``--variant NAME=KEY:VALUE,...`` (repeatable): also each effort with these :class:`MotionSearch`
settings (``mouth_weight``, ``temporal_weight``, ``perceptual_weight``, ``perceptual_size``,
``mouth_motion_weight``) or effort fields (``steps``, ``scale``, ``choice_scale``, ``knot_every``, ``lr``, ``perceptual_scale``;
``perceptual_weight`` needs ``--search-weights DIR``, whose ``--search-metric``
the search adds: avfc.eval.perceptual.search_term); rows ``MODEL EFFORT NAME``. Every row rendered on
every frame (the detector's and the searched ones) also reports ``mouth_motion_corr`` and
``mouth_open_corr`` (avfc.eval.mouth, every frame).

``--smoke``: the ``tiny-test`` model on one synthetic 12-frame clip written to a temporary folder, one
QP, no LPIPS/DISTS (their cells are NaN); a check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mrdac-cpu-v2,mrdac-cpu-v3", help="zoo models, comma separated")
    ap.add_argument("--qps", default="47,55", help="AV1 QPs of the key picture, comma separated")
    ap.add_argument("--set", default="av-eval", help="folder under ../shared/data, or a path")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="LPIPS/DISTS weights folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--efforts", default="", help="search efforts to add, comma separated (e.g. fast,medium)")
    ap.add_argument("--kbps", type=float, default=5.0, help="rate target whose lambda the search uses")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY:VALUE,...",
                    help="an effort with other MotionSearch settings (repeatable; see the docstring)")
    ap.add_argument("--search-weights", type=Path, default=None, metavar="DIR",
                    help="weights of the search's perceptual term (variants with perceptual_weight)")
    ap.add_argument("--search-metric", default="lpips-alex", help="the search's perceptual term")
    ap.add_argument("--clips", default="", help="only these clip stems, comma separated")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny-test on one synthetic clip, no LPIPS/DISTS: a check that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        from avfc.media.synthetic import write_clip

        args.models, args.qps, args.frames, args.stride, args.threads = "tiny-test", "55", 12, 4, 1
        args.efforts = "fast"
        args.weights = None
        with tempfile.TemporaryDirectory() as tmp:
            args.set = tmp
            write_clip(Path(tmp) / "synthetic.mp4", n=args.frames, width=96, height=96, audio=False)
            return run(ap, args)
    return run(ap, args)


class _NotMeasured:
    """Stands in for LPIPS / DISTS without their weights (--smoke): NaN."""

    class _Score:
        mean = float("nan")

    def score(self, a: np.ndarray, b: np.ndarray) -> "_NotMeasured._Score":
        return self._Score()


def run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Measure (see the module docstring)."""
    import torch

    torch.set_num_threads(args.threads)
    from avfc.api import prepare
    from avfc.codec.common import make_reference, tensor_to_frames
    from avfc.codec.encoder import analyse_clip
    from avfc.config import EncoderConfig
    from avfc.entropy import dequantize
    from avfc.eval.metrics import psnr
    from avfc.eval.perceptual import DISTS, LPIPS
    from avfc.media import decode_intra, encode_intra, read_media
    from avfc.models.zoo import keypoint_family, load_model
    from avfc.codec.search import EFFORTS, MotionSearch, lambda_for_rate
    from avfc.entropy import encode_motion

    efforts = [e for e in args.efforts.split(",") if e]
    variants = _variants(ap, args.variant)
    term = None
    if any("perceptual_weight" in v for v in variants.values()):
        if args.search_weights is None:
            ap.error("a variant with perceptual_weight needs --search-weights DIR")
        from avfc.eval.perceptual import search_term

        term = search_term(args.search_weights, args.search_metric)
    for e in efforts:
        if e not in EFFORTS or not EFFORTS[e].search:
            ap.error(f"--efforts takes searching efforts ({', '.join(k for k, v in EFFORTS.items() if v.search)})")

    names = args.models.split(",")
    if len({keypoint_family(n) for n in names}) != 1:
        ap.error("the models must share one keypoint detector (keypoints_of in the zoo)")
    qps = [int(q) for q in args.qps.split(",")]
    folder = Path(args.set) if Path(args.set).is_dir() else DATA / args.set
    clips = sorted(p for p in folder.iterdir() if p.suffix in (".mp4", ".mkv", ".mov", ".avi"))
    if args.clips:
        clips = [p for p in clips if p.stem in args.clips.split(",")]
    if not clips:
        ap.error(f"no clips in {folder}")
    models = {n: load_model(n, 256) for n in names}
    if args.weights is None:
        lpips = dists = _NotMeasured()
    else:
        lpips, dists = LPIPS("alex", args.weights), DISTS(args.weights)
    cfg = EncoderConfig.make(model=names[0], size=256, fps=25, max_frames=args.frames)
    device = torch.device("cpu")
    sums: dict[tuple[int, str], list[np.ndarray]] = {}
    for clip in clips:
        media = read_media(clip, fps=25, sample_rate=16000, max_frames=args.frames)
        frames, _ = prepare(media, cfg)
        q = analyse_clip(models[names[0]], frames, cfg.kp_precision, cfg.kp_hysteresis)
        idx = list(range(5, len(frames), args.stride)) or [len(frames) - 1]
        src = frames[idx]
        kp = torch.from_numpy(dequantize(q[idx], cfg.kp_precision)).float()
        for qp in qps:
            data = encode_intra(frames[0], "av1", qp)
            key = decode_intra(data, "av1", 256, 256)
            outs = {"held still": np.repeat(key[None], len(idx), 0)}
            extra: dict[str, dict] = {}
            for name, model in models.items():
                ref = make_reference(model, key, 0, cfg.kp_precision, device)
                with torch.no_grad():
                    outs[name] = tensor_to_frames(model.render([ref], kp, 5))
                if efforts:
                    extra[name] = _searched(model, ref, frames, q, None, cfg, args, encode_motion, tensor_to_frames)
                for effort in efforts:
                    search = MotionSearch(model, EFFORTS[effort], cfg.kp_precision, lambda_for_rate(args.kbps))
                    extra[f"{name} {effort}"] = _searched(model, ref, frames, q, search, cfg, args, encode_motion,
                                                          tensor_to_frames)
                    outs[f"{name} {effort}"] = extra[f"{name} {effort}"].pop("frames")[idx]
                    for vname, kw in variants.items():
                        kw = dict(kw, perceptual=term) if "perceptual_weight" in kw else dict(kw)
                        eff = replace(EFFORTS[effort], **{k: kw.pop(k) for k in _EFFORT_KEYS if k in kw})
                        search = MotionSearch(model, eff, cfg.kp_precision, lambda_for_rate(args.kbps), **kw)
                        row = f"{name} {effort} {vname}"
                        extra[row] = _searched(model, ref, frames, q, search, cfg, args, encode_motion,
                                               tensor_to_frames)
                        outs[row] = extra[row].pop("frames")[idx]
                if efforts:
                    extra[name].pop("frames")
            for name, out in outs.items():
                more = {k: v for k, v in extra.get(name, {}).items() if k != "frames"}
                row = np.array([psnr(src, out).mean, lpips.score(src, out).mean, dists.score(src, out).mean,
                                *(more.get(k, np.nan) for k in ("flicker", "mouth_motion_corr", "motion_kbps"))])
                sums.setdefault((qp, name), []).append(row)
                print(json.dumps({"clip": clip.stem, "qp": qp, "key_bytes": len(data), "model": name,
                                  "psnr": round(row[0], 3), "lpips_alex": round(row[1], 4),
                                  "dists": round(row[2], 4), **more}), flush=True)
    print(f"\nMeans over {len(clips)} clips, every {args.stride}th frame from frame 5:\n")
    print("| key picture | | PSNR | LPIPS-Alex | DISTS | flicker | mouth_motion_corr | motion kbit/s |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    for qp in qps:
        rows = [*names, *(f"{n} {e}{v}" for n in names for e in efforts for v in ["", *(f" {k}" for k in variants)])]
        for name in [*rows, "held still"]:
            m = np.mean(sums[(qp, name)], axis=0)
            print(f"| AV1 QP {qp} | {name} | {m[0]:.2f} | {m[1]:.4f} | {m[2]:.4f} | {m[3]:.2f} | {m[4]:.3f} | "
                  f"{m[5]:.2f} |")
    return 0


_VARIANT_KEYS = {"mouth_weight": float, "temporal_weight": float, "perceptual_weight": float,
                 "perceptual_size": int, "mouth_motion_weight": float,
                 "steps": int, "scale": int, "choice_scale": int, "knot_every": int, "lr": float,
                 "perceptual_scale": int}
#: variant keys that set the effort preset's fields (dataclasses.replace) rather than MotionSearch's
_EFFORT_KEYS = ("steps", "scale", "choice_scale", "knot_every", "lr", "perceptual_scale")


def _variants(ap: argparse.ArgumentParser, specs: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for spec in specs:
        name, _, body = spec.partition("=")
        kw = {}
        for item in filter(None, body.split(",")):
            key, _, value = item.partition(":")
            if key not in _VARIANT_KEYS:
                ap.error(f"--variant {spec!r}: {key!r} is not one of {', '.join(_VARIANT_KEYS)}")
            kw[key] = _VARIANT_KEYS[key](value)
        out[name] = kw
    return out


def _searched(model, ref, frames, q, search, cfg, args, encode_motion, tensor_to_frames) -> dict:
    """Frames 1.. of the clip in packets of 25 drawn from ``ref``: with the detector's keypoints
    (``search`` None) or searched; the motion's kbit/s, seconds per frame and flicker of every frame."""
    import time

    import torch

    from avfc.entropy import dequantize

    rows, nbytes, t0 = [], 0, time.perf_counter()
    for first in range(1, len(frames), 25):
        det = q[first:first + 25]
        if search is None:
            chosen = det
        else:
            chosen = search.choose(first, det, list(frames[first:first + 25]), [ref], bidirectional=False,
                                   keys=set(), stride=1, prev=None,
                                   bits=lambda r: 8 * len(encode_motion(r))).q
        rows.append(chosen)
        nbytes += len(encode_motion(chosen))
    seconds = time.perf_counter() - t0
    kp = dequantize(np.concatenate(rows), cfg.kp_precision) if rows else np.zeros((0, q.shape[1]), np.float32)
    with torch.no_grad():
        out = tensor_to_frames(model.draw([ref], torch.from_numpy(kp), list(range(1, 1 + len(kp)))))
    out = np.concatenate([tensor_to_frames(ref.frame), out])  # frame 0 shows the key picture
    src = frames.astype(np.float64)
    flicker = float(np.abs(np.diff(out.astype(np.float64), axis=0) - np.diff(src, axis=0)).mean())
    n = max(len(frames) - 1, 1)
    from avfc.eval.mouth import mouth_motion_error

    mouth = mouth_motion_error(frames, out)
    return {"frames": out, "motion_kbps": round(nbytes * 8 / 1000 / (len(frames) / 25), 3),
            "search_s_per_frame": round(seconds / n, 4) if search is not None else 0.0,
            "flicker": round(flicker, 3), "mouth_motion_corr": round(mouth.motion_corr, 3),
            "mouth_open_corr": round(mouth.opening_corr, 3)}


if __name__ == "__main__":
    sys.exit(main())
