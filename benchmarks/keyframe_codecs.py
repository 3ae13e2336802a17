"""Which key-frame codec gives more quality per byte on 256x256 face crops: AV1 or HEVC?

Takes one frame (at 1 s) from each of several real clips, face-crops it to 256x256 with
:mod:`avfc.media.crop`, sweeps qp for both codecs through :mod:`avfc.media.keyframe`, and
prints bytes vs RGB PSNR, a BD-rate / BD-PSNR comparison over 500-4000 bytes, and encode /
decode times. Clips are read by path from ``--data`` (default ``/work/shared/data``); missing
clips are skipped, and the script exits cleanly when none is there.

BD figures: per picture, PSNR is interpolated linearly in log(bytes) on each codec's qp
sweep. BD-PSNR is the mean PSNR difference over log(bytes) in [500, 4000]; BD-rate is the
mean log-bytes difference over the PSNR interval both codecs reach inside 500-4000 bytes,
as a percentage (negative: the second codec needs fewer bytes). Figures are averaged over
pictures.

Run: ``python benchmarks/keyframe_codecs.py [--data DIR] [--av1-preset N] [--hevc-preset P]``
``--smoke``: one synthetic clip written to a temporary folder, four QPs per codec; a check that the
script runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from avfc.media import keyframe
from avfc.media.crop import apply_crop, find_crop
from avfc.media.io import read_media
from avfc.media.yuv import rgb_to_yuv420, yuv420_to_rgb

CLIPS = (
    "av/grid_bbaf2n.mpg",
    "av/grid_swwp2s.mpg",
    "av/lp_d20.mp4",
    "av/retalk_2.mp4",
    "av/tpsmm_driving.mp4",
    "face/carphone.mp4",
    "face/lp_d3.mp4",
    "face/lp_d9.mp4",
    "face/lp_d13.mp4",
    "face/pyfeat_single_face.mp4",
)
QPS = {"av1": list(range(8, 64, 2)) + [63], "hevc": list(range(14, 52))}
LOW, HIGH = 500, 4000


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all RGB samples."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def load_pictures(data: Path, size: int = 256, clips: tuple[str, ...] = CLIPS) -> list[tuple[str, np.ndarray]]:
    pictures = []
    for rel in clips:
        path = data / rel
        if not path.is_file():
            continue
        media = read_media(path, fps=25, start=1.0, max_frames=1)
        box = find_crop(read_media(path, fps=25, max_frames=75).frames)
        pictures.append((path.stem, apply_crop(media.frames, box, size)[0]))
    return pictures


def sweep(codec: str, rgb: np.ndarray) -> dict[int, tuple[int, float]]:
    """qp -> (bytes, PSNR) for every qp of the sweep."""
    points = {}
    for qp in QPS[codec]:
        data = keyframe.encode_intra(rgb, codec, qp)
        points[qp] = (len(data), psnr(keyframe.decode_intra(data, codec, rgb.shape[1], rgb.shape[0]), rgb))
    return points


def curve(points: dict[int, tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, PSNR) arrays sorted by bytes."""
    pairs = sorted(points.values())
    return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs])


def _psnr_at(curve: tuple[np.ndarray, np.ndarray], log_rate: np.ndarray) -> np.ndarray:
    rates, quality = curve
    return np.interp(log_rate, np.log(rates), np.maximum.accumulate(quality))


