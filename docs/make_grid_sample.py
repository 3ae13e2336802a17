"""Make examples/grid_sample.mp4, the README's sample input, from one GRID corpus clip.

    python docs/make_grid_sample.py [../shared/data/av/grid_sbia1a.mpg] [-o examples/grid_sample.mp4]

The GRID audio-visual sentence corpus (Cooke, Barker, Cunningham and Shao, 2006) is published under
CC BY 4.0, so one short clip may ship in the repository with its credit (examples/README.md). The clip
keeps its size (360x288, 25 fps; avfc crops around the face itself) and its 3 s, re-encoded to H.264
(CRF 20) with mono 16-kHz AAC speech: about 150 KB. Not a benchmark (it needs ../shared), so it has no
``--smoke``; it lives here, beside the pictures it goes with.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "av" / "grid_sbia1a.mpg"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    p.add_argument("-o", "--output", type=Path, default=ROOT / "examples" / "grid_sample.mp4")
    p.add_argument("--crf", type=int, default=20)
    a = p.parse_args()

    with av.open(str(a.clip)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    with av.open(str(a.clip)) as src:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        pcm = np.concatenate([r.to_ndarray().reshape(-1) for f in src.decode(audio=0) for r in resampler.resample(f)]
                             + [r.to_ndarray().reshape(-1) for r in resampler.resample(None)])
    h, w = frames[0].shape[:2]
    with av.open(str(a.output), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(a.crf), "preset": "slow"}
        aus = out.add_stream("aac", rate=16000, layout="mono")
        aus.bit_rate = 32000
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
        step = 1024
        for i in range(0, pcm.size, step):
            af = av.AudioFrame.from_ndarray(pcm[None, i:i + step], format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, i, Fraction(1, 16000)
            out.mux(aus.encode(af))
        out.mux(aus.encode(None))
    print(f"wrote {a.output}: {len(frames)} frames {w}x{h}, {pcm.size / 16000:.2f} s speech, "
          f"{a.output.stat().st_size} bytes")


if __name__ == "__main__":
    main()
