"""Motion bits and rendered quality against the keypoint grid and the encoder's dead zone.

For every clip of a folder (test conditions: face crop, 256x256, 25 fps, first ``--frames``
frames) the keypoints of every frame are detected, quantized on each grid (``precision``) with
each dead zone (``kp_hysteresis``), coded as INTRA motion packets of 25 frames (the bytes the
codec writes), and every ``--stride``-th frame is rendered from the clip's *original* first frame
(no key-frame coding, so only the motion is compared). PSNR against the source, and the PSNR of the
first frame held still on the same frames, are printed per clip and on average.

    python benchmarks/kp_grid.py mrdac-cpu-v2 --variants 6:0,6:0.3,5:0,5:0.3
    python benchmarks/kp_grid.py runs/cpu-v2/cpu.safetensors   # an exported training result
    python benchmarks/kp_grid.py --smoke   # tiny-test on one synthetic 12-frame clip: a check that it runs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from avfc.codec.common import frames_to_tensor, make_reference
from avfc.entropy import dequantize, encode_motion, quantize_track
from avfc.eval.bench import find_clips, load_reference
from avfc.eval.metrics import psnr


def _model(name: str):
    if name.endswith(".safetensors"):
        from avfc.models.zoo import ZOO, build_model
        from avfc.train.export import load_exported

        trained = load_exported(name)
        model = build_model("mrdac", dict(ZOO["mrdac-cpu-v1"].config))  # the codec's 256 px setting
        model.load_state_dict(trained.state_dict())
        return model.eval()
    from avfc.models.zoo import load_model

    return load_model(name, 256)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", help="zoo model name or exported .safetensors")
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/av-eval"))
    ap.add_argument("--variants", default="6:0,6:0.3,5:0,5:0.3,4:0,4:0.3", help="precision:dead-zone,...")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny-test on one synthetic 12-frame clip, two variants: a check that the script runs")
    args = ap.parse_args()
    if args.smoke:
        from avfc.media.synthetic import write_clip

        args.model, args.variants, args.frames, args.threads = "tiny-test", "6:0,5:0.3", 12, 1
        with tempfile.TemporaryDirectory() as tmp:
            args.clips = Path(tmp)
            write_clip(args.clips / "synthetic.mp4", n=args.frames, width=96, height=96, audio=False)
            return run(args)
    if args.model is None:
        ap.error("the model is required (unless --smoke)")
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Measure every variant on every clip of ``args.clips``."""
    torch.set_num_threads(args.threads)
    model = _model(args.model)
    variants = [(int(v.split(":")[0]), float(v.split(":")[1])) for v in args.variants.split(",")]
    bits = {v: 0 for v in variants}
    frames_total = 0
    scores: dict = {v: [] for v in variants}
    held_scores = []
    for path in find_clips(args.clips):
        fr = load_reference(path, max_frames=args.frames).frames
        with torch.no_grad():
            kp = torch.cat([model.detect(frames_to_tensor(fr[i:i + 16])) for i in range(0, len(fr), 16)])
        kp = kp.numpy().astype(np.float64)
        shown = list(range(1, len(fr), args.stride))
        held_scores.append(float(np.mean(psnr(fr[shown], np.repeat(fr[:1], len(shown), 0)).per_frame)))
        frames_total += len(fr)
        for p, h in variants:
            q = quantize_track(kp, p, h)
            bits[(p, h)] += sum(len(encode_motion(q[i:i + 25])) * 8 for i in range(0, len(q), 25))
            ref = make_reference(model, fr[0], 0, p, torch.device("cpu"))
            out = []
            with torch.no_grad():
                for t in shown:
                    img = model.render([ref], torch.from_numpy(dequantize(q[t:t + 1], p)), t)
                    out.append((img[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
            scores[(p, h)].append(float(np.mean(psnr(fr[shown], np.stack(out)).per_frame)))
        row = "  ".join(f"{p}/{h}: {scores[(p, h)][-1]:.2f}" for p, h in variants)
        print(f"{path.stem}: {row}  held {held_scores[-1]:.2f} dB", flush=True)
    for p, h in variants:
        b = bits[(p, h)] / frames_total
        print(f"precision {p} dead zone {h}: {b:.1f} bits/frame ({b * 25 / 1000:.2f} kbps), "
              f"rendered PSNR {np.mean(scores[(p, h)]):.2f} dB, held still {np.mean(held_scores):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
