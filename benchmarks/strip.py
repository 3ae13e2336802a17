"""The README's picture strip: a few frames of one GRID clip as the source, avfc at ~5 kbps, the key
frame held still at avfc's bytes and SVT-AV1 at its floor, one PNG.

    python benchmarks/strip.py [CLIP] [-o docs/img/strip-CLIPNAME.png] [--kbps 5] [--points 4]

CLIP defaults to ``../shared/data/av/grid_sbia1a.mpg`` (GRID audio-visual corpus, Cooke et al., CC BY
4.0: its frames may be shown with that credit; no other clip of ../shared may be). The clip is read
under ``avfc bench``'s test conditions (:func:`avfc.eval.bench.load_reference`: 25 fps, 16 kHz mono,
cropped around the face to 256x256 as the encoder crops it), then coded four ways:

* ``avfc.encode(..., bitrate_kbps=KBPS)`` with every other setting at its default (model, effort
  ``fast``, Codec2 700C speech), and decoded with ``avfc.decode``; its rate is every byte of the file;
* the key frame held still (:func:`avfc.eval.anchors.encode_held_key_frame`): the first frame coded
  with AV1 to fit avfc's file less the same Codec2 700C speech, as ``avfc bench``'s baseline;
* SVT-AV1 at its floor (:func:`avfc.eval.anchors.encode_video_anchor` at the largest QP of
  ``QP_LIMITS``, preset 4, one key frame then low-delay inter frames): the lowest rate it reaches;
  its rate is the video bitstream alone, without speech.

The strip shows ``--points`` frames spread evenly from 20 % to 85 % of the clip (GRID sentences start
and end in silence), one row per coder, each tile ``--tile`` px, labelled, with each coder's rate and
PSNR over all frames; the report is printed. ``--smoke`` codes 10 synthetic 64x64 frames with the
``tiny-test`` model (a key-frame QP instead of a rate) into a temporary folder: a check that it runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import avfc
from avfc.eval import anchors
from avfc.media import Media

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "av" / "grid_sbia1a.mpg"
CREDIT = "GRID audio-visual corpus (Cooke et al.), CC BY 4.0"


def psnr(ref: np.ndarray, dec: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR (RGB, 8 bit)."""
    err = ((ref.astype(np.float64) - dec.astype(np.float64)) ** 2).reshape(len(ref), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(err, 1e-10))))


def code_all(frames: np.ndarray, audio: np.ndarray | None, fps: int, avfc_args: dict) -> list[tuple[str, np.ndarray]]:
    """Each coder's decoded frames, with its label; prints one report line per coder."""
    t, s = frames.shape[:2]
    seconds = t / fps
    rows = [("source", frames)]

    t0 = time.perf_counter()
    res = avfc.encode(Media.from_arrays(frames, fps, audio, 16000), crop="none", size=s, fps=fps, **avfc_args)
    dec = avfc.decode(res.data).frames
    print(f"avfc: {len(res.data)} bytes, {res.kbps:.2f} kbps, effort {res.effort}, "
          f"PSNR {psnr(frames, dec):.2f} dB ({time.perf_counter() - t0:.0f} s)")
    rows.append((f"avfc, {res.kbps:.1f} kbps in all (effort {res.effort}, speech included)", dec))

    speech = anchors.encode_audio_anchor(audio, "codec2", "700C") if audio is not None else b""
    payload, qp, fits = anchors.encode_held_key_frame(frames[0], max(1, len(res.data) - len(speech)))
    held = anchors.decode_held_key_frame(payload, t, s, s)
    kbps = (len(payload) + len(speech)) * 8 / seconds / 1000
    print(f"held key frame: {len(payload)} + {len(speech)} bytes, {kbps:.2f} kbps, AV1 qp {qp}"
          f"{'' if fits else ' (does not fit)'}, PSNR {psnr(frames, held):.2f} dB")
    rows.append((f"key frame held still, {kbps:.1f} kbps in all (same bytes)", held))

    qp = anchors.QP_LIMITS["svtav1"][1]
    packets = anchors.encode_video_anchor(frames, "svtav1", qp, fps)
    svt = anchors.decode_video_packets(packets, "svtav1", s, s)
    kbps = sum(map(len, packets)) * 8 / seconds / 1000
    print(f"SVT-AV1 QP {qp}: {sum(map(len, packets))} bytes, {kbps:.2f} kbps video only, PSNR {psnr(frames, svt):.2f} dB")
    rows.append((f"SVT-AV1 at its floor (QP {qp}), {kbps:.1f} kbps video only", svt))
    return rows


def strip(rows: list[tuple[str, np.ndarray]], points: list[int], fps: int, tile: int) -> Image.Image:
    """One row per coder (a label line above it), one column per time point."""
    font = ImageFont.load_default(size=max(10, tile // 12))
    band = max(14, tile // 9)
    img = Image.new("RGB", (tile * len(points), (tile + band) * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    for r, (label, frames) in enumerate(rows):
        y = r * (tile + band)
        text = label if r else f"{label}: frames at " + ", ".join(f"{i / fps:.1f} s" for i in points)
        draw.text((4, y + 1), text, fill="black", font=font)
        for c, i in enumerate(points):
            pic = Image.fromarray(np.ascontiguousarray(frames[i])).resize((tile, tile), Image.LANCZOS)
            img.paste(pic, (c * tile, y + band))
    return img


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    p.add_argument("-o", "--output", type=Path, help="default docs/img/strip-CLIPNAME.png")
    p.add_argument("--kbps", type=float, default=5.0)
    p.add_argument("--points", type=int, default=4)
    p.add_argument("--tile", type=int, default=160)
    p.add_argument("--smoke", action="store_true", help="10 synthetic frames, tiny-test, a temporary folder")
    a = p.parse_args()

    if a.smoke:
        from avfc.media.synthetic import talking_face

        frames, audio, fps = talking_face(10, 64, 64, seed=1), None, 25
        avfc_args: dict = {"model": "tiny-test", "audio": "none", "key_qp": 40}
    else:
        from avfc.eval.bench import load_reference

        ref = load_reference(a.clip, size=256)
        frames, audio, fps = ref.frames, ref.audio, ref.fps
        avfc_args = {"bitrate_kbps": a.kbps}
    t = len(frames)
    points = [int(round(x)) for x in np.linspace(0.2 * (t - 1), 0.85 * (t - 1), a.points)]
    rows = code_all(frames, audio, fps, avfc_args)
    img = strip(rows, points, fps, 64 if a.smoke else a.tile)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strip.png" if a.smoke else a.output or ROOT / "docs" / "img" / f"strip-{a.clip.stem}.png"
        img.save(out, optimize=True)
        print(f"wrote {out}: {img.width}x{img.height}, {out.stat().st_size // 1024} KB, frames {points}"
              + ("" if a.smoke else f"; credit: {CREDIT}"))


if __name__ == "__main__":
    main()
