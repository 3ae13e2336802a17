"""Lost speech rebuilt from motion, lost motion from speech: the joint model against the plain
concealments, on av-eval.

    python benchmarks/avcc_conceal.py [--model FILE] [--loss 0.2] [--seeds 0,1,2] [--packet-frames 25,5] \
        [--work DIR] [--part audio|motion|both] [--weights ../shared/weights]

Markdown on stdout. Needs /work/shared/data (skips cleanly without it).

Each av-eval clip is encoded once per ``--packet-frames`` with avfc's defaults (5 kbps, Codec2 700C,
one audio unit per packet), then, per seed, every AUDIO unit but the first is removed from the
stream with probability ``--loss`` (packet loss; the motion units all arrive). Each damaged stream
is decoded once, and its lost 700C frames are filled four ways:

* **silence**: the decoder without concealment (``conceal_audio="none"``);
* **repeat**: the last received frame repeated, at most one second (the decoder's default);
* **joint, no motion**: the joint model from the audio around the gap only;
* **joint + motion**: the joint model from the audio around the gap and the decoded keypoints of
  the lost frames (what ``avfc.decode(..., conceal_audio="joint")`` does).

``--part motion`` loses MOTION units instead (same streams, same probability, all audio received)
and scores the frames whose motion was lost, against the source: held still (the decoder's default)
and drawn from the keypoints the joint model samples (``conceal_motion="joint"``), next to the same
frames decoded from the intact stream.

Measures against the clip's original speech: PESQ-WB, STOI, SI-SDR, and against the tokens of the
intact stream on the lost frames: accuracy of each 700C field and the mean absolute error of the
energy index (0..15). Only streams that lost at least one unit count. Also the concealment's speed
(lost frames per second, one thread).

Streams are written in the encoder's default format (2.0 since avfc 0.2); units are cut with the CRC
size of the stream's own major version.

``--smoke``: one synthetic 2-s clip with speech-like audio written to a temporary folder, coded with the
``tiny-test`` model at 64x64, packets of 5 frames, one seed, loss 0.5, both parts; a check that the script runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")


def units(data: bytes) -> list[tuple[int, int, int]]:
    """(type, start, end) of every unit after the 6-byte preamble (CRC-32 in a 1.x stream, CRC-16 in 2.0)."""
    from avfc.bitstream.units import crc_size_of

    crc = crc_size_of(data[4])
    out, pos = [], 6
    while pos < len(data):
        t, p, length, shift = data[pos], pos + 1, 0, 0
        while True:
            b = data[p]
            length |= (b & 0x7F) << shift
            p += 1
            shift += 7
            if not b & 0x80:
                break
        end = p + length + crc
        out.append((t, pos, end))
        pos = end
    return out


def drop_audio(data: bytes, loss: float, rng: np.random.Generator,
               unit_types: tuple[int, ...] = (0x04,)) -> tuple[bytes, int]:
    """The stream without some of its units of ``unit_types`` (AUDIO by default; never the first) and
    how many went."""
    kept, dropped, seen = [data[:6]], 0, 0
    for t, a, b in units(data):
        if t in unit_types:
            seen += 1
            if seen > 1 and rng.random() < loss:
                dropped += 1
                continue
        kept.append(data[a:b])
    return b"".join(kept), dropped


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a conceal.* safetensors file to measure instead of the shipped one")
    ap.add_argument("--set", default="av-eval")
    ap.add_argument("--loss", type=float, default=0.2, help="probability that an audio unit is lost")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--packet-frames", default="25,5", help="frames per packet (one audio unit each)")
    ap.add_argument("--max-frames", type=int, default=250)
    ap.add_argument("--bitrate", type=float, default=5.0)
    ap.add_argument("--work", help="folder to keep the encoded streams in between runs")
    ap.add_argument("--part", choices=["audio", "motion", "both"], default="audio",
                    help="audio: lose AUDIO units (above); motion: lose MOTION units and compare holding the last "
                         "frame with frames drawn from the joint model's keypoints (PSNR; LPIPS-Alex with --weights; "
                         "uses the streams the audio part kept in --work)")
    ap.add_argument("--weights", help="folder of the LPIPS weights (../shared/weights)")
    ap.add_argument("--encoder-model", default=None, help="zoo model the clips are coded with (default: the "
                                                          "encoder's)")
    ap.add_argument("--size", type=int, default=256, help="coded width = height (default 256)")
    ap.add_argument("--smoke", action="store_true",
                    help="one synthetic clip, tiny-test at 64x64, both parts: a check that the script runs")
    args = ap.parse_args(argv)
    if args.smoke:
        from avfc.media.synthetic import write_clip

        args.encoder_model, args.packet_frames, args.seeds, args.loss = "tiny-test", "5", "0", 0.5
        args.max_frames, args.part, args.weights, args.set = 50, "both", None, "a synthetic clip (--smoke)"
        args.size = 64
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "clips"
            folder.mkdir()
            write_clip(folder / "synthetic.mp4", n=50, width=96, height=96)
            args.work = str(Path(tmp) / "work")
            return run(args, folder)
    folder = DATA / args.set
    if not folder.is_dir():
        print(f"no data at {folder}: skipped")
        return 0
    return run(args, folder)


def run(args: argparse.Namespace, folder: Path) -> int:
    """Measure on the clips of ``folder`` (see the module doc)."""
    import torch
    from safetensors.numpy import load_file

    import avfc
    from avfc.avcc.conceal import DEFAULT_STEPS, JointConcealer, concealer_for
    from avfc.avcc.tokens import fields_array, join_700c
    from avfc.audio import make_audio_codec_by_name
    from avfc.codec.decoder import REPEAT_MAX_SECONDS, Decoder, repeat_lost
    from avfc.eval.audio_metrics import pesq_wb, si_sdr, stoi
    from avfc.eval.bench import find_clips, load_reference
    from avfc.media import Media

    torch.set_num_threads(1)
    concealer = JointConcealer.from_arrays(load_file(args.model)) if args.model else concealer_for("mrdac-cpu-v2", 5)
    if concealer is None:
        print("no concealment model shipped for mrdac-cpu-v2: give --model")
        return 1
    codec = make_audio_codec_by_name("codec2", 700)
    methods = ["silence", "repeat", "joint, no motion", "joint + motion"]
    print(f"# Concealment on {args.set}: units lost with p = {args.loss}, seeds {args.seeds}\n")
    for pf in [int(x) for x in args.packet_frames.split(",")] if args.part != "motion" else []:
        res = {m: {"pesq": [], "stoi": [], "sisdr": [], "acc": [], "emae": []} for m in methods}
        lost_total, streams, t_conceal = 0, 0, 0.0
        for path in find_clips(folder):
            ref = load_reference(path, size=args.size, max_frames=args.max_frames)
            size_tag = f"-{args.size}" if args.size != 256 else ""  # cached streams of 256x256 keep their names
            if ref.audio is None:
                continue
            media = Media.from_arrays(ref.frames, ref.fps, ref.audio, 16000)
            cached = (Path(args.work) / f"{path.stem}-{pf}-{args.bitrate:g}-{args.max_frames}{size_tag}.avfc"
                      if args.work else None)
            if cached is not None and cached.is_file():
                stream = cached.read_bytes()
            else:
                model = {"model": args.encoder_model} if args.encoder_model else {}
                stream = avfc.encode(media, bitrate_kbps=args.bitrate, size=int(ref.frames.shape[1]), fps=ref.fps,
                                     crop="none", packet_frames=pf, **model).data
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_bytes(stream)
            intact = Decoder(conceal_audio="none")
            intact.push(stream)
            intact.close()
            truth = intact.audio_tokens
            for seed in [int(s) for s in args.seeds.split(",")]:
                data, dropped = drop_audio(stream, args.loss, np.random.default_rng([seed, pf, len(stream)]))
                if not dropped:
                    continue
                dec = Decoder(conceal_audio="none")
                dec.push(data)
                dec.close()
                n_frames, n_samples = int(dec.end.audio_frame_count), int(dec.end.audio_samples)
                tokens = [dec.audio_tokens.get(i) for i in range(n_frames)]
                lost = [i for i, t in enumerate(tokens) if t is None]
                lost_total += len(lost)
                streams += 1
                fields = np.full((n_frames, 4), -1, np.int64)
                for i, t in enumerate(tokens):
                    if t is not None:
                        fields[i] = fields_array([t])[0]
                offsets, known = dec.lips_offsets(n_frames, concealer.net.meta.channels)
                outs = {"silence": tokens}
                outs["repeat"] = repeat_lost(tokens, REPEAT_MAX_SECONDS * 25)
                for name, kn in (("joint, no motion", np.zeros_like(known)), ("joint + motion", known)):
                    t0 = time.perf_counter()
                    filled = concealer.conceal(fields, offsets, kn, DEFAULT_STEPS)
                    if name == "joint + motion":
                        t_conceal += time.perf_counter() - t0
                    outs[name] = [tokens[i] if tokens[i] is not None else join_700c(tuple(int(v) for v in filled[i]))
                                  for i in range(n_frames)]
                true_f = fields_array([truth[i] for i in lost])
                for name, toks in outs.items():
                    pcm = codec.decode(toks, n_samples)
                    r = ref.audio[:len(pcm)]
                    res[name]["pesq"].append(pesq_wb(r, pcm[:len(r)], 16000))
                    res[name]["stoi"].append(stoi(r, pcm[:len(r)], 16000))
                    res[name]["sisdr"].append(si_sdr(r, pcm[:len(r)]))
                    got = [toks[i] for i in lost]
                    if any(g is None for g in got):
                        res[name]["acc"].append([np.nan] * 4)
                        res[name]["emae"].append(np.nan)
                    else:
                        gf = fields_array(got)
                        res[name]["acc"].append(list((gf == true_f).mean(axis=0)))
                        res[name]["emae"].append(float(np.abs(gf[:, 2] - true_f[:, 2]).mean()))
            print(f"  {path.stem}: done", file=sys.stderr, flush=True)
        print(f"## {pf} frames per packet ({pf * 40} ms audio units): {streams} damaged streams, {lost_total} lost "
              f"700C frames\n")
        print("| concealment | PESQ-WB | STOI | SI-SDR (dB) | vq1 / vq2 / energy / pitch accuracy | energy MAE |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in methods:
            r = res[name]
            a = np.array(r["acc"], dtype=float)
            acc = [np.nan] * 4 if not len(a) or np.isnan(a).all() else np.nanmean(a, axis=0)
            emae = "-" if np.all(np.isnan(r["emae"])) else f"{np.nanmean(r['emae']):.2f}"
            print(f"| {name} | {np.mean(r['pesq']):.3f} | {np.mean(r['stoi']):.3f} | {np.mean(r['sisdr']):.2f} | "
                  + " / ".join("-" if np.isnan(a) else f"{a:.2f}" for a in acc) + f" | {emae} |")
        if lost_total:
            print(f"\nJoint concealment speed: {lost_total / max(t_conceal, 1e-9):.0f} lost frames/s "
                  f"({DEFAULT_STEPS} steps, one thread).\n")
    if args.part in ("motion", "both"):
        motion_loss(args, folder)
    return 0


def motion_loss(args, folder: Path) -> None:
    """Lost MOTION units: the last frame held against frames drawn from the joint model's keypoints."""
    import torch

    from avfc.codec.decoder import Decoder
    from avfc.eval.bench import find_clips, load_reference
    from avfc.eval.metrics import psnr

    lp = None
    if args.weights:
        from avfc.eval.perceptual import LPIPS

        lp = LPIPS("alex", args.weights)

    def tens(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255

    print(f"## Lost motion: MOTION units lost with p = {args.loss} (audio all received)\n")
    for pf in [int(x) for x in args.packet_frames.split(",")]:
        res = {m: {"psnr": [], "lpips": []} for m in ("intact", "hold", "joint")}
        n_lost, t_joint = 0, 0.0
        for path in find_clips(folder):
            size_tag = f"-{args.size}" if args.size != 256 else ""
            cached = (Path(args.work) / f"{path.stem}-{pf}-{args.bitrate:g}-{args.max_frames}{size_tag}.avfc"
                      if args.work else None)
            if cached is None or not cached.is_file():
                continue  # the audio part of the run encodes and keeps them
            stream = cached.read_bytes()
            ref = load_reference(path, size=args.size, max_frames=args.max_frames)
            for seed in [int(s) for s in args.seeds.split(",")]:
                # MOTION or MOTION_SPARSE (the rate control may send every 2nd or 3rd frame's keypoints)
                data, dropped = drop_audio(stream, args.loss, np.random.default_rng([seed, pf, 7]), (0x03, 0x08))
                if not dropped:
                    continue
                outs = {}
                for mode, src in (("intact", stream), ("hold", data), ("joint", data)):
                    dec = Decoder(conceal_motion="joint" if mode == "joint" else "hold")
                    t0 = time.perf_counter()
                    dec.push(src)
                    dec.close()
                    if mode == "joint":
                        t_joint += time.perf_counter() - t0
                    outs[mode] = (dec, dec.pull_frames())
                lost = sorted(i for iss in outs["hold"][0].issues if iss.kind == "lost_motion" and iss.frames
                              for i in range(*iss.frames))
                if not lost:
                    continue
                n_lost += len(lost)
                for mode, (_, frames) in outs.items():
                    res[mode]["psnr"].append(float(np.mean(psnr(ref.frames[lost], frames[lost]).per_frame)))
                    if lp is not None:
                        with torch.no_grad():
                            res[mode]["lpips"].append(lp(tens(ref.frames[lost]), tens(frames[lost])).mean().item())
        print(f"### {pf} frames per packet: {n_lost} frames with lost motion\n")
        print("| frames with lost motion drawn by | PSNR (dB) | LPIPS-Alex |")
        print("| --- | --- | --- |")
        for mode, label in (("intact", "nothing lost (the same frames decoded from the intact stream)"),
                            ("hold", "hold the last frame (default)"), ("joint", "joint model's keypoints")):
            lpv = f"{np.mean(res[mode]['lpips']):.3f}" if res[mode]["lpips"] else "-"
            print(f"| {label} | {np.mean(res[mode]['psnr']):.2f} | {lpv} |")
        print()


if __name__ == "__main__":
    sys.exit(main())
