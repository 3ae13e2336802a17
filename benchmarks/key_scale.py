"""Would a key picture coded smaller and scaled up look better per byte? (Measured: barely; not built.)

    python benchmarks/key_scale.py [--budgets 150,200,260,350,500,800] [--scales 256,224,192,160,128]
                                   [--weights ../shared/weights]

At 3 kbps a clip of about a second leaves the key picture 170-230 bytes, where AV1's QP steps are
coarse (on lrs2_00002: 169 bytes at QP 63, 233 at QP 62) and some pictures do not fit at all even
at QP 63. Coding a downscaled picture and scaling it up at the decoder (a format change) would give
the rate control sizes in between and perhaps a better picture per byte. This measures that on
training clips (every other clip of ``av/`` and every third of ``face/``): frame 0 of each, prepared
as the encoder does (face crop, 256x256), is Lanczos-downscaled to each ``--scales`` side, coded with
avfc's AV1 key-picture codec at the finest QP within each ``--budgets`` byte budget, decoded, scaled
back up bicubically (Pillow) and scored against the 256x256 picture with PSNR, LPIPS-Alex and DISTS.
A (scale, budget) pair whose picture does not fit even at QP 63 is left out of the means (``n``).

Prints the means per budget and scale as a markdown table.

``--smoke``: frame 0 of one synthetic clip written to a temporary folder, two budgets and two scales, no
LPIPS/DISTS (NaN); a check that the script runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mkv", ".mov", ".avi")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="150,200,260,350,500,800", help="byte budgets, comma separated")
    ap.add_argument("--scales", default="256,224,192,160,128", help="coded picture sides, comma separated")
    ap.add_argument("--weights", type=Path, default=WEIGHTS, help="LPIPS/DISTS weights folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true",
                    help="one synthetic picture, no LPIPS/DISTS: a check that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        from avfc.media.synthetic import write_clip

        args.budgets, args.scales, args.threads, args.weights = "200,500", "256,192", 1, None
        with tempfile.TemporaryDirectory() as tmp:
            write_clip(Path(tmp) / "synthetic.mp4", n=5, width=96, height=96, audio=False)
            return run(args, [Path(tmp) / "synthetic.mp4"])
    if not (DATA / "av").is_dir() or not args.weights.is_dir():
        print(f"no data at {DATA} or no weights at {args.weights}: skipped")
        return 0
    return run(args, None)


def run(args: argparse.Namespace, clips: list[Path] | None) -> int:
    """Measure on ``clips`` (None: the training clips of ../shared/data); ``args.weights`` None: no
    LPIPS/DISTS (NaN)."""

    import torch
    from PIL import Image

    from avfc.api import prepare
    from avfc.config import EncoderConfig
    from avfc.errors import ConfigError
    from avfc.eval.metrics import psnr
    from avfc.eval.perceptual import DISTS, LPIPS
    from avfc.media import read_media
    from avfc.media.keyframe import decode_intra, encode_intra_to_size

    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    scales = [int(s) for s in args.scales.split(",")]
    nets = (LPIPS("alex", args.weights), DISTS(args.weights)) if args.weights is not None else None
    cfg = EncoderConfig.make(model="mrdac-cpu-v3", size=256, fps=25, max_frames=5)

    def listing(name: str) -> list[Path]:
        return sorted(p for p in (DATA / name).iterdir() if p.suffix in VIDEO_SUFFIXES)

    if clips is None:
        clips = listing("av")[::2] + listing("face")[::3]
    rows: dict[tuple[int, int], list[np.ndarray]] = {}
    for clip in clips:
        frames, _ = prepare(read_media(clip, fps=25, sample_rate=16000, max_frames=5), cfg)
        picture = frames[0]
        side = picture.shape[0]
        for scale in scales:
            small = picture if scale == side else np.asarray(Image.fromarray(picture).resize((scale, scale), Image.LANCZOS))
            for budget in budgets:
                try:
                    data, qp = encode_intra_to_size(small, "av1", budget)
                except ConfigError:  # does not fit even at the coarsest QP
                    continue
                dec = decode_intra(data, "av1", scale, scale)
                up = dec if scale == side else np.asarray(Image.fromarray(dec).resize((side, side), Image.BICUBIC))
                a, b = picture[None], up[None]
                perceptual = [net.score(a, b).mean for net in nets] if nets else [float("nan")] * 2
                rows.setdefault((scale, budget), []).append(np.array(
                    [len(data), qp, psnr(a, b).mean, *perceptual]))
        print(f"{clip.name}", file=sys.stderr, flush=True)

    print(f"\nFrame 0 of {len(clips)} training clips, 256x256; n = pictures that fit the budget:\n")
    print("| budget (bytes) | coded side | n | bytes | AV1 QP | PSNR | LPIPS-Alex | DISTS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for budget in budgets:
        for scale in scales:
            got = rows.get((scale, budget))
            if not got:
                print(f"| {budget} | {scale} | 0 | - | - | - | - | - |")
                continue
            m = np.mean(got, axis=0)
            print(f"| {budget} | {scale} | {len(got)} | {m[0]:.0f} | {m[1]:.1f} | {m[2]:.2f} | {m[3]:.3f} | {m[4]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
