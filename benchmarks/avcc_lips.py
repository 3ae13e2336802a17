"""Lips from speech at the keypoint level: regressor vs diffusion vs the key picture held still.

    python benchmarks/avcc_lips.py [--diffusion FILE] [--set av-eval] [--seeds 0,1,2,3,4] [--steps 16]

Markdown on stdout. Needs /work/shared/data (skips cleanly without it). Keypoints are those of
``mrdac-cpu-v2`` on the encoder's grid (precision 5, dead zone 0.3) as
:func:`avfc.train.avcc_data.load_clips` analyses them from the true video; the key picture is
frame 0 coded and decoded, as the decoder sees it (its keypoints are ``ref_q``).

**Mouth keypoint.** Chosen on the training clips (``av/``) only, by the correlation of each
channel's offset (keypoints minus the key picture's, each axis' mean removed; per clip centred)
with the Codec2 700C energy of the same frame: the table printed first. Keypoint 1 (channels 2 = x,
3 = y), which sits at the mouth and chin (mean position (0.05, 0.47) in [-1, 1] crop units), is the
only keypoint whose y offset rises with the energy (the jaw drops when speaking); the other
keypoints' y offsets fall with it only through the removal of the mean.

**Measures**, per clip on its first ``--max-frames`` frames (frame 0 excluded: it is the key
picture), then averaged over clips:

* mouth keypoint L1: mean ``|generated - true|`` on the grid over channels 2 and 3;
* mouth opening: the y offset of the mouth keypoint from the mean y of all keypoints
  (``q[:, 3] - mean(q[:, 1::2])``), generated vs true, Pearson r (0 when one is constant, as for
  the held key picture) and its correlation with the speech energy;
* the spread (standard deviation over time) of the generated opening, against the true one.

Diffusion rows are averaged over ``--seeds`` (the stream's seed); the spread over seeds is shown.
Also the sampler's speed (frames per second of keypoints alone, one thread).

``--smoke``: two synthetic 12-frame clips with speech-like audio written to a temporary folder (as
``av/``, measured on themselves), one seed, 2 steps; a check that the script runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")
MODEL, PRECISION, HYSTERESIS = "mrdac-cpu-v2", 5, 0.3
MOUTH = [2, 3]


def opening(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, np.float64)
    return q[:, 3] - q[:, 1::2].mean(axis=1)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64) - np.mean(a), np.asarray(b, np.float64) - np.mean(b)
    den = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 1e-12 else 0.0


def channel_table(clips) -> list[str]:
    from avfc.avcc.diffusion import grid_offsets

    xs, es = [], []
    for c in clips:
        off = grid_offsets(c.q, c.ref_q).astype(np.float64)
        xs.append(off - off.mean(axis=0))
        es.append(c.fields[:, 2] - c.fields[:, 2].mean())
    x, e = np.concatenate(xs), np.concatenate(es).astype(np.float64)
    r = [pearson(x[:, k], e) for k in range(x.shape[1])]
    head = "| keypoint | " + " | ".join(str(k) for k in range(x.shape[1] // 2)) + " |"
    sep = "| --- |" + " --- |" * (x.shape[1] // 2)
    rx = "| r(x offset, energy) | " + " | ".join(f"{r[2 * k]:+.2f}" for k in range(x.shape[1] // 2)) + " |"
    ry = "| r(y offset, energy) | " + " | ".join(f"{r[2 * k + 1]:+.2f}" for k in range(x.shape[1] // 2)) + " |"
    return [head, sep, rx, ry]


def measure(clips, gen_fn, max_frames: int) -> dict:
    """Mean over clips of the measures for keypoints ``gen_fn(clip, t) -> (t, C)``."""
    l1, r, r_energy, spread = [], [], [], []
    for clip in clips:
        t = min(clip.num_frames, max_frames)
        q = gen_fn(clip, t)[1:t].astype(np.int64)
        true = clip.q[1:t].astype(np.int64)
        l1.append(np.abs(q[:, MOUTH] - true[:, MOUTH]).mean())
        o, ot = opening(q), opening(true)
        r.append(pearson(o, ot))
        r_energy.append(pearson(o, clip.fields[1:t, 2]))
        spread.append(o.std())
    return {"l1": float(np.mean(l1)), "r": float(np.mean(r)), "r_energy": float(np.mean(r_energy)),
            "spread": float(np.mean(spread))}


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusion", type=Path, help="diffusion.* arrays (default: the shipped bundle's)")
    ap.add_argument("--regressor-bundle", default="avcc-mrdac-cpu-v2", help="bundle whose lips.* regressor is compared")
    ap.add_argument("--set", default="av-eval", help="folder of ../shared/data to measure on, or av:NAME,NAME")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--steps", default="16", help="DDIM steps (comma-separated for several rows; 16: the encoder's default)")
    ap.add_argument("--max-frames", type=int, default=100, help="frames per clip (the bench's --frames)")
    ap.add_argument("--smoke", action="store_true",
                    help="two synthetic clips, one seed, 2 steps: a check that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        from avfc.media.synthetic import write_clip

        args.set, args.seeds, args.steps, args.max_frames = "av", "0", "2", 12
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "av").mkdir()
            for i in range(2):
                write_clip(Path(tmp) / "av" / f"synthetic{i}.mp4", n=12, width=96, height=96)
            return run(args, Path(tmp))
    if not DATA.is_dir():
        print(f"{DATA} is absent: nothing to measure")
        return 0
    return run(args, DATA)


def run(args: argparse.Namespace, data: Path) -> int:
    """Measure on the clips of ``data`` (see the module doc)."""
    from safetensors.numpy import load_file

    from avfc.avcc.diffusion import LipsDiffusion, keypoints_from_offsets
    from avfc.avcc.zoo import load_avcc
    from avfc.train.avcc_data import load_clips
    from avfc.train.avcc_motion import audio_window
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    if args.diffusion is not None:
        diff = LipsDiffusion.from_arrays(load_file(str(args.diffusion)))
        diff_name = str(args.diffusion)
    else:
        from avfc.avcc.zoo import AVCC_ZOO

        name = [n for n, e in AVCC_ZOO.items() if e.animation_model == MODEL and load_avcc(n).diffusion][-1]
        diff, diff_name = load_avcc(name).diffusion, name
    lips = load_avcc(args.regressor_bundle).lips
    train = load_clips([data / "av"], MODEL, precision=PRECISION, hysteresis=HYSTERESIS)
    if args.set.startswith("av:"):
        names = set(args.set[3:].split(","))
        clips = [c for c in train if c.name in names]
    else:
        clips = load_clips([data / args.set], MODEL, precision=PRECISION, hysteresis=HYSTERESIS)
    seeds = [int(s) for s in args.seeds.split(",")]
    frames = sum(min(c.num_frames, args.max_frames) - 1 for c in clips)

    print("## Which keypoint is the mouth (training clips av/, per clip centred offsets)\n")
    for row in channel_table(train):
        print(row)
    print(f"\n## Lips from speech on {args.set} ({len(clips)} clips, {frames} frames: the first "
          f"{args.max_frames} of each but frame 0)\n")
    print(f"Diffusion model: {diff_name}; regressor: lips.* of {args.regressor_bundle}; seeds {seeds}.\n")
    print("| keypoints | mouth keypoint L1 (grid steps) | mouth opening r vs true | r(opening, speech energy) "
          "| opening spread (grid steps) |")
    print("| --- | --- | --- | --- | --- |")
    true = measure(clips, lambda c, t: c.q[:t], args.max_frames)
    print(f"| true (analysed from the video) | 0 | 1 | {true['r_energy']:+.3f} | {true['spread']:.3f} |")
    still = measure(clips, lambda c, t: np.repeat(c.ref_q[None], t, axis=0), args.max_frames)
    print(f"| key picture held still | {still['l1']:.3f} | 0 (constant) | 0 (constant) | 0 |")
    reg = measure(clips, lambda c, t: lips.generate(c.ref_q, audio_window(c.fields, 0, t, lips.history,
                                                                             lips.lookahead)), args.max_frames)
    print(f"| regressor (lips.*) | {reg['l1']:.3f} | {reg['r']:+.3f} | {reg['r_energy']:+.3f} | {reg['spread']:.3f} |")
    for steps in (int(s) for s in args.steps.split(",")):
        res = [measure(clips, lambda c, t: keypoints_from_offsets(c.ref_q, diff.generate(c.fields, t, seed, steps)),
                       args.max_frames) for seed in seeds]

        def ms(key: str, fmt: str) -> str:
            v = np.array([r[key] for r in res])
            return f"{v.mean():{fmt}} ± {v.std():.3f}"

        print(f"| diffusion, {steps} steps | {ms('l1', '.3f')} | {ms('r', '+.3f')} | {ms('r_energy', '+.3f')} | "
              f"{ms('spread', '.3f')} |")
    steps0 = int(args.steps.split(",")[-1])
    print(f"\nPer clip (diffusion: {steps0} steps, mean over the seeds):\n")
    print("| clip | frames | true opening spread | r(true opening, energy) | diffusion opening r vs true |")
    print("| --- | --- | --- | --- | --- |")
    for c in clips:
        t = min(c.num_frames, args.max_frames)
        o = opening(c.q[1:t])
        rs = [pearson(opening(keypoints_from_offsets(c.ref_q, diff.generate(c.fields, t, s, steps0))[1:t]), o)
              for s in seeds]
        print(f"| {c.name} | {t - 1} | {o.std():.2f} | {pearson(o, c.fields[1:t, 2]):+.2f} | {np.mean(rs):+.2f} |")
    # speed of the keypoints alone
    fields = np.concatenate([c.fields for c in clips])
    for steps in (int(s) for s in args.steps.split(",")):
        n = min(len(fields), 1000)
        t1 = time.perf_counter()
        diff.generate(fields[:n], n, 0, steps)
        dt = time.perf_counter() - t1
        print(f"\nDiffusion sampler speed, {steps} steps: {n / dt:.0f} frames/s ({n} frames, one thread, "
              f"float64 numpy)")
    t1 = time.perf_counter()
    lips.generate(train[0].ref_q, audio_window(fields[:n], 0, n, lips.history, lips.lookahead))
    print(f"Regressor speed: {n / (time.perf_counter() - t1):.0f} frames/s")
    print(f"\n({time.time() - t0:.0f} s; command: python benchmarks/avcc_lips.py {' '.join(sys.argv[1:])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
