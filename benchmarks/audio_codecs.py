"""Speech quality per bit of avfc's audio codecs on real speech.

Encodes and decodes every ``*.wav`` in ``--data`` (default ``/work/shared/data/speech-eval``,
read only; stereo is averaged to mono, other rates are resampled to 16 kHz with PyAV)
through each Codec2 mode and several Opus bitrates, and prints per mode:

* ``token bps``: :func:`avfc.audio.bitrate_bps`, the exact token payload rate;
* ``unit bps``: the bytes ``pack`` writes when the tokens are cut into 1 s AUDIO units
  (25 frames of 40 ms; Codec2 3200: 50 of 20 ms), over the signal's duration (includes
  the zero-padded last frame and Opus's length byte per unit, not the container's headers);
* PESQ-WB (``pesq`` package) and STOI (``pystoi``), when those are installed, against the
  16 kHz mono reference; the decoded signal is not re-aligned (the codecs compensate their
  own delay, so STOI, which does not align, sees any residual misalignment);
* encode and decode speed as multiples of real time (one CPU thread).

The script exits cleanly when the folder is absent or empty.

Run: ``python benchmarks/audio_codecs.py [--data DIR] [--opus 6000,8000,12000,16000,24000]``
``--smoke``: one 2-s synthetic speech-like signal at 22.05 kHz (resampled like a real file) written to a
temporary folder, every Codec2 mode and Opus at 8 kbit/s; a check that the script runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from avfc.audio import SAMPLE_RATE, AudioCodec, CodecId, bitrate_bps, make_audio_codec_by_name, split_packets

CODEC2_MODES = ("700C", "1300", "1600", "3200")


def load_speech(path: Path) -> np.ndarray:
    """A wav file as 16 kHz mono float32."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr == SAMPLE_RATE:
        return x.astype(np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
    frame.sample_rate = sr
    out = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out]).astype(np.float32)


def metrics(ref: np.ndarray, deg: np.ndarray) -> dict[str, float]:
    """PESQ-WB and STOI where the packages are installed."""
    out: dict[str, float] = {}
    try:
        from pesq import pesq

        out["pesq"] = float(pesq(SAMPLE_RATE, ref, deg, "wb"))
    except ImportError:
        pass
    try:
        from pystoi import stoi

        out["stoi"] = float(stoi(ref, deg, SAMPLE_RATE, extended=False))
    except ImportError:
        pass
    return out


def run_codec(codec: AudioCodec, signals: list[np.ndarray]) -> dict[str, float]:
    """Mean figures of one codec over all signals."""
    per_unit = max(1, round(SAMPLE_RATE / codec.frame_samples))  # frames in 1 s
    unit_bits = 0
    seconds = 0.0
    enc_time = dec_time = 0.0
    scores: dict[str, list[float]] = {}
    for x in signals:
        t0 = time.perf_counter()
        tokens = codec.encode(x)
        t1 = time.perf_counter()
        y = codec.decode(tokens, len(x))
        t2 = time.perf_counter()
        enc_time += t1 - t0
        dec_time += t2 - t1
        seconds += len(x) / SAMPLE_RATE
        unit_bits += sum(8 * len(codec.pack(toks)) for _, toks in split_packets(tokens, per_unit))
        for k, v in metrics(x, y).items():
            scores.setdefault(k, []).append(v)
    row = {"token_bps": bitrate_bps(codec), "unit_bps": unit_bits / seconds,
           "enc_x": seconds / enc_time, "dec_x": seconds / dec_time}
    row.update({k: statistics.mean(v) for k, v in scores.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/speech-eval"))
    parser.add_argument("--opus", default="6000,8000,12000,16000,24000",
                        help="comma-separated Opus bitrates in bit/s")
    parser.add_argument("--smoke", action="store_true",
                        help="one 2-s synthetic signal, Opus at 8 kbit/s only: a check that the script runs")
    args = parser.parse_args()
    if args.smoke:
        from avfc.media.io import write_wav
        from avfc.media.synthetic import speech_like

        with tempfile.TemporaryDirectory() as tmp:
            args.data, args.opus = Path(tmp), "8000"
            write_wav(args.data / "synthetic.wav", speech_like(2.0, 22050), 22050)
            run(args)
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    """Measure every codec on the wav files of ``args.data``."""
    files = sorted(args.data.glob("*.wav")) if args.data.is_dir() else []
    if not files:
        print(f"no speech files under {args.data}: nothing to measure")
        return
    signals = [load_speech(f) for f in files]
    total = sum(len(x) for x in signals) / SAMPLE_RATE
    print(f"{len(files)} files, {total:.1f} s of speech from {args.data}")
    codecs = [make_audio_codec_by_name("codec2", m) for m in CODEC2_MODES]
    codecs += [make_audio_codec_by_name("opus", int(b)) for b in args.opus.split(",")]
    print(f"{'codec':<14}{'token bps':>10}{'unit bps':>10}{'PESQ-WB':>9}{'STOI':>7}"
          f"{'enc xRT':>9}{'dec xRT':>9}")
    for codec in codecs:
        r = run_codec(codec, signals)
        name = f"opus {codec.param}" if codec.codec_id == CodecId.OPUS else f"codec2 {codec.param}"
        name = name.replace("codec2 700", "codec2 700C")
        print(f"{name:<14}{r['token_bps']:>10.0f}{r['unit_bps']:>10.0f}{r.get('pesq', float('nan')):>9.3f}"
              f"{r.get('stoi', float('nan')):>7.3f}{r['enc_x']:>9.0f}{r['dec_x']:>9.0f}")


if __name__ == "__main__":
    main()
