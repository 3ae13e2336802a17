"""Instance-adaptive decoder parameters (format 2.2): the same clip coded at the same total rate with and
without DECODER_PARAMS (``adapt_decoder``), scored against the source.

    python benchmarks/decoder_params.py --clips ../shared/data/av2/styletalk_Obama_clip2.mkv,... \
        [--frames 250] [--kbps 5] [--effort live] [--rate-control stream] [--lpips-stride 5] \
        [--weights ../shared/weights] [--out decoder_params.jsonl]

Per clip (first ``--frames`` frames, face crop, 256x256, Codec2 700C, ``mrdac-cpu-v3``): ``avfc.encode``
without and with ``adapt_decoder`` (the latter codes the clip, fits the set on the decoder's draws, codes
it again with the unit in the rate), the whole file's kbit/s, the unit's bytes, PSNR (RGB) on every frame
and LPIPS-Alex on every ``--lpips-stride``-th frame of the decoded file, and the seconds each took (not a
speed figure on a loaded machine). JSON lines on stdout (and ``--out``), then a markdown table.

``--smoke``: ``tiny-test`` on one synthetic 20-frame clip, no LPIPS: a check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="")
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--kbps", type=float, default=5.0)
    ap.add_argument("--effort", default="live")
    ap.add_argument("--rate-control", default="stream")
    ap.add_argument("--model", default="mrdac-cpu-v3")
    ap.add_argument("--lpips-stride", type=int, default=5)
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--fit-steps", type=int, help="Adam steps of the fit (default: avfc.codec.adapt.ADAPT_STEPS)")
    ap.add_argument("--fit-lr", type=float, help="Adam's learning rate (default: ADAPT_LR)")
    ap.add_argument("--fit-frames", type=int, help="frames the fit looks at (default: ADAPT_FRAMES)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)

    import functools

    import avfc
    import avfc.api
    from avfc import bitstream as bs
    from avfc.codec.adapt import fit_decoder_params
    from avfc.models.zoo import load_model
    from avfc.eval.metrics import psnr
    from avfc.media.stream import open_media

    settings = dict(model=args.model, bitrate_kbps=args.kbps, effort=args.effort, rate_control=args.rate_control,
                    audio="codec2", codec2_mode="700C")
    clips: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    lpips = None
    if args.smoke:
        from avfc.media.synthetic import speech_like, talking_face

        settings.update(model="tiny-test", size=64, bitrate_kbps=8.0)
        clips.append(("synthetic", talking_face(20, 64, 64, seed=3), speech_like(20 / 25, seed=3)))
    else:
        from avfc.eval.perceptual import LPIPS

        lpips = LPIPS("alex", args.weights)
        for path in [p for p in args.clips.split(",") if p]:
            with open_media(path, fps=25, sample_rate=16000, size=256, crop="face", max_frames=args.frames) as st:
                media = st.read()
            clips.append((Path(path).stem, media.frames, media.audio))
    fit_args = {k: v for k, v in (("steps", args.fit_steps), ("lr", args.fit_lr), ("max_frames", args.fit_frames))
                if v is not None}
    fit = functools.partial(fit_decoder_params, **fit_args)
    avfc.api.fit_decoder_params = fit  # what avfc.encode(adapt_decoder=True) calls
    rows = []
    for name, frames, audio in clips:
        plain_data = b""
        for adapt in (False, True):
            t0 = time.perf_counter()
            res = avfc.encode(frames, pcm=audio, adapt_decoder=adapt, **settings)
            t1 = time.perf_counter()
            dec = avfc.decode(res.data)
            out = dec.frames
            t2 = time.perf_counter()
            parsed = bs.parse_stream(res.data)
            units = [bs.decode_payload(u, 2) for u in parsed.units if u.type == bs.UnitType.DECODER_PARAMS]
            row = dict(clip=name, adapt=adapt, frames=int(len(frames)), bytes=len(res.data),
                       kbps=round(len(res.data) * 8 / 1000 / res.duration, 3), version=list(parsed.version),
                       params_bytes=int(res.stats.bytes_by_type.get("decoder_params", 0)), params_units=len(units),
                       mean_abs_value=float(np.mean(np.abs(units[0].values))) if units else 0.0,
                       key_qps=list(res.stats.key_qps), psnr=round(psnr(frames, out).mean, 3),
                       encode_s=round(t1 - t0, 1), decode_s=round(t2 - t1, 1), warnings=res.warnings)
            if lpips is not None:
                pick = slice(0, len(frames), args.lpips_stride)
                row["lpips_alex"] = round(lpips.score(frames[pick], out[pick]).mean, 4)
            if not adapt:
                plain_data = res.data
            else:  # the fit on the plain stream, as the encoder ran it: 8-bit MAE on its frames before / after
                r = fit(load_model(settings["model"], frames.shape[1]), plain_data, frames)
                row.update(fit_frames=r.frames, fit_mae_before=round(r.error_before, 3),
                           fit_mae_after=round(r.error_after, 3), fit=fit_args)
            rows.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")
    print("\n| clip | DECODER_PARAMS | kbps | unit bytes | key QPs | PSNR | LPIPS-Alex |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['clip']} | {'yes' if r['adapt'] and r['params_units'] else 'no'} | {r['kbps']:.2f} | "
              f"{r['params_bytes']} | {r['key_qps']} | {r['psnr']:.2f} | {r.get('lpips_alex', float('nan')):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
