"""Rate of Codec2 700C tokens coded raw vs by the AUDIO_CTX context model, on held-out speech.

For every file of ``--data`` (default: ``speech-eval/*.wav`` and the audio of ``av-eval/``
videos of the shared data, read only), the speech is coded with avfc's Codec2 700C, the tokens
are cut into packets of ``--packet-frames`` (25 = one second, as in AUDIO units) and each
packet is coded with :class:`avfc.avcc.audio_ctx.AudioContextModel`; decoding every packet
must give back exactly the original tokens (asserted). Prints markdown tables:

* per file and in total: frames, raw bit/s (28 bits per 40 ms frame = 700; ``pack`` pads
  each unit to whole bytes: ``unit bps``), context-model bit/s (the packets' bytes, rANS flush
  included, over the duration), the saving;
* per field in total: the ideal code length of each table kind (sum of ``-log2 p``) per frame,
  i.e. where the bits go.

The model is ``--model FILE`` (safetensors written by ``python -m avfc.train.audio_ctx``); the
default is to train one in process on the shared ``speech/`` and ``av/`` folders (never on the
evaluation folders). Exits cleanly when the data folder is absent.

Run: ``python benchmarks/avcc_audio.py [--model FILE] [--data DIR ...] [--packet-frames 25]``

``--motion FILE [FILE ...]``: motion-conditioned models (``python -m avfc.train.audio_motion``, issue
21) against today's context coder on the av-eval clips (``--data``, default ``av-eval/``): the tokens
and keypoints the encoder has (:func:`avfc.train.avcc_data.load_clip` with ``--kp-model``, default
``mrdac-cpu-v3``, ``--kp-precision`` 5 and ``--kp-hysteresis`` 0.3 as the encoder), every 25-frame
packet coded with the base model (the bundle ``--base``, default ``avcc-mrdac-cpu-v2``, the
encoder's for that model) and with each conditioned model at the levels of
:mod:`avfc.avcc.motion_ctx`; every packet must decode to the same tokens (asserted). Prints bit/s
per clip and in total, and the ideal code length per table kind.

``--smoke``: the shipped bundle's audio model (``avcc-mrdac-cpu-v1``) on one 2-s synthetic speech-like
signal written to a temporary folder; a check that the script runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from avfc.avcc.audio_ctx import KINDS, AudioContextModel, walk_packet
from avfc.avcc.tokens import split_700c
from avfc.train.audio_ctx import default_folders, file_tokens, media_files, train_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FRAME_SECONDS = 0.04


def load_model(path: Optional[Path]) -> AudioContextModel:
    """The model of ``path``, or one trained now on the shared training folders."""
    if path is not None:
        from safetensors.numpy import load_file

        return AudioContextModel.from_arrays(load_file(str(path)))
    seqs = [file_tokens(p) for p in media_files(default_folders())]
    return train_model(seqs)[0]


def field_bits(model: AudioContextModel, tokens: list[int], packet_frames: int,
               levels: Optional[list[int]] = None) -> np.ndarray:
    """Ideal code length (bits) of each table kind over the packets of ``tokens`` (``levels``: the
    motion level of every token, for a conditioned model)."""
    arrays = model.to_arrays()
    tables = [arrays["audio." + name].astype(np.float64) for name, _, _ in KINDS]
    out = np.zeros(len(KINDS))

    def step(kind: int, ctx: int, value: Optional[int]) -> int:
        assert value is not None
        out[kind] += np.log2(tables[kind][ctx].sum() / tables[kind][ctx, value + 1])
        return value

    fields = [split_700c(t) for t in tokens]
    for start in range(0, len(fields), packet_frames):
        chunk = fields[start:start + packet_frames]
        motion = None if levels is None else levels[start:start + packet_frames]
        walk_packet(len(chunk), step, chunk, motion, model.motion_levels)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the tables."""
    parser = argparse.ArgumentParser(description="AUDIO_CTX rate vs raw Codec2 700C")
    parser.add_argument("--model", type=Path, help="trained model (.safetensors)")
    parser.add_argument("--data", nargs="+", type=Path,
                        default=[SHARED / "speech-eval", SHARED / "av-eval"])
    parser.add_argument("--packet-frames", type=int, default=25)
    parser.add_argument("--motion", nargs="+", type=Path, help="motion-conditioned models to compare")
    parser.add_argument("--base", default="avcc-mrdac-cpu-v2", help="--motion: bundle of today's coder")
    parser.add_argument("--kp-model", default="mrdac-cpu-v3", help="--motion: model whose keypoints are sent")
    parser.add_argument("--kp-precision", type=int, default=5, help="--motion: keypoint grid (encoder default 5)")
    parser.add_argument("--kp-hysteresis", type=float, default=0.3, help="--motion: dead zone (encoder default 0.3)")
    parser.add_argument("--smoke", action="store_true",
                        help="the shipped bundle's model on one synthetic signal: a check that the script runs")
    args = parser.parse_args(argv)
    if args.smoke:
        from avfc.avcc.zoo import load_avcc
        from avfc.media.io import write_wav
        from avfc.media.synthetic import speech_like

        with tempfile.TemporaryDirectory() as tmp:
            args.data = [Path(tmp)]
            write_wav(Path(tmp) / "synthetic.wav", speech_like(2.0), 16000)
            return run(args, load_avcc("avcc-mrdac-cpu-v1").audio)
    if args.motion:
        if args.data == [SHARED / "speech-eval", SHARED / "av-eval"]:
            args.data = [SHARED / "av-eval"]
        if not all(d.is_dir() for d in args.data):
            print(f"skipped: data folders {[str(d) for d in args.data]} not all present")
            return 0
        return run_motion(args)
    if not all(d.is_dir() for d in args.data):
        print(f"skipped: data folders {[str(d) for d in args.data]} not all present")
        return 0
    return run(args, load_model(args.model))


