"""Decode speed and memory of a shipped model (default: the default one) at 256x256 on the CPU.

Measures, for each torch thread count of ``--threads`` (default 2 and 1), in a fresh child process:

* whole :func:`avfc.decode` of two 100-frame streams (every stage: parsing, entropy decoding,
  AV1 key-frame decoding, reference preparation, rendering, Codec2 speech decoding), in frames per
  second: ``1 ref``, the default configuration (one key frame, Codec2 700C, 5 kbit/s in total),
  and ``4 refs``, a key frame every 25 frames with up to 4 references (frames 75-99 use four);
* the pieces, in ms per call: ``detect`` (the keypoint detector, the encoder's analysis of every
  frame, run on one frame and per frame of a batch of 16 as ``analyse`` does), AV1 key-frame
  decoding, ``prepare_reference`` (one decoded key frame), ``make_reference`` (detect + quantize +
  prepare, what the decoder does per key frame), ``render`` with 1, 2 and 4 references for one frame
  and per frame of a batch of 8 (the decoder draws one frame per call: batches of 8 measured 3x
  slower per frame on this CPU), and parsing plus entropy decoding of a whole stream;
* peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child): after
  importing avfc and loading the model, after one decode of each stream, and at the end.

Each timing is the median (and quartiles) of ``--runs`` (default 30) calls after ``--warmup`` untimed
calls; the calls of all items are interleaved round by round, because the 2-thread timings of a shared
virtual machine drift by up to 2x over tens of seconds even when nothing else runs in it. The
load average (``os.getloadavg``, what ``uptime`` shows) is recorded before and after every child;
with ``--max-load`` the script first waits (up to ``--wait`` seconds) for the 1-minute load to drop
below it, and the CPU time *other* processes used while each child ran (from ``/proc/stat``) is
reported. Streams are coded from ``--clip`` (default the first 100 frames of an ``av-eval`` clip,
read only) or, when that file is absent, from a synthetic talking face (``avfc.media.synthetic``).

Streams are written in the encoder's default format (2.0 since avfc 0.2); every payload is read in the
layout of the stream's own major version.

``--busy N`` keeps N other processes spinning on the CPU while the children measure (each a busy Python
loop): decoding on a CPU that other work shares, as in an app or a call whose encoder runs beside its
decoder (on the 2-core CPU, ``--busy 1`` leaves the decoder one free core).

Run: ``python benchmarks/speed.py --out /tmp/speed.md [--model NAME] [--threads 2,1] [--runs 30] [--max-load 1.2]
[--busy 1]``
(``--model``: a zoo model, default the zoo's default; streams and pieces alike use it).
``--smoke``: a check that the script runs, in seconds, on no data (the ``tiny-test`` model at 64x64,
16 synthetic frames, one thread, one timed call); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import numpy as np


FRAMES = 100
SIZE = 256
FPS = 25
SMOKE = {"frames": 16, "size": 64, "model": "tiny-test", "threads": "1", "runs": 1, "warmup": 1}
#: the streams' names (their configurations: :func:`streams`)
STREAMS = ("1 ref", "4 refs")


def streams(frames: int) -> dict[str, dict[str, Any]]:
    """The encoder settings of each stream of ``frames`` frames: the default configuration at 5 kbit/s,
    and a key frame every quarter of the clip (25 frames of 100) with up to 4 references."""
    return {
        "1 ref": {"bitrate_kbps": 5.0},
        "4 refs": {"bitrate_kbps": 5.0, "key_interval": frames // 4, "max_refs": 4},
    }
DEFAULT_CLIP = Path("/work/shared/data/av-eval/hdtf_WDA_AOC_000.mp4")
_KIB = 1 if sys.platform == "darwin" else 1024  # ru_maxrss unit: bytes on macOS, KiB elsewhere


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB: ``VmHWM`` of /proc/self/status where there is one.

    Not ``ru_maxrss`` there: Linux keeps it across ``execve``, so a child started by a parent that had
    coded the streams (1.4 GB with the search) reported the parent's peak, not its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _KIB / 2**20


def cpu_busy_seconds() -> Optional[float]:
    """CPU seconds all processes of the machine have used since boot (/proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def interleaved_ms(items: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Wall times in ms of every item: ``warmup`` untimed calls each, then ``runs`` rounds that time
    each item once, so that a slow spell of the machine touches every item alike."""
    for fn in items.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in items}
    for _ in range(runs):
        for name, fn in items.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def quartiles(values: list[float], scale: float = 1.0) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) of ``values``, divided by ``scale``."""
    q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return q1 / scale, q2 / scale, q3 / scale


# ----------------------------------------------------------------------------------- child process
def stream_motion(data: bytes, channels: int) -> np.ndarray:
    """Parse an .avfc stream and entropy decode its transmitted motion as the decoder does (MOTION and
    MOTION_SPARSE packets, the latter interpolated), every payload in the layout of the stream's own major
    version (2.0 by default); the quantized keypoints of every frame, (T, channels) int."""
    import numpy as np

    from avfc import bitstream as bs
    from avfc.entropy import decode_motion, interpolate_track, sparse_positions

    prev, rows = None, []
    parsed = bs.parse_stream(data)
    for u in parsed.units:
        p = bs.decode_payload(u, parsed.version[0])
        if isinstance(p, (bs.Motion, bs.MotionSparse)):
            intra = bool(int(p.flags) & bs.MOTION_FLAG_INTRA)
            n = int(p.num_frames)
            if isinstance(p, bs.MotionSparse):
                coded = decode_motion(p.data, len(sparse_positions(n, p.stride)), channels, None if intra else prev)
                q = interpolate_track(coded, n, p.stride)
            else:
                q = decode_motion(p.data, n, channels, None if intra else prev)
            prev = q[-1]
            rows.append(q)
    return np.concatenate(rows) if rows else np.zeros((0, channels), np.int64)


def measure(stream_dir: Path, threads: int, runs: int, warmup: int, model_name: str,
            frames_n: int = FRAMES, size: int = SIZE) -> dict[str, Any]:
    """Every measurement with ``threads`` torch threads (run in a fresh process).

    Returns ms per call (per frame for batched items and whole decodes) as (p25, median, p75),
    peak RSS figures and the load average at the start and the end.
    """
    import torch

    torch.set_num_threads(threads)
    import avfc
    from avfc import bitstream as bs
    from avfc.codec.common import KEY_CODEC_NAMES, frames_to_tensor, make_reference
    from avfc.entropy import dequantize
    from avfc.media import decode_intra
    from avfc.models.zoo import load_model

    model = load_model(model_name, size)
    out: dict[str, Any] = {"threads": threads, "load_start": os.getloadavg(), "rss_model_mib": peak_rss_mib()}
    data = {name: (stream_dir / f"{i}.avfc").read_bytes() for i, name in enumerate(STREAMS)}
    decoded = None
    for name, blob in data.items():
        decoded = avfc.decode(blob, keep_motion=True)
        if len(decoded.frames) != frames_n or decoded.issues:
            raise RuntimeError(f"stream {name!r} decoded badly: {decoded.frames.shape}, {decoded.issues}")
    out["rss_decode_mib"] = peak_rss_mib()  # imports, model and one decode of each stream
    assert decoded is not None
    frames, precision = decoded.frames, int(decoded.header.kp_precision)
    kp = torch.from_numpy(dequantize(decoded.motion, precision))

    def parse_and_entropy() -> int:
        return len(stream_motion(data["4 refs"], model.motion_channels))

    got = parse_and_entropy()
    if got != frames_n:
        raise RuntimeError(f"parse + entropy decode of the 4-reference stream gave {got} frames of motion, not "
                           f"{frames_n}: a motion unit type this script does not read?")
    one, batch = frames_to_tensor(frames[:1]), frames_to_tensor(frames[:16])
    parsed = bs.parse_stream(data["4 refs"])
    key_codec = KEY_CODEC_NAMES[int(parsed.header.key_codec)]
    key = next(bs.decode_payload(u, parsed.version[0]) for u in parsed.units if u.type == bs.UnitType.KEY_FRAME)
    assert isinstance(key, bs.KeyFrame)
    interval = frames_n // 4
    refs = [make_reference(model, frames[i], i, precision, torch.device("cpu")) for i in range(0, 4 * interval,
                                                                                             interval)]
    # after every reference: low-delay weights; of 100 frames, frame 90 (distances 90, 65, 40, 15)
    target = min(3 * interval + 15 * interval // 25, frames_n - 8)
    cpu = torch.device("cpu")
    items: dict[str, tuple[Callable[[], object], int]] = {}  # name -> (call, frames per call)
    for name, blob in data.items():
        items[f"decode {name}"] = (lambda blob=blob: avfc.decode(blob), frames_n)
    items["detect B=1"] = (lambda: model.detect(one), 1)
    items["detect B=16 (per frame)"] = (lambda: model.detect(batch), len(batch))
    items["key frame AV1 decode"] = (lambda: decode_intra(key.data, key_codec, size, size), 1)
    items["prepare_reference"] = (lambda: model.prepare_reference(refs[0]), 1)
    items["make_reference"] = (lambda: make_reference(model, frames[0], 0, precision, cpu), 1)
    for r in (1, 2, 4):
        items[f"render {r} ref B=1"] = (lambda use=refs[-r:]: model.render(use, kp[target:target + 1], target), 1)
        items[f"render {r} ref B=8 (per frame)"] = (
            lambda use=refs[-r:]: model.render(use, kp[target:target + 8], target), 8)
    items[f"parse + entropy decode ({frames_n} frames)"] = (parse_and_entropy, 1)
    times = interleaved_ms({name: fn for name, (fn, _) in items.items()}, runs, warmup)
    for name, (_, per) in items.items():
        out[name] = quartiles(times[name], per)
    out["rss_end_mib"] = peak_rss_mib()
    out["load_end"] = os.getloadavg()
    return out


# ---------------------------------------------------------------------------------- parent process
def make_streams(clip: Path, stream_dir: Path, model_name: str, frames: int = FRAMES, size: int = SIZE) -> str:
    """Code the test streams into ``stream_dir`` (the encoder's default format); returns where the frames
    came from."""
    import avfc
    from avfc.media import Media, read_media
    from avfc.media.synthetic import speech_like, talking_face

    if clip.is_file():
        src: Any = read_media(clip, fps=FPS, max_frames=frames)
        what = f"`{clip.name}` (first {frames} frames, face crop to {size}x{size}, its speech)"
    else:
        src = Media.from_arrays(talking_face(frames, size, size), FPS, speech_like(frames / FPS), 16000)
        what = f"a synthetic talking face ({clip} is absent)"
    if src.num_frames < frames:
        raise SystemExit(f"{clip} has only {src.num_frames} frames; {frames} are needed")
    for i, (name, overrides) in enumerate(streams(frames).items()):
        res = avfc.encode(src, max_frames=frames, size=size, model=model_name, **overrides)
        (stream_dir / f"{i}.avfc").write_bytes(res.data)
        version = f"{res.data[4]}.{res.data[5]}"
        what += f"; `{name}`: {len(res.data)} bytes, {res.kbps:.2f} kbit/s, format {version}"
    return what


def wait_for_load(max_load: float, wait_s: float) -> tuple[float, bool]:
    """Wait until the 1-minute load average is below ``max_load``; returns (load, reached)."""
    deadline = time.monotonic() + wait_s
    while True:
        load = os.getloadavg()[0]
        if load < max_load or time.monotonic() >= deadline:
            return load, load < max_load
        print(f"load average {load:.2f} >= {max_load}: waiting", file=sys.stderr, flush=True)
        time.sleep(15)


def report(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown report."""
    cols = [f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}" for r in results]

    def row(label: str, values: list[str]) -> str:
        return f"| {label} | " + " | ".join(values) + " |"

    md = [
        f"## Decode speed on the CPU ({meta['size']}x{meta['size']}, `{meta['model']}`)",
        "",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores visible, shared with other users; Python "
        f"{platform.python_version()}, torch {meta['torch']}.",
        f"- Load average (1, 5, 15 min) before: {meta['load_before']}; after: {meta['load_after']}"
        + (f"; waited for the 1-minute load to drop below {meta['max_load']}: "
           f"{'reached' if meta['load_reached'] else 'NOT reached'} ({meta['load_at_start']:.2f})"
           if meta["max_load"] is not None else "") + ".",
        f"- Streams: {meta['source']}.",
        *([f"- **{meta['busy']} other process{'es' if meta['busy'] > 1 else ''} kept spinning on the CPU** while "
           "measuring (`--busy`): a shared CPU."] if meta.get("busy") else []),
        f"- Each figure is the median of {meta['runs']} timed calls (in brackets: the 25th and 75th "
        f"percentiles) after {meta['warmup']} untimed ones. The calls are interleaved: every round times each "
        "item once, so a slow spell of the machine touches every item alike. Each thread count runs in a "
        "fresh process.",
        "",
        f"### Whole `avfc.decode` ({meta['frames']} frames, every stage)",
        "",
        "| stream | " + " | ".join(f"{c}: fps" for c in cols) + " | " + " | ".join(f"{c}: ms/frame" for c in cols)
        + " |",
        "| --- |" + " --- |" * (2 * len(cols)),
    ]

    def fps(q: list[float]) -> str:  # ms quartiles -> fps median [p25 fps .. p75 fps]
        return f"{1000 / q[1]:.1f} [{1000 / q[2]:.1f}-{1000 / q[0]:.1f}]"

    def ms(q: list[float]) -> str:
        return f"{q[1]:.2f} [{q[0]:.2f}-{q[2]:.2f}]"

    for name in STREAMS:
        key = f"decode {name}"
        md.append(row(name, [fps(r[key]) for r in results] + [ms(r[key]) for r in results]))
    md += ["", "The decoder renders one frame per `render` call; the `B=8` rows below show why (a batch "
           "of 8 frames costs more per frame on this CPU)."]
    md += ["", "### Pieces (ms per call; per frame where it says so)", "",
           "| stage | " + " | ".join(cols) + " | " + " | ".join(f"fps at {c}" for c in cols) + " |",
           "| --- |" + " --- |" * (2 * len(cols))]
    pieces = ["detect B=1", "detect B=16 (per frame)", "key frame AV1 decode", "prepare_reference",
              "make_reference", *[f"render {r} ref B={b}" + (" (per frame)" if b == 8 else "")
                                  for r in (1, 2, 4) for b in (1, 8)],
              f"parse + entropy decode ({meta['frames']} frames)"]
    for p in pieces:
        per_frame = p.startswith(("render", "detect"))
        md.append(row(p, [ms(r[p]) for r in results] + [f"{1000 / r[p][1]:.1f}" if per_frame else "-"
                                                        for r in results]))
    md += ["", "### Peak resident memory (MiB, `VmHWM` of the measuring process)", "",
           "| when | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]
    for key, label in (("rss_model_mib", "after importing avfc and loading the model"),
                       ("rss_decode_mib", "after one whole decode of each stream"),
                       ("rss_end_mib", "at the end, after all the timed calls")):
        md.append(row(label, [f"{r[key]:.0f}" for r in results]))
    md += ["", "Load average inside each process (start -> end, 1 min; it counts the measuring process's own "
           "threads): " + "; ".join(f"{c}: {r['load_start'][0]:.2f} -> {r['load_end'][0]:.2f}"
                                    for c, r in zip(cols, results)) + ".",
           "CPU used by *other* processes while each one ran (all CPU time from /proc/stat minus the measuring "
           "process's own, over its wall time, in cores): "
           + "; ".join(f"{c}: " + (f"{r['others_cores']:.2f} of {meta['cores']} cores over {r['wall_s']:.0f} s"
                                   if r["others_cores"] is not None else "unknown")
                       for c, r in zip(cols, results)) + "."]
    return "\n".join(md) + "\n"


def main() -> int:
    """Run the speed measurement (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--threads", default="2,1", help="torch thread counts, comma separated")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-load", type=float, default=None, help="wait for the 1-min load to drop below")
    parser.add_argument("--wait", type=float, default=900, help="seconds to wait for --max-load at most")
    parser.add_argument("--model", default=None, help="zoo model (default: the zoo's default)")
    parser.add_argument("--busy", type=int, default=0,
                        help="keep N busy processes spinning on the CPU while measuring (a shared CPU)")
    parser.add_argument("--smoke", action="store_true",
                        help="check that the script runs: tiny-test model, 16 synthetic 64x64 frames, 1 thread, "
                             "1 timed call (seconds; the figures mean nothing)")
    parser.add_argument("--frames", type=int, default=FRAMES, help=argparse.SUPPRESS)  # internal: for --smoke
    parser.add_argument("--size", type=int, default=SIZE, help=argparse.SUPPRESS)  # internal: for --smoke
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: measure streams in DIR
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.size, args.model = SMOKE["frames"], SMOKE["size"], SMOKE["model"]
        args.threads, args.runs, args.warmup = SMOKE["threads"], SMOKE["runs"], SMOKE["warmup"]
        args.clip = Path("/nonexistent/smoke")  # synthetic frames, never ../shared
    threads = [int(t) for t in args.threads.split(",")]
    if args.model is None:
        from avfc.models.zoo import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    if args.runs < 1 or args.warmup < 1 or min(threads) < 1:
        parser.error("--runs, --warmup and --threads must be >= 1")
    if args.busy < 0:
        parser.error("--busy must be >= 0")
    if args.child is not None:
        print(json.dumps(measure(args.child, threads[0], args.runs, args.warmup, args.model, args.frames,
                                 args.size)))
        return 0

    import torch

    from avfc.eval.report import cpu_model  # here, not at the top: children measure their own imports

    meta: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                            "runs": args.runs, "warmup": args.warmup, "max_load": args.max_load,
                            "frames": args.frames, "size": args.size, "busy": args.busy}
    spinners: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        meta["model"] = args.model
        meta["source"] = make_streams(args.clip, Path(tmp), args.model, args.frames, args.size)
        if args.max_load is not None:
            meta["load_at_start"], meta["load_reached"] = wait_for_load(args.max_load, args.wait)
        meta["load_before"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        results = []
        for n in threads:
            print(f"measuring with {n} thread(s)", file=sys.stderr, flush=True)
            busy0, own0, t0 = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
            proc = subprocess.run([sys.executable, __file__, "--child", tmp, "--threads", str(n),
                                   "--runs", str(args.runs), "--warmup", str(args.warmup), "--model", args.model,
                                   "--frames", str(args.frames), "--size", str(args.size)],
                                  capture_output=True, text=True, check=False)
            busy1, own1, wall = cpu_busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
            if proc.returncode:
                for sp in spinners:
                    sp.kill()
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
            results[-1]["others_cores"] = (busy1 - busy0 - own) / wall if busy0 is not None and busy1 else None
            results[-1]["wall_s"] = wall
        meta["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        for sp in spinners:
            sp.kill()
            sp.wait()
    md = report(results, meta)
    print(md)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
