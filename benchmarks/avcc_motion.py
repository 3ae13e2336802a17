"""Measure speech-conditioned motion coding and lips-from-speech (AVCC parts 2 and 3).

    python benchmarks/avcc_motion.py --weights /tmp/avcc/avcc_motion.safetensors [--render]

Markdown on stdout. Needs /work/shared/data (skips cleanly without it) and integer arrays from
``python -m avfc.train.avcc_motion`` (trained on ``av/`` only).

1. Motion bits per frame, packets of 25 frames, the existing coder (``encode_motion``) vs the
   speech-conditioned one (``encode_predicted_motion``), every packet INTRA (the encoder's
   default) and only the first INTRA; every packet is decoded again and checked identical, so
   the reconstruction is identical too. On ``av/`` (the training clips) the predictor is
   re-fitted leave-one-clip-out; a no-audio predictor shows what the speech itself adds.
2. Lips from speech: keypoint L1 on the grid against the true keypoints (all channels and
   the channels whose motion correlates most with the source's mouth opening), for the
   lips keypoints and for the key picture's keypoints held still.
3. ``--render``: mouth-motion metrics (:mod:`avfc.eval.mouth`) of frames rendered from
   (a) lips keypoints, (b) transmitted keypoints, (c) the decoded key frame held still,
   against the source face crop (at most ``--max-frames`` frames per clip).

``--smoke``: the shipped bundle ``avcc-mrdac-cpu-v1`` (its predictor and lips) instead of ``--weights``,
two synthetic 12-frame clips with speech-like audio as ``av/`` and one as ``av-eval/`` written to a
temporary folder, with ``--render`` on 4 frames; a check that the script runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avfc.avcc.lips import LipsFromSpeech
from avfc.avcc.motion_pred import SpeechMotionPredictor, decode_predicted_motion, encode_predicted_motion
from avfc.entropy import encode_motion

DATA = Path("/work/shared/data")
PACKET = 25


def motion_rows(clips, pred: SpeechMotionPredictor | None, intra: bool) -> tuple[int, int, bool]:
    """Bits, frames and whether every packet decoded back identical."""
    from avfc.train.avcc_motion import audio_window

    bits = frames = 0
    exact = True
    for clip in clips:
        last = None
        for first in range(0, clip.num_frames, PACKET):
            q = clip.q[first:first + PACKET]
            prev = None if intra or last is None else last
            if pred is None:
                data = encode_motion(q, None if prev is None else prev[0])
            else:
                audio = audio_window(clip.fields, first, len(q), pred.history)
                data = encode_predicted_motion(q, pred, audio, prev)
                out = decode_predicted_motion(data, len(q), q.shape[1], pred, audio, prev)
                exact &= bool(np.array_equal(out, q))
            bits += 8 * len(data)
            frames += len(q)
            last = np.stack([clip.q[first + len(q) - 1], clip.q[max(first + len(q) - 2, 0)]])
    return bits, frames, exact


class _Loco:
    """Leave-one-clip-out predictor per held-out clip (for the training set)."""

    def __init__(self, clips, **kw) -> None:
        from avfc.train.avcc_motion import fit_predictor

        self.preds = [fit_predictor(clips[:i] + clips[i + 1:], **kw) for i in range(len(clips))]


def motion_table(name: str, clips, pred, no_audio, loco: bool) -> list[str]:
    out = []
    for intra in (True, False):
        b0, n, _ = motion_rows(clips, None, intra)
        if loco:
            full = [motion_rows([c], p, intra) for c, p in zip(clips, pred.preds)]
            noau = [motion_rows([c], p, intra) for c, p in zip(clips, no_audio.preds)]
            b1, ok1 = sum(r[0] for r in full), all(r[2] for r in full)
            b2 = sum(r[0] for r in noau)
        else:
            b1, _, ok1 = motion_rows(clips, pred, intra)
            b2 = motion_rows(clips, no_audio, intra)[0]
        mode = "every packet INTRA" if intra else "first packet INTRA"
        out.append(f"| {name} | {mode} | {n} | {b0 / n:.2f} | {b1 / n:.2f} ({100 * (b1 / b0 - 1):+.1f}%) | "
                   f"{b2 / n:.2f} ({100 * (b2 / b0 - 1):+.1f}%) | {'yes' if ok1 else 'NO'} |")
    return out


def mouth_channels(train_clips, paths, k: int = 4) -> np.ndarray:
    """The ``k`` channels whose keypoint values correlate most (|r|) with the source mouth opening."""
    from avfc.eval.mouth import mouth_motion_error
    from avfc.train.avcc_data import load_frames

    xs, ys = [], []
    for clip, path in zip(train_clips, paths):
        frames = load_frames(path)
        opening = mouth_motion_error(frames, frames).source_opening
        xs.append(clip.q - clip.q.mean(axis=0))
        ys.append(opening - opening.mean())
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys)
    r = np.array([abs(np.corrcoef(x[:, c], y)[0, 1]) if x[:, c].std() > 0 else 0.0 for c in range(x.shape[1])])
    return np.argsort(-r)[:k], r


def lips_rows(name, clips, lips_models, mouth: np.ndarray, max_frames: int) -> list[str]:
    from avfc.train.avcc_motion import audio_window

    e_all, e_mouth, s_all, s_mouth = [], [], [], []
    for clip, lips in zip(clips, lips_models):
        t = min(clip.num_frames, max_frames)
        gen = lips.generate(clip.ref_q, audio_window(clip.fields, 0, t, lips.history, lips.lookahead))
        err = np.abs(gen.astype(np.int64) - clip.q[:t])
        still = np.abs(clip.ref_q[None, :].astype(np.int64) - clip.q[:t])
        e_all.append(err.mean()), e_mouth.append(err[:, mouth].mean())
        s_all.append(still.mean()), s_mouth.append(still[:, mouth].mean())
    return [f"| {name} | lips from speech | {np.mean(e_all):.3f} | {np.mean(e_mouth):.3f} |",
            f"| {name} | key keypoints held still | {np.mean(s_all):.3f} | {np.mean(s_mouth):.3f} |"]


def render_rows(clips, paths, lips: LipsFromSpeech, model_name: str, max_frames: int) -> list[str]:
    import torch

    from avfc.codec.common import make_reference, tensor_to_frames
    from avfc.entropy import dequantize
    from avfc.eval.mouth import mouth_motion_error
    from avfc.models.zoo import load_model
    from avfc.train.avcc_data import PRECISION, load_frames
    from avfc.train.avcc_motion import audio_window

    model = load_model(model_name, 256)
    res: dict[str, list] = {"lips from speech": [], "transmitted keypoints": [], "key frame held still": []}
    for clip, path in zip(clips, paths):
        t = min(clip.num_frames, max_frames)
        if t < 3:
            continue
        source = load_frames(path)[:t]
        ref = make_reference(model, clip.key, 0, PRECISION, torch.device("cpu"))
        lips_q = lips.generate(clip.ref_q, audio_window(clip.fields, 0, t, lips.history, lips.lookahead))
        for label, q in (("lips from speech", lips_q), ("transmitted keypoints", clip.q[:t])):
            kp = torch.from_numpy(dequantize(q, PRECISION))
            with torch.no_grad():
                frames = np.concatenate([tensor_to_frames(model.render([ref], kp[i:i + 8], i))
                                         for i in range(0, t, 8)])
            frames[0] = clip.key
            res[label].append(mouth_motion_error(source, frames))
        res["key frame held still"].append(mouth_motion_error(source, np.repeat(clip.key[None], t, axis=0)))
    out = []
    for label, ms in res.items():
        out.append(f"| {label} | {np.mean([m.opening_corr for m in ms]):.3f} | "
                   f"{np.mean([m.opening_l1 for m in ms]):.4f} | {np.mean([m.motion_corr for m in ms]):.3f} | "
                   f"{np.mean([m.motion_l1 for m in ms]):.4f} | "
                   f"{np.mean([m.decoded_motion.mean() for m in ms]):.4f} / "
                   f"{np.mean([m.source_motion.mean() for m in ms]):.4f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module doc)."""
    from safetensors.numpy import load_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, help="arrays from python -m avfc.train.avcc_motion (required)")
    ap.add_argument("--model", default="mrdac-cpu-v1")
    ap.add_argument("--precision", type=int, default=6,
                    help="keypoint grid (kp_precision) the clips are analysed on; 5 for the encoder's default")
    ap.add_argument("--hysteresis", type=float, default=0.0,
                    help="keypoint dead zone (kp_hysteresis); 0.3 for the encoder's default")
    ap.add_argument("--max-frames", type=int, default=100, help="frames per clip for lips and rendering")
    ap.add_argument("--render", action="store_true", help="also render and measure mouth motion (slow)")
    ap.add_argument("--smoke", action="store_true",
                    help="the shipped bundle's arrays on synthetic clips: a check that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        from avfc.avcc.zoo import load_avcc
        from avfc.media.synthetic import write_clip

        bundle = load_avcc("avcc-mrdac-cpu-v1")
        args.max_frames, args.render = 4, True  # 4 frames rendered per clip
        with tempfile.TemporaryDirectory() as tmp:
            for folder, count in (("av", 2), ("av-eval", 1)):
                (Path(tmp) / folder).mkdir()
                for i in range(count):
                    write_clip(Path(tmp) / folder / f"synthetic{i}.mp4", n=12, width=96, height=96)
            return run(args, Path(tmp), bundle.motion, bundle.lips)
    if args.weights is None:
        ap.error("--weights is required (unless --smoke)")
    if not DATA.is_dir():
        print(f"{DATA} is absent: nothing to measure")
        return 0
    arrays = load_file(str(args.weights))
    return run(args, DATA, SpeechMotionPredictor.from_arrays(arrays), LipsFromSpeech.from_arrays(arrays))


def run(args: argparse.Namespace, data: Path, pred: SpeechMotionPredictor, lips: LipsFromSpeech) -> int:
    """Measure on ``data``'s ``av/`` and ``av-eval/`` (see the module doc)."""
    from avfc.train.avcc_data import find_clips, load_clip
    from avfc.train.avcc_motion import fit_lips, fit_predictor

    t0 = time.time()
    train_paths, eval_paths = find_clips(data / "av"), find_clips(data / "av-eval")
    train = [load_clip(p, args.model, precision=args.precision, hysteresis=args.hysteresis) for p in train_paths]
    evals = [load_clip(p, args.model, precision=args.precision, hysteresis=args.hysteresis) for p in eval_paths]
    no_audio = fit_predictor(train, history=pred.history, use_audio=False)

    print("## Motion bits per frame (packets of 25 frames; decoded keypoints identical => identical video)\n")
    print("| set | packets | frames | existing coder | speech-conditioned | same, no audio terms | decoded identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in motion_table("av-eval", evals, pred, no_audio, loco=False):
        print(row)
    loco = _Loco(train, history=pred.history)
    loco_na = _Loco(train, history=pred.history, use_audio=False)
    for row in motion_table("av (leave-one-clip-out)", train, loco, loco_na, loco=True):
        print(row)

    mouth, r = mouth_channels(train, train_paths)
    print(f"\n## Lips from speech: keypoint L1 on the grid (first {args.max_frames} frames per clip)\n")
    print(f"Mouth channels (|r| with the source mouth opening on av/): {mouth.tolist()} "
          f"(r = {', '.join(f'{r[c]:.2f}' for c in mouth)})\n")
    print("| set | keypoints | L1 all channels | L1 mouth channels |")
    print("| --- | --- | --- | --- |")
    for row in lips_rows("av-eval", evals, [lips] * len(evals), mouth, args.max_frames):
        print(row)
    lips_loco = [fit_lips(train[:i] + train[i + 1:], lips.history, lips.lookahead) for i in range(len(train))]
    for row in lips_rows("av (leave-one-clip-out)", train, lips_loco, mouth, args.max_frames):
        print(row)
    if args.render:
        print(f"\n## Mouth motion of rendered frames on av-eval (model {args.model}, "
              f"first {args.max_frames} frames per clip, mean over clips)\n")
        print("| frames from | opening corr | opening L1 | motion corr | motion L1 | mean motion decoded / source |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in render_rows(evals, eval_paths, lips, args.model, args.max_frames):
            print(row)
    print(f"\n({time.time() - t0:.0f} s; command: python benchmarks/avcc_motion.py {' '.join(sys.argv[1:])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
