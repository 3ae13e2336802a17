"""Encode speed and quality per effort preset (issue 17: "encode fps per preset, and how quality grows
with effort, a table and a plot").

Runs ``avfc bench`` with the modes ``avfc:effort-E`` for each preset E at one total rate, then writes
``effort.md`` (a table: per preset, means over clips of the whole encode's frames per second, its
rate, PSNR, MS-SSIM, LPIPS-Alex, DISTS and mouth motion r) and ``effort.png`` (quality against encode
speed, one point per preset) into the output folder. The encode speed is the bench's: a whole
``avfc.encode`` with ``--bitrate`` (keypoint analysis, search, rate control, 2 threads, the model load
included), frames of the clip over wall time, so measure on an otherwise idle machine.

Run::

    python benchmarks/effort.py ../shared/data/av-eval -o OUT [--efforts live,detector,fast,medium,slow]
        [--rate 5] [--clips 3] [--frames 100] [--weights ../shared/weights]

``--from-csv results.csv`` redraws the table and plot from an earlier run (any ``avfc bench`` CSV with
``avfc:effort-*`` rows) without encoding anything. ``--smoke``: the table and plot of made-up rows (no
encoding), a check that the script runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

EFFORTS = ("live", "detector", "fast", "medium", "slow")
#: per preset: (column, heading, digits)
COLUMNS = (
    ("encode_fps", "encode fps", 2),
    ("kbps_total", "kbps total", 2),
    ("psnr", "PSNR", 2),
    ("ms_ssim", "MS-SSIM", 3),
    ("lpips_alex", "LPIPS-Alex", 4),
    ("dists", "DISTS", 4),
    ("mouth_motion_corr", "mouth motion r", 3),
)


def _float(value: str | None) -> Optional[float]:
    try:
        v = float(value) if value not in (None, "") else math.nan
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def summarise(rows: Sequence[dict[str, str]], rate: float) -> dict[str, dict[str, float]]:
    """Means over clips per effort preset at the total rate target ``rate`` (rows of ``avfc:effort-*``
    codecs at that ``target_kbps``; others are ignored).

    A preset's mean of a column is taken over the clips that have the value; the count of clips is in
    ``"clips"``. Clips missing from some preset make the presets incomparable, so only clips present
    for every preset are used."""
    by_effort: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        codec = row.get("codec", "")
        if codec.startswith("avfc:effort-") and _float(row.get("target_kbps")) == float(rate):
            by_effort.setdefault(codec.removeprefix("avfc:effort-"), {})[row["clip"]] = row
    if not by_effort:
        return {}
    common = set.intersection(*(set(clips) for clips in by_effort.values()))
    out: dict[str, dict[str, float]] = {}
    for effort, clips in by_effort.items():
        means: dict[str, float] = {"clips": float(len(common))}
        for key, _, _ in COLUMNS:
            values = [v for c in sorted(common) if (v := _float(clips[c].get(key))) is not None]
            if values:
                means[key] = sum(values) / len(values)
        out[effort] = means
    return out


def _order(efforts: Sequence[str]) -> list[str]:
    known = [e for e in EFFORTS + ("placebo",) if e in efforts]
    return known + sorted(e for e in efforts if e not in known)


def table(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| `--effort` | clips | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |"]
    for effort in _order(list(summary)):
        s = summary[effort]
        cells = [f"{s[k]:.{d}f}" if k in s else "-" for k, _, d in COLUMNS]
        lines.append(f"| `{effort}` | {int(s['clips'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, dict[str, float]], path: Path) -> Optional[Path]:
    """Quality against encode speed, one point per preset (PSNR, LPIPS-Alex, DISTS side by side)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the eval extra brings it; without it, the table is the result
        return None
    efforts = [e for e in _order(list(summary)) if "encode_fps" in summary[e]]
    panels = [(k, h) for k, h, _ in COLUMNS if k in ("psnr", "lpips_alex", "dists")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, heading) in zip(axes, panels):
        pts = [(summary[e]["encode_fps"], summary[e][key], e) for e in efforts if key in summary[e]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:blue")
        for x, y, name in pts:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("encode fps (whole --bitrate encode, log)")
        ax.set_ylabel(heading + (" (lower is better)" if key != "psnr" else ""))
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(rows: Sequence[dict[str, str]], out: Path, rate: float, note: str = "") -> dict[str, dict[str, float]]:
    summary = summarise(rows, rate)
    if not summary:
        raise SystemExit(f"no avfc:effort-* rows at {rate:g} kbps to summarise")
    out.mkdir(parents=True, exist_ok=True)
    (out / "effort.md").write_text((note + "\n\n" if note else "") + table(summary))
    plot(summary, out / "effort.png")
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="?", help="a folder of clips (avfc bench's CLIPS_DIR)")
    ap.add_argument("-o", "--output", type=Path, default=None, help="where effort.md, effort.png and the bench go")
    ap.add_argument("--efforts", default=",".join(EFFORTS))
    ap.add_argument("--rate", type=float, default=5.0, help="total kbit/s")
    ap.add_argument("--clips", dest="max_clips", type=int, default=None, help="only the first N clips")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--from-csv", type=Path, default=None, help="summarise an earlier bench CSV instead")
    ap.add_argument("--smoke", action="store_true", help="made-up rows, no encoding (a check that it runs)")
    args = ap.parse_args(argv)
    if args.output is None:
        if not args.smoke:
            ap.error("give -o OUT")
        args.output = Path("effort-smoke")
    if args.smoke:
        rows = [{"clip": f"c{i}", "codec": f"avfc:effort-{e}", "encode_fps": str(20.0 / (j + 1)),
                 "target_kbps": "5", "kbps_total": "5.0", "psnr": str(18.0 + j + i), "lpips_alex": str(0.25 - 0.01 * j),
                 "dists": str(0.18 - 0.001 * j), "mouth_motion_corr": ""}
                for i in range(2) for j, e in enumerate(EFFORTS)]
        summary = write(rows, args.output, 5.0, "Made-up rows (--smoke).")
        print(table(summary), end="")
        return 0
    if args.from_csv is None:
        if not args.clips:
            ap.error("give a folder of clips, or --from-csv")
        codecs = ",".join(f"avfc:effort-{e.strip()}" for e in args.efforts.split(",") if e.strip())
        cmd = [sys.executable, "-m", "avfc", "bench", args.clips, "-o", str(args.output / "bench"), "-f",
               "--codecs", codecs, "--rates", f"{args.rate:g}", "--frames", str(args.frames), "--no-progress"]
        if args.max_clips:
            cmd += ["--clips", str(args.max_clips)]
        if args.weights:
            cmd += ["--weights", args.weights]
        subprocess.run(cmd, check=True)
        csv_path = args.output / "bench" / "results.csv"
    else:
        csv_path = args.from_csv
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    summary = write(rows, args.output, args.rate, f"From `{csv_path}`, {args.rate:g} kbps.")
    print(table(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
