"""Memory and speed of ``avfc encode`` and ``avfc decode`` against input length (issue 18's targets).

Builds long inputs from a real talking-face clip (default ``../shared/data/av/lp_d20.mp4``, read only;
nothing is written into the repository): its frames and speech looped to each length, scaled to
1920x1080 at 30 fps, written to a temporary H.264 + AAC file; then runs, in a fresh child process
each, ``avfc encode INPUT -o X.avfc --bitrate KBPS --effort EFFORT`` and ``avfc decode X.avfc -o
Y.mp4``, and reports for each: wall time, speed (input seconds per second: 1.0 is real time), and
the child's peak resident memory (its ``VmHWM``, polled), plus the file's rate over every
30-s stretch.

Goals (issue 18, on the 2-core CPU): peak RSS flat in length (the 10-minute peak within 15 % of the
1-minute peak) and under 1 GB for a 10-minute 1080p input both ways; decode at or above real time;
encode with ``--effort live`` at or above real time.

Run: ``python benchmarks/long.py --minutes 1,2,5,10 --out /tmp/long.json [--clip PATH] [--kbps 5]
[--effort live] [--keep DIR]``. It takes about as long as the inputs at real time, three times
(building, encoding, decoding). ``--smoke``: a 2-s synthetic input at 160x128 with the untrained
``tiny-test`` model, a check that the script runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "av" / "lp_d20.mp4"


def build_input(clip: Optional[Path], seconds: float, dst: Path, width: int, height: int, fps: int) -> None:
    """Write ``seconds`` of ``clip`` (looped; a synthetic face without one) scaled to width x height at fps,
    with its speech (16 kHz mono AAC), one frame at a time: nothing but the source clip is held."""
    import av

    from avfc.media import read_media
    from avfc.media.synthetic import speech_like, talking_face

    if clip is not None:
        media = read_media(clip, fps=fps, sample_rate=16000)
        src, pcm = media.frames, media.audio
    else:
        src, pcm = talking_face(fps * 2, 160, 128), speech_like(2.0)
    if pcm is None:
        pcm = np.zeros(int(len(src) / fps * 16000), np.float32)
    n = int(round(seconds * fps))
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "23"}
        aud = out.add_stream("aac", rate=16000)
        aud.layout = "mono"
        for i in range(n):
            k = i % (2 * len(src) - 2) if len(src) > 1 else 0  # back and forth: no jump at the loop
            k = k if k < len(src) else 2 * len(src) - 2 - k
            frame = av.VideoFrame.from_ndarray(src[k], format="rgb24").reformat(width, height, format="yuv420p")
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        total = int(round(seconds * 16000))
        looped = np.resize(pcm.astype(np.float32), total)
        step = 16000
        for s in range(0, total, step):
            af = av.AudioFrame.from_ndarray(looped[None, s:s + step], format="flt", layout="mono")
            af.sample_rate = 16000
            af.pts, af.time_base = s, Fraction(1, 16000)
            for p in aud.encode(af):
                out.mux(p)
        for p in aud.encode():
            out.mux(p)


def _hwm_mib(pid: int) -> Optional[float]:
    """``VmHWM`` (peak resident memory of the process's own address space) of ``pid``, MiB, or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` in a child; its wall time and peak resident memory.

    The peak is the child's ``VmHWM``, read every 20 ms while it runs (it misses at most the last 20 ms),
    where /proc has it; ``ru_maxrss`` from ``os.wait4`` otherwise. Not ``ru_maxrss`` alone: Linux keeps it
    across ``execve``, so a child could report its parent's peak instead of its own. Its stderr goes to a
    temporary file (a pipe nobody reads would fill and stall it)."""
    t = time.monotonic()
    hwm: Optional[float] = None
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            h = _hwm_mib(proc.pid)
            if h is not None:
                hwm = h if hwm is None else max(hwm, h)
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    peak = hwm if hwm is not None else usage.ru_maxrss / 1024
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak, 1)}


def stretch_rates(path: Path, stretch: float = 30.0) -> list[float]:
    """kbps of every ``stretch``-s part of an .avfc file (each unit counted at its first frame)."""
    from avfc import bitstream as bs

    data = path.read_bytes()
    parsed = bs.parse_stream(data)
    fps = parsed.header.fps_num / parsed.header.fps_den
    frames = max(int(parsed.header.frame_count), 1)
    parts = max(1, int(frames / fps // stretch))
    total = np.zeros(parts)
    total[0] += len(data) - sum(u.size for u in parsed.units)
    for unit in parsed.units:
        p = bs.decode_payload(unit, parsed.version[0])
        first = getattr(p, "frame_index", getattr(p, "first_frame", frames - 1))
        total[min(int(first / fps // stretch), parts - 1)] += unit.size
    last = frames / fps - (parts - 1) * stretch
    seconds = np.full(parts, stretch)
    seconds[-1] = last
    return [round(float(x), 3) for x in total * 8 / 1000 / seconds]


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", default="1,2,5,10")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--kbps", type=float, default=5.0)
    p.add_argument("--effort", default="live")
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", type=Path, help="keep the inputs and outputs here (default: a temporary folder)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    lengths = [float(m) * 60 for m in args.minutes.split(",")]
    width, height, fps, extra = 1920, 1080, 30, []
    clip: Optional[Path] = args.clip if args.clip.exists() else None
    if args.smoke:
        lengths, width, height, clip = [2.0], 160, 128, None
        extra = ["--model", "tiny-test", "--size", "64"]
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                               "clip": str(clip) if clip else "synthetic", "kbps": args.kbps,
                               "effort": args.effort, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for seconds in lengths:
            src = work / f"long-{int(seconds)}s.mp4"
            t = time.monotonic()
            build_input(clip, seconds, src, width, height, fps)
            built = time.monotonic() - t
            coded, decoded = work / f"long-{int(seconds)}s.avfc", work / f"long-{int(seconds)}s.decoded.mp4"
            avfc = [sys.executable, "-m", "avfc.cli"]
            enc = peak_rss(avfc + ["encode", str(src), "-o", str(coded), "-y", "-q", "--bitrate", str(args.kbps),
                                   "--effort", args.effort] + extra)
            dec = peak_rss(avfc + ["decode", str(coded), "-o", str(decoded), "-y", "-q"])
            row = {"seconds": seconds, "input": f"{width}x{height} {fps} fps", "build_s": round(built, 1),
                   "encode": {**enc, "speed_x_realtime": round(seconds / enc["wall_s"], 3)},
                   "decode": {**dec, "speed_x_realtime": round(seconds / dec["wall_s"], 3)},
                   "kbps": round(coded.stat().st_size * 8 / 1000 / seconds, 3),
                   "kbps_per_30s": stretch_rates(coded)}
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
            if not args.keep:
                for f in (src, coded, decoded):
                    f.unlink(missing_ok=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
