"""Would a decoder-side unsharp mask close the LPIPS/DISTS gap to the held key frame? (Measured: no.)

    python benchmarks/postfilter.py [--set av-eval] [--rates 3,5] [--amount 0.5] [--weights ../shared/weights]

JSON lines on stdout, means at the end. Each clip (first 100 frames) is encoded once per rate with
avfc's defaults and decoded; the held key frame is coded at the same total bytes (as in ``avfc
bench``). Both are scored as they are and after an unsharp mask of every output frame,
``clip(round(x + a (x - G(x))))`` with ``G`` a separable Gaussian (sigma 1, 7 taps, edges
replicated): PSNR, MS-SSIM, LPIPS-Alex and DISTS on every 10th frame. The mask is here only: avfc
does not ship it (docs/experiments/2026-11-21-decoder-sharpening.md).

``--smoke``: the ``tiny-test`` model at 192x192 (MS-SSIM needs more than 160 pixels) on one synthetic
20-frame clip written to a temporary folder, one rate, no LPIPS/DISTS (NaN); a check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")


def unsharp(frames: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp-masked uint8 frames ``(N, H, W, 3)``."""
    import torch
    import torch.nn.functional as F

    taps = np.exp(-np.arange(-3, 4, dtype=np.float64) ** 2 / 2.0)
    k = torch.tensor(taps / taps.sum(), dtype=torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    blur = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).repeat(3, 1, 1, 1), groups=3)
    blur = F.conv2d(F.pad(blur, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).repeat(3, 1, 1, 1), groups=3)
    return torch.round(x + amount * (x - blur)).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="av-eval")
    ap.add_argument("--rates", default="3,5")
    ap.add_argument("--amount", type=float, default=0.5)
    ap.add_argument("--weights", default=str(DATA.parent / "weights"))
    ap.add_argument("--smoke", action="store_true",
                    help="tiny-test on one synthetic clip at 192x192, no LPIPS/DISTS: a check that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        from avfc.media.synthetic import write_clip

        with tempfile.TemporaryDirectory() as tmp:
            write_clip(Path(tmp) / "synthetic.mp4", n=20, width=96, height=96)
            return run(Path(tmp), [5.0], args.amount, None, {"model": "tiny-test"}, size=192, frames=20)
    folder = DATA / args.set
    if not folder.is_dir() or not Path(args.weights).is_dir():
        print(f"no data at {folder} or no weights at {args.weights}: skipped")
        return 0
    return run(folder, [float(r) for r in args.rates.split(",")], args.amount, args.weights, {})


def run(folder: Path, rates: list[float], amount: float, weights, overrides: dict, size: int = 256,
        frames: int = 100) -> int:
    """Measure every clip of ``folder``; ``weights`` None: no LPIPS/DISTS (NaN); ``overrides``: encoder
    settings beside the defaults."""
    import torch

    import avfc
    from avfc.eval.bench import _code_baseline, find_clips, load_reference
    from avfc.eval.metrics import ms_ssim, psnr
    from avfc.eval.perceptual import DISTS, LPIPS
    from avfc.media import Media

    torch.set_num_threads(1)
    nets = (LPIPS("alex", weights), DISTS(weights)) if weights is not None else None

    def tens(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255

    def score(ref, out, s):
        lpips = dists = float("nan")
        if nets is not None:
            lp, ds = nets
            with torch.no_grad():
                lpips, dists = lp(tens(ref[s]), tens(out[s])).mean().item(), ds(tens(ref[s]), tens(out[s])).mean().item()
        return [float(np.mean(psnr(ref[s], out[s]).per_frame)), float(np.mean(ms_ssim(ref[s], out[s]).per_frame)),
                lpips, dists]

    rows = []
    for path in find_clips(folder):
        ref = load_reference(path, size=size, max_frames=frames)
        media = Media.from_arrays(ref.frames, ref.fps, ref.audio, 16000)
        s = list(range(0, len(ref.frames), 10))
        for rate in rates:
            res = avfc.encode(media, bitrate_kbps=rate, size=int(ref.frames.shape[1]), fps=ref.fps, crop="none",
                              **overrides)
            dec = avfc.decode(res.data)
            held = _code_baseline(ref, rate, len(res.data)).frames
            row = {"clip": path.stem, "rate": rate, "kbps": len(res.data) * 8 / 1000 / ref.duration,
                   "avfc": score(ref.frames, dec.frames, s), "avfc_sharpened": score(ref.frames, unsharp(dec.frames, amount), s),
                   "held": score(ref.frames, held, s), "held_sharpened": score(ref.frames, unsharp(held, amount), s)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for rate in sorted({r["rate"] for r in rows}):
        rs = [r for r in rows if r["rate"] == rate]
        print(f"\n{rate:g} kbps ({len(rs)} clips): PSNR / MS-SSIM / LPIPS-Alex / DISTS")
        for k in ("avfc", "avfc_sharpened", "held", "held_sharpened"):
            m = np.mean([r[k] for r in rs], axis=0)
            print(f"  {k:15s} {m[0]:.2f} / {m[1]:.3f} / {m[2]:.3f} / {m[3]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