def bd(ref: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(BD-rate in %, BD-PSNR in dB) of ``test`` against ``ref`` over LOW..HIGH bytes."""
    grid = np.linspace(np.log(LOW), np.log(HIGH), 200)
    bd_psnr = float(np.mean(_psnr_at(test, grid) - _psnr_at(ref, grid)))
    p_ref, p_test = _psnr_at(ref, grid), _psnr_at(test, grid)
    lo, hi = max(p_ref[0], p_test[0]), min(p_ref[-1], p_test[-1])
    if hi <= lo:
        return float("nan"), bd_psnr
    levels = np.linspace(lo, hi, 200)
    log_ref = np.interp(levels, p_ref, grid)  # p_* are non-decreasing along grid
    log_test = np.interp(levels, p_test, grid)
    return float(np.exp(np.mean(log_test - log_ref)) - 1) * 100, bd_psnr


def timing(codec: str, rgb: np.ndarray, repeats: int = 3) -> tuple[float, float, int]:
    """Median (encode ms, decode ms, bytes) at the codec's default qp."""
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = keyframe.encode_intra(rgb, codec)
        t1 = time.perf_counter()
        keyframe.decode_intra(data, codec, rgb.shape[1], rgb.shape[0])
        t2 = time.perf_counter()
        enc.append((t1 - t0) * 1000)
        dec.append((t2 - t1) * 1000)
    return statistics.median(enc), statistics.median(dec), len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--av1-preset", type=int, default=keyframe.AV1_PRESET)
    parser.add_argument("--hevc-preset", default=keyframe.HEVC_PRESET)
    parser.add_argument("--smoke", action="store_true",
                        help="one synthetic clip, four QPs per codec: a check that the script runs")
    args = parser.parse_args()
    keyframe.AV1_PRESET = args.av1_preset
    keyframe.HEVC_PRESET = args.hevc_preset

    if args.smoke:
        from avfc.media.synthetic import write_clip

        QPS.update(av1=[20, 40, 55, 63], hevc=[20, 32, 42, 51])
        with tempfile.TemporaryDirectory() as tmp:
            write_clip(Path(tmp) / "synthetic.mp4", n=30, width=160, height=128, audio=False)
            pictures = load_pictures(Path(tmp), clips=("synthetic.mp4",))
    else:
        pictures = load_pictures(args.data)
    if not pictures:
        print(f"no clips under {args.data}: nothing to measure")
        return
    print(f"{len(pictures)} pictures, 256x256; AV1 preset {args.av1_preset}, x265 preset {args.hevc_preset}\n")
    points = {name: {c: sweep(c, rgb) for c in keyframe.CODECS} for name, rgb in pictures}
    curves = {name: {c: curve(points[name][c]) for c in keyframe.CODECS} for name, _ in pictures}

    print("| picture | BD-rate HEVC vs AV1 | BD-PSNR HEVC vs AV1 | AV1 enc / dec ms | HEVC enc / dec ms |")
    print("| --- | --- | --- | --- | --- |")
    rates, psnrs, times = [], [], {c: [] for c in keyframe.CODECS}
    for name, rgb in pictures:
        rate, dpsnr = bd(curves[name]["av1"], curves[name]["hevc"])
        rates.append(rate)
        psnrs.append(dpsnr)
        cells = []
        for codec in keyframe.CODECS:
            t_enc, t_dec, _ = timing(codec, rgb)
            times[codec].append((t_enc, t_dec))
            cells.append(f"{t_enc:.0f} / {t_dec:.1f}")
        print(f"| {name} | {rate:+.1f} % | {dpsnr:+.2f} dB | {cells[0]} | {cells[1]} |")
    mean_t = {c: np.mean(np.array(times[c]), axis=0) for c in keyframe.CODECS}
    print(
        f"| **mean** | **{np.nanmean(rates):+.1f} %** | **{np.mean(psnrs):+.2f} dB** | "
        f"{mean_t['av1'][0]:.0f} / {mean_t['av1'][1]:.1f} | {mean_t['hevc'][0]:.0f} / {mean_t['hevc'][1]:.1f} |"
    )

    print("\nMean bytes and RGB PSNR per qp over all pictures:\n")
    for codec in keyframe.CODECS:
        cells = []
        for qp in QPS[codec][::2]:
            size = np.mean([points[name][codec][qp][0] for name, _ in pictures])
            quality = np.mean([points[name][codec][qp][1] for name, _ in pictures])
            cells.append(f"qp {qp}: {size:.0f} B {quality:.2f} dB")
        print(f"{codec}: " + ", ".join(cells))
    print("\nMean RGB PSNR (dB) at fixed sizes (interpolated per picture):\n")
    print("| bytes | " + " | ".join(keyframe.CODECS) + " |")
    print("| --- |" + " --- |" * len(keyframe.CODECS))
    for size in (500, 750, 1000, 1500, 2000, 3000, 4000):
        cells = [
            f"{np.mean([_psnr_at(curves[n][c], np.log([size]))[0] for n, _ in pictures]):.2f}"
            for c in keyframe.CODECS
        ]
        print(f"| {size} | " + " | ".join(cells) + " |")
    ceiling = np.mean([psnr(_colour_round_trip(rgb), rgb) for _, rgb in pictures])
    print(f"\nColour conversion alone (RGB -> YUV 4:2:0 -> RGB, no coding): {ceiling:.2f} dB")


def _colour_round_trip(rgb: np.ndarray) -> np.ndarray:
    return yuv420_to_rgb(*rgb_to_yuv420(rgb))


if __name__ == "__main__":
    main()