def run(args: argparse.Namespace, model: AudioContextModel) -> int:
    """Code every file of ``args.data`` with ``model`` and print the tables."""
    unit_bytes = -(-args.packet_frames * 28 // 8)
    print("| file | frames | raw bps | unit bps | ctx bps | saving | enc ms | dec ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    tot_frames = tot_bytes = tot_unit = 0
    tot_fields = np.zeros(len(KINDS))
    enc_s = dec_s = 0.0
    for path in media_files(args.data):
        tokens = file_tokens(path)
        n_bytes = unit = 0
        t_enc = t_dec = 0.0
        for start in range(0, len(tokens), args.packet_frames):
            packet = tokens[start:start + args.packet_frames]
            t0 = time.perf_counter()
            data = model.encode(packet)
            t1 = time.perf_counter()
            back = model.decode(data, len(packet))
            t_dec += time.perf_counter() - t1
            t_enc += t1 - t0
            assert back == packet, f"{path.name}: decoded tokens differ at packet {start}"
            n_bytes += len(data)
            unit += -(-len(packet) * 28 // 8) if len(packet) < args.packet_frames else unit_bytes
        seconds = len(tokens) * FRAME_SECONDS
        bps = 8 * n_bytes / seconds
        print(f"| {path.parent.name}/{path.name} | {len(tokens)} | 700 | {8 * unit / seconds:.0f} | "
              f"{bps:.0f} | {100 * (1 - bps / 700):.1f}% | {1000 * t_enc:.0f} | {1000 * t_dec:.0f} |")
        tot_frames += len(tokens)
        tot_bytes += n_bytes
        tot_unit += unit
        tot_fields += field_bits(model, tokens, args.packet_frames)
        enc_s += t_enc
        dec_s += t_dec
    seconds = tot_frames * FRAME_SECONDS
    bps = 8 * tot_bytes / seconds
    print(f"| **total** | {tot_frames} | 700 | {8 * tot_unit / seconds:.0f} | {bps:.0f} | "
          f"{100 * (1 - bps / 700):.1f}% | {1000 * enc_s:.0f} | {1000 * dec_s:.0f} |")
    print()
    print("| field | raw bits/frame | ideal ctx bits/frame |")
    print("| --- | --- | --- |")
    raw = {"energy": 4, "pitch": 6, "vq1": 9, "vq2": 9}
    for (name, _, _), bits in zip(KINDS, tot_fields):
        print(f"| {name} | {raw.get(name, 0)} | {bits / tot_frames:.3f} |")
    print(f"| all | 28 | {tot_fields.sum() / tot_frames:.3f} |")
    print()
    print(f"{tot_frames} frames ({seconds:.1f} s); every packet decoded to the original tokens; "
          f"encode {tot_frames / enc_s:.0f} frames/s, decode {tot_frames / dec_s:.0f} frames/s")
    return 0


def run_motion(args: argparse.Namespace) -> int:
    """Today's context coder against motion-conditioned ones on aligned clips; print the tables."""
    from avfc.avcc.motion_ctx import packet_levels
    from avfc.avcc.tokens import join_700c
    from avfc.avcc.zoo import load_avcc
    from avfc.train.audio_motion import load as load_motion
    from avfc.train.avcc_data import find_clips, load_clip

    base = load_avcc(args.base).audio
    models = [load_motion(p) for p in args.motion]
    names = [p.stem for p in args.motion]
    print("| clip | frames | " + " | ".join(["today bps"] + [f"{n} bps" for n in names]) + " |")
    print("| --- | --- | " + " | ".join(["---"] * (1 + len(names))) + " |")
    tot_frames, tot = 0, np.zeros(1 + len(models))
    ideal = np.zeros((1 + len(models), len(KINDS)))
    for folder in args.data:
        for path in find_clips(folder):
            clip = load_clip(path, args.kp_model, precision=args.kp_precision, hysteresis=args.kp_hysteresis)
            tokens = [join_700c(tuple(int(v) for v in row)) for row in clip.fields]  # type: ignore[arg-type]
            n_bytes = np.zeros(1 + len(models))
            for start in range(0, len(tokens), args.packet_frames):
                packet = tokens[start:start + args.packet_frames]
                data = base.encode(packet)
                assert base.decode(data, len(packet)) == packet
                n_bytes[0] += len(data)
                for i, (model, thresholds) in enumerate(models):
                    levels = packet_levels(clip.q, start, len(packet), thresholds)
                    data = model.encode(packet, levels)
                    assert model.decode(data, len(packet), levels) == packet, f"{path.name}: packet {start}"
                    n_bytes[1 + i] += len(data)
            ideal[0] += field_bits(base, tokens, args.packet_frames)
            for i, (model, thresholds) in enumerate(models):
                levels = [m for s in range(0, len(tokens), args.packet_frames)
                          for m in packet_levels(clip.q, s, len(tokens[s:s + args.packet_frames]), thresholds)]
                ideal[1 + i] += field_bits(model, tokens, args.packet_frames, levels)
            bps = 8 * n_bytes / (len(tokens) * FRAME_SECONDS)
            print(f"| {path.name} | {len(tokens)} | " + " | ".join(f"{b:.1f}" for b in bps) + " |")
            tot_frames += len(tokens)
            tot += n_bytes
    bps = 8 * tot / (tot_frames * FRAME_SECONDS)
    cells = [f"**{bps[0]:.1f}**"] + [f"**{b:.1f}** ({100 * (b / bps[0] - 1):+.2f} %)" for b in bps[1:]]
    print(f"| **total** | {tot_frames} | " + " | ".join(cells) + " |")
    print()
    print("| ideal bits/frame | " + " | ".join(name for name, _, _ in KINDS) + " | all |")
    print("| --- | " + " | ".join(["---"] * (len(KINDS) + 1)) + " |")
    for name, row in zip(["today"] + names, ideal / tot_frames):
        print(f"| {name} | " + " | ".join(f"{b:.3f}" for b in row) + f" | {row.sum():.3f} |")
    print(f"\n{tot_frames} frames ({tot_frames * FRAME_SECONDS:.1f} s); every packet decoded to the same tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
