"""Outputs of ``avfc bench``: ``results.csv``, ``summary.md``, PNG plots and ``meta.json``.

Conventions used everywhere in the outputs:

* One CSV row per (clip, codec, rate point); an empty cell is a value that was not measured
  (the ``notes`` cell says why). Nothing is ever estimated or filled in.
* Summary tables and plots show, per codec and rate point, the mean over clips of the
  per-clip values (a per-clip value is itself a mean over frames). When a value is missing
  for some clips of a group, the cell shows the mean of the others and how many they are.
* Video metrics are plotted and BD-rated against the *video* rate ``kbps_video`` (every byte
  except the audio's), audio metrics against ``kbps_audio``: the video anchors carry no
  audio, and avfc and the baseline carry the same Codec2 700C speech, so this compares like
  with like. ``kbps_total`` is in the tables.
* BD-rates (:mod:`avfc.eval.bdrate`, pchip) are computed per clip, where both curves have
  two or more points, improve with rate, and overlap in quality; then averaged over the
  clips where they could be computed. Cells say on how many clips that was, and why not.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from avfc.errors import ConfigError, MediaError
from avfc.eval.bdrate import bd_rate

__all__ = [
    "AUDIO_METRICS",
    "COLUMNS",
    "METRICS",
    "MOUTH_METRICS",
    "VIDEO_METRICS",
    "BdCell",
    "Group",
    "Metric",
    "bd_table",
    "environment",
    "group_rows",
    "write_csv",
    "write_meta",
    "write_plots",
    "write_summary",
]


@dataclass(frozen=True)
class Metric:
    """One measured quantity: its CSV column, label, direction and the rate it is plotted against."""

    key: str
    label: str
    higher_is_better: bool
    rate: str  # CSV column of the x axis: "kbps_video" or "kbps_audio"
    digits: int  # decimals in summary.md


VIDEO_METRICS: tuple[Metric, ...] = (
    Metric("psnr", "PSNR (dB)", True, "kbps_video", 2),
    Metric("ssim", "SSIM", True, "kbps_video", 4),
    Metric("ms_ssim", "MS-SSIM", True, "kbps_video", 4),
    Metric("lpips_alex", "LPIPS-Alex", False, "kbps_video", 4),
    Metric("lpips_vgg", "LPIPS-VGG", False, "kbps_video", 4),
    Metric("dists", "DISTS", False, "kbps_video", 4),
)
MOUTH_METRICS: tuple[Metric, ...] = (
    Metric("mouth_motion_corr", "mouth motion r", True, "kbps_video", 3),
    Metric("mouth_motion_l1", "mouth motion L1", False, "kbps_video", 4),
    Metric("mouth_open_corr", "mouth opening r", True, "kbps_video", 3),
    Metric("mouth_open_l1", "mouth opening L1", False, "kbps_video", 4),
)
AUDIO_METRICS: tuple[Metric, ...] = (
    Metric("si_sdr", "SI-SDR (dB)", True, "kbps_audio", 2),
    Metric("pesq_wb", "PESQ-WB", True, "kbps_audio", 2),
    Metric("stoi", "STOI", True, "kbps_audio", 3),
)
METRICS: tuple[Metric, ...] = VIDEO_METRICS + MOUTH_METRICS + AUDIO_METRICS

#: every column of results.csv, in order
COLUMNS: tuple[str, ...] = (
    "clip", "codec", "point", "param", "target_kbps", "frames", "duration_s",
    "bytes_total", "bytes_video", "bytes_audio", "kbps_total", "kbps_video", "kbps_audio",
    *(m.key for m in METRICS),
    "metric_frames", "metric_stride", "encode_s", "decode_s", "encode_fps", "decode_fps",
    "encode_peak_mib", "decode_peak_mib", "device", "notes",
)

_TIMING: tuple[tuple[str, str, int], ...] = (
    ("encode_fps", "enc fps", 1), ("decode_fps", "dec fps", 1),
    ("encode_peak_mib", "enc MiB", 0), ("decode_peak_mib", "dec MiB", 0),
)
_LOG_TICKS = (0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000)
_AUDIO_TIMING: tuple[tuple[str, str, int], ...] = (("encode_s", "enc s", 2), ("decode_s", "dec s", 2))


def _number(value: Any) -> float | None:
    """A finite float, or None for a missing / empty / non-finite value."""
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows (dicts keyed by ``COLUMNS``) to CSV; floats with 6 significant digits, None empty."""
    unknown = {k for row in rows for k in row} - set(COLUMNS)
    if unknown:
        raise ConfigError(f"rows hold columns that results.csv does not have: {sorted(unknown)}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = {}
        for key in COLUMNS:
            v = row.get(key)
            if isinstance(v, float):
                out[key] = f"{v:.6g}" if math.isfinite(v) else ""
            else:
                out[key] = "" if v is None else v
        writer.writerow(out)
    return _write(path, buf.getvalue())


def _write(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file through a temporary name, so a reader never sees half of it."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    except OSError as exc:
        raise MediaError(f"cannot write {p}: {exc.strerror}") from exc
    return p


@dataclass
class Group:
    """The rows of one codec at one rate point, over clips."""

    codec: str
    point: str
    rows: list[Mapping[str, Any]]

    def values(self, key: str) -> list[float]:
        """The finite values of a column over the group's clips."""
        return [v for v in (_number(r.get(key)) for r in self.rows) if v is not None]

    def mean(self, key: str) -> float | None:
        """Mean of a column over the clips that have it; None when none has."""
        vals = self.values(key)
        return float(np.mean(vals)) if vals else None


def group_rows(rows: Sequence[Mapping[str, Any]]) -> list[Group]:
    """Rows grouped by (codec, point): codecs in order of first appearance, points by mean total rate."""
    groups: dict[tuple[str, str], Group] = {}
    for r in rows:
        key = (str(r["codec"]), str(r["point"]))
        groups.setdefault(key, Group(key[0], key[1], [])).rows.append(r)
    order = {c: i for i, c in enumerate(dict.fromkeys(str(r["codec"]) for r in rows))}
    return sorted(groups.values(), key=lambda g: (order[g.codec], g.mean("kbps_total") or 0.0, g.point))


def _cell(group: Group, key: str, digits: int) -> str:
    vals = group.values(key)
    if not vals:
        return "n/a"
    text = f"{float(np.mean(vals)):.{digits}f}"
    return text if len(vals) == len(group.rows) else f"{text} ({len(vals)}/{len(group.rows)})"


@dataclass
class BdCell:
    """BD-rate of one tested codec against one anchor on one metric, over clips."""

    tested: str
    anchor: str
    metric: str
    values: list[float]  # per clip, where computable
    clips: int  # clips with both codecs present
    reasons: Counter  # why not, per clip

    def text(self) -> str:
        """``-12.3 % (8/9)``, or why it could not be computed."""
        if self.values:
            return f"{float(np.mean(self.values)):+.1f} % ({len(self.values)}/{self.clips})"
        if not self.reasons:
            return "n/a"
        return "n/a: " + ", ".join(f"{why} ({n}/{self.clips})" for why, n in self.reasons.most_common())


def _why(exc: ConfigError) -> str:
    msg = str(exc)
    if "do not overlap" in msg:
        return "no overlap"
    if "is worse than at the lowest" in msg:
        return "not improving with rate"
    if "must be distinct" in msg:
        return "equal values"
    if "needs 2 to" in msg:
        return "< 2 points"
    return msg


def _curve(rows: Iterable[Mapping[str, Any]], metric: Metric) -> tuple[list[float], list[float]]:
    pts = sorted(
        (r, m) for r, m in ((_number(x.get(metric.rate)), _number(x.get(metric.key))) for x in rows)
        if r is not None and r > 0 and m is not None
    )
    return [p[0] for p in pts], [p[1] for p in pts]


def bd_table(
    rows: Sequence[Mapping[str, Any]], tested: Sequence[str], anchors: Sequence[str],
    metrics: Sequence[Metric] = VIDEO_METRICS,
) -> list[BdCell]:
    """BD-rate (pchip, percent, negative = ``tested`` saves bits) per clip, for every pair and metric."""
    by_clip: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        by_clip.setdefault(str(r["clip"]), {}).setdefault(str(r["codec"]), []).append(r)
    cells = []
    for t in tested:
        for a in anchors:
            if a == t:
                continue
            for metric in metrics:
                cell = BdCell(t, a, metric.key, [], 0, Counter())
                for codecs in by_clip.values():
                    if t not in codecs or a not in codecs:
                        continue
                    cell.clips += 1
                    ra, ma = _curve(codecs[a], metric)
                    rb, mb = _curve(codecs[t], metric)
                    if len(ra) < 2 or len(rb) < 2:
                        cell.reasons["< 2 points"] += 1
                        continue
                    try:
                        cell.values.append(bd_rate(ra, ma, rb, mb, method="pchip",
                                                   higher_is_better=metric.higher_is_better))
                    except ConfigError as exc:
                        cell.reasons[_why(exc)] += 1
                if cell.clips:
                    cells.append(cell)
    return cells


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _has(groups: Sequence[Group], key: str) -> bool:
    return any(g.values(key) for g in groups)


def write_summary(
    path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], bd: Sequence[BdCell],
    floors: Sequence[tuple[str, int, list[float]]], header_lines: Sequence[str],
) -> Path:
    """Write ``summary.md``: video and audio tables (means over clips), anchors' floors, BD-rates, notes.

    Args:
        rows: the CSV rows.
        bd: from :func:`bd_table`.
        floors: ``(codec, qp, per-clip video kbps)`` at each video anchor's largest QP swept.
        header_lines: markdown lines that describe the run (conditions, command, machine).
    """
    groups = group_rows(rows)
    lines = ["# avfc bench summary", "", *header_lines, ""]
    video = [g for g in groups if any(v > 0 for v in g.values("kbps_video"))]
    if video:
        cols = [m for m in VIDEO_METRICS + MOUTH_METRICS if _has(video, m.key) or m in VIDEO_METRICS]
        timing = [t for t in _TIMING if _has(video, t[0])]
        head = ["codec", "point", "clips", "kbps total", "kbps video", *(m.label for m in cols), *(t[1] for t in timing)]
        body = [
            [g.codec, g.point, str(len(g.rows)), _cell(g, "kbps_total", 2), _cell(g, "kbps_video", 2),
             *(_cell(g, m.key, m.digits) for m in cols), *(_cell(g, t[0], t[2]) for t in timing)]
            for g in video
        ]
        lines += ["## Video (mean over clips)", "", *_table(head, body), ""]
    audio = [g for g in groups if any(v > 0 for v in g.values("kbps_audio"))]
    video_ids = {id(g) for g in video}
    if audio:
        head = ["codec", "point", "clips", "kbps audio", *(m.label for m in AUDIO_METRICS), *(t[1] for t in _AUDIO_TIMING)]
        body = [
            [g.codec, g.point, str(len(g.rows)), _cell(g, "kbps_audio", 2),
             *(_cell(g, m.key, m.digits) for m in AUDIO_METRICS),
             # a codec that also codes video has its times in the video table
             *(_cell(g, t[0], t[2]) if id(g) not in video_ids else "(video)" for t in _AUDIO_TIMING)]
            for g in audio
        ]
        lines += ["## Audio (mean over clips)", "", *_table(head, body), ""]
    if floors:
        body = [
            [codec, str(qp), f"{np.mean(v):.2f}", f"{np.min(v):.2f}", f"{np.max(v):.2f}", str(len(v))]
            for codec, qp, v in floors if v
        ]
        lines += [
            "## Lowest video rate the anchors reach (largest QP swept)", "",
            *_table(["codec", "QP", "mean kbps", "min kbps", "max kbps", "clips"], body), "",
        ]
    if bd:
        metrics = [m for m in VIDEO_METRICS if any(c.metric == m.key for c in bd)]
        pairs = list(dict.fromkeys((c.tested, c.anchor) for c in bd))
        text = {(c.tested, c.anchor, c.metric): c.text() for c in bd}
        body = [[t, a, *(text.get((t, a, m.key), "n/a") for m in metrics)] for t, a in pairs]
        lines += [
            "## BD-rate (video kbps, pchip; negative: the tested codec needs fewer bits)", "",
            "Per clip, then the mean over the clips where it could be computed (count in brackets).", "",
            *_table(["tested", "anchor", *(m.label for m in metrics)], body), "",
        ]
    notes = Counter(n.strip() for r in rows for n in str(r.get("notes") or "").split(";") if n.strip())
    if notes:
        lines += ["## Notes (missing values and warnings, with the number of rows)", ""]
        lines += [f"- {n} ({k})" for n, k in sorted(notes.items(), key=lambda kv: (-kv[1], kv[0]))]
        lines.append("")
    return _write(path, "\n".join(lines))


def write_plots(out_dir: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> list[Path]:
    """One PNG per metric with data: mean metric against mean rate (log axis), one line per codec.

    Raises:
        ConfigError: matplotlib is not installed (``pip install 'avfc[eval]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError as exc:
        raise ConfigError("plots need matplotlib: pip install 'avfc[eval]'") from exc
    groups = group_rows(rows)
    written = []
    for metric in METRICS:
        lines: dict[str, list[tuple[float, float]]] = {}
        for g in groups:
            x, y = g.mean(metric.rate), g.mean(metric.key)
            if x is not None and x > 0 and y is not None:
                lines.setdefault(g.codec, []).append((x, y))
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=90)
        try:
            for codec, pts in lines.items():
                pts.sort()
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3.5, linewidth=1.2,
                        label=codec)
            ax.set_xscale("log")
            xs = [p[0] for pts in lines.values() for p in pts]
            ticks = [t for t in _LOG_TICKS if min(xs) / 1.2 <= t <= max(xs) * 1.2]
            ax.set_xticks(ticks or [min(xs)], [f"{t:g}" for t in ticks or [min(xs)]])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(("video" if metric.rate == "kbps_video" else "audio") + " kbit/s (log)")
            arrow = "higher is better" if metric.higher_is_better else "lower is better"
            ax.set_ylabel(metric.label)
            ax.set_title(f"{metric.label} ({arrow}), mean over clips", fontsize=9)
            ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = Path(out_dir) / f"{metric.key}.png"
            try:
                fig.savefig(p)
            except OSError as exc:
                raise MediaError(f"cannot write {p}: {exc.strerror}") from exc
            written.append(p)
        finally:
            plt.close(fig)
    return written


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor name elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def environment(device: str = "cpu") -> dict[str, Any]:
    """Machine and software versions for ``meta.json``."""
    import av
    import torch

    import avfc

    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    versions = {
        "python": platform.python_version(),
        "avfc": avfc.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pyav": av.__version__,
        "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
    }
    for name in ("matplotlib", "pesq", "pystoi"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "versions": versions,
        "argv": list(sys.argv),
    }


def write_meta(path: str | os.PathLike[str], meta: Mapping[str, Any]) -> Path:
    """Write ``meta.json`` (sorted keys, indented)."""
    return _write(path, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
