"""The ``avfc`` command: encode, decode, info, models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from avfc import __version__
from avfc.config import DEFAULT_EFFORT, SEARCH_LAMBDA_5KBPS, SEARCH_PERCEPTUAL_WEIGHT
from avfc.errors import AvfcError, ConfigError, FileAccessError
from avfc.paths import check_writable

EPILOG = """examples:
  avfc encode talk.mp4 -o talk.avfc --bitrate 4
  avfc decode talk.avfc -o talk.decoded.mp4
  avfc info talk.avfc --json
  cat talk.mp4 | avfc encode - - | avfc decode - - | ffplay -   (- is stdin / stdout)

exit status: 0 done, 2 error (one line on stderr), 130 interrupted, 141 the reader of the
output went away (e.g. `avfc info --json x.avfc | head -1`; nothing more is written)
"""

#: the exit status when stdout's reader has gone away: 128 + SIGPIPE, as a shell reports a
#: program that a closed pipe ends (`yes | head -1`), so `set -o pipefail` scripts see the
#: output was cut short
EXIT_BROKEN_PIPE = 141

#: the suffixes `avfc decode` writes (those of avfc.api.write_decoded), checked before decoding
DECODE_SUFFIXES = (".mp4", ".mkv", ".mov", ".wav")


def _progress_bar(enabled: bool) -> tuple[Optional[Callable[[str, int, int], None]], Callable[[], None]]:
    """A tqdm-backed progress callback (one bar per stage) and a function that closes it."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="frame", leave=False, file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)

    def close() -> None:
        for b in bars.values():
            b.close()

    return update, close


#: the name that stands for stdin (as an input) or stdout (as an output)
STDIO = "-"


class _Stdout:
    """stdout's binary buffer for an output ``-``, noting when its reader goes away: the layers below
    turn a failed write into their own errors, and the command then exits as for a closed pipe."""

    name = "<stdout>"
    used = False  # this command writes its data to stdout (its own lines go to stderr)
    gone = False  # a write failed because the reader went away

    def __init__(self) -> None:
        if sys.stdout.isatty():
            raise ConfigError("refusing to write binary data to a terminal: redirect stdout or give an output file")
        self._raw = sys.stdout.buffer
        _Stdout.used = True

    def write(self, data: bytes) -> int:
        try:
            return self._raw.write(data)
        except BrokenPipeError:
            _Stdout.gone = True
            raise

    def flush(self) -> None:
        try:
            self._raw.flush()
        except BrokenPipeError:
            _Stdout.gone = True
            raise


def _output_arg(args: argparse.Namespace) -> Optional[str]:
    """The output named by ``-o`` or by the second positional argument (not both)."""
    if args.output is not None and args.output_pos is not None:
        raise ConfigError(f"two outputs given ({args.output_pos} and -o {args.output}): give one")
    return args.output if args.output is not None else args.output_pos


def _messages() -> Any:
    """Where the command's own lines go: stderr when stdout carries the data."""
    return sys.stderr if _Stdout.used else sys.stdout


def _stdin_bytes() -> bytes:
    try:
        return sys.stdin.buffer.read()
    except OSError as e:
        raise FileAccessError(f"cannot read stdin: {e.strerror or e}") from None


def _check_input(path: Path) -> None:
    """Refuse an input that cannot be read, before any work starts."""
    if not path.exists():
        raise FileAccessError(f"{path}: no such file")
    if path.is_dir():
        raise FileAccessError(f"{path} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise FileAccessError(f"cannot read {path}: permission denied")


def _check_output(path: Path, force: bool) -> None:
    """Refuse an output that could not be written, before any work starts (an encode takes minutes)."""
    if path.is_dir():
        raise FileAccessError(f"{path} is a directory; give the output file's name with -o")
    if path.exists() and not force:
        raise FileAccessError(f"{path} exists; use -y (or -f) to overwrite it")
    check_writable(path)


def cmd_encode(args: argparse.Namespace) -> int:
    import tempfile

    from avfc.api import encode

    output = _output_arg(args)
    if args.input == STDIO and output is None:
        raise ConfigError("encoding stdin: give the output file (or - for stdout)")
    src = Path(args.input)
    dst: Any = _Stdout() if output == STDIO else Path(output) if output else src.with_suffix(".avfc")
    if args.input != STDIO:
        _check_input(src)
    if isinstance(dst, Path):
        _check_output(dst, args.force)
    perceptual = None
    if args.search_weights is not None:  # the weights are read now: a bad path fails before any work
        from avfc.eval.perceptual import search_term

        perceptual = search_term(args.search_weights, args.search_metric)
    with tempfile.TemporaryDirectory(prefix="avfc-stdin-") as tmp:
        if args.input == STDIO:  # the crop's face pass reads the input twice: stdin is kept on disk
            src = Path(tmp) / "stdin"
            _spool_stdin(src)
        return _encode(args, encode, src, dst, perceptual)


def _spool_stdin(path: Path) -> None:
    import shutil

    try:
        with open(path, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    except OSError as e:
        raise FileAccessError(f"cannot read stdin into {path}: {e.strerror or e}") from None


def _encode(args: argparse.Namespace, encode: Callable[..., Any], src: Path, dst: Any, perceptual: Any) -> int:
    overrides = dict(
        model=args.model, bitrate_kbps=args.bitrate, rate_control=args.rate_control, threads=args.threads,
        audio=args.audio, codec2_mode=args.codec2_mode,
        opus_bitrate=args.opus_bitrate, key_codec=args.key_codec, key_qp=args.key_qp,
        key_interval=args.key_interval, max_frames=args.frames, crop=args.crop,
        key_policy=args.key_policy, key_drop_db=args.key_drop_db, key_min_distance=args.key_min_distance,
        reference_mode=args.reference_mode, max_refs=args.max_refs, first_key=args.first_key,
        place_keys=args.place_keys,
        packet_frames=args.packet_frames, kp_precision=args.kp_precision, kp_hysteresis=args.kp_hysteresis,
        motion_stride=args.motion_stride, motion_share=args.motion_share, motion_hold=args.motion_hold,
        motion_hold_margin=args.hold_margin,
        effort=args.effort,
        search_lambda=args.search_lambda, search_perceptual_weight=args.search_perceptual_weight,
        format_major=args.format,
        size=args.size, fps=args.fps,
        audio_coder=args.audio_coder, motion_source=args.motion_source, avcc=args.avcc,
        lips_model=args.lips_model, diffusion_steps=args.diffusion_steps, diffusion_seed=args.diffusion_seed,
        refresh_interval=args.refresh_interval, adapt_decoder=args.adapt_decoder or None,
    )
    progress, done = _progress_bar(not args.quiet and sys.stderr.isatty() or args.progress)
    try:
        res = encode(src, dst, progress=progress, search_device=args.device, search_perceptual=perceptual,
                     **overrides)
    finally:
        done()
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not args.quiet:
        parts = ", ".join(f"{k} {v * 8 / 1000 / res.duration:.2f}" for k, v in sorted(res.stats.bytes_by_type.items()))
        nth = {2: "2nd", 3: "3rd"}.get(res.motion_stride, f"{res.motion_stride}th")
        sparse = f"; keypoints of every {nth} frame" if res.motion_stride > 1 else ""
        name = dst.name if isinstance(dst, _Stdout) else dst
        print(f"{name}: {res.frames} frames, {res.duration:.2f} s, {len(res.data)} bytes, "
              f"{res.kbps:.2f} kbps ({parts} kbps{sparse})", file=_messages())
        if res.packets_by_choice:
            sent = ", ".join(f"{k} {v}" for k, v in sorted(res.packets_by_choice.items()))
            print(f"effort {res.effort}: motion packets sent as {sent}", file=_messages())
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from avfc.api import decode

    output = _output_arg(args)
    if args.input == STDIO and output is None:
        raise ConfigError("decoding stdin: give the output file (or - for stdout)")
    src: Any = Path(args.input)
    dst: Any = Path(output) if output and output != STDIO else src.with_suffix(".decoded.mp4")
    if output == STDIO:
        dst = None  # (opened below, after the checks)
    elif args.output_format is not None:
        raise ConfigError("--output-format is for stdout (-): a file's suffix says its format")
    if args.input != STDIO:
        _check_input(src)
    if dst is not None:
        _check_output(dst, args.force)
        if dst.suffix.lower() not in DECODE_SUFFIXES:
            raise ConfigError(f"cannot write {dst}: avfc decode writes .mp4 or .wav (or .mkv, .mov)")
    else:
        dst = _Stdout()
    if args.input == STDIO:
        src = sys.stdin.buffer  # read in pieces as decoding goes
    progress, done = _progress_bar(not args.quiet and sys.stderr.isatty() or args.progress)
    try:
        res = decode(src, dst, device=args.device, progress=progress, conceal_audio=args.conceal_audio,
                     conceal_motion=args.conceal_motion, join=args.join, threads=args.threads,
                     output_format=(args.output_format or "mkv") if isinstance(dst, _Stdout) else None)
    finally:
        done()
    for issue in res.issues:
        print(f"warning: {issue.message}", file=sys.stderr)
    if not args.quiet:
        # (the frames and audio went straight into the file: the result counts them)
        audio = f", {res.audio_samples / res.sample_rate:.2f} s of audio" if res.header.audio_codec else ""
        joined = f" from frame {res.first_frame} (joined at a REFRESH)" if res.first_frame else ""
        name = dst.name if isinstance(dst, _Stdout) else dst
        print(f"{name}: {res.frame_count} frames {res.header.width}x{res.header.height} "
              f"at {res.fps:g} fps{joined}{audio}", file=_messages())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from avfc.codec.info import stream_info

    src = Path(args.input)
    if args.input == STDIO:
        data = _stdin_bytes()
    else:
        _check_input(src)
        try:
            data = src.read_bytes()
        except OSError as e:
            raise FileAccessError(f"cannot read {src}: {e.strerror or e}") from None
    info = stream_info(data, join=args.join)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(_format_info(info))
    return 0


def _frames_text(frames: list[int], most: int = 12) -> str:
    """``at frame 12``, ``at frames 0, 250, 500``, the first ``most`` and a count of the rest, or ``none``."""
    if not frames:
        return "none"
    shown = ", ".join(str(f) for f in frames[:most]) + (f" and {len(frames) - most} more" if len(frames) > most else "")
    return f"at frame{'s' if len(frames) > 1 else ''} {shown}"


def _format_info(info: dict[str, Any]) -> str:
    h = info["header"]
    lines = [f"avfc stream v{info['version']}",
             f"  model        {h['model_name']} (weights sha256 {h['weights_sha256'][:16]}...)",
             f"  video        {h['width']}x{h['height']} at {info['fps']:g} fps, {info['frames']} frames, "
             f"{info['duration']:.2f} s",
             f"  source       {h['source_width']}x{h['source_height']}, crop {h['crop_w']}x{h['crop_h']}"
             f" at ({h['crop_x']}, {h['crop_y']})",
             f"  key frames   {info['key_codec']}, {_frames_text(info['key_frames'])}; {info['reference_mode']}",
             f"  audio        {info['audio']}",
             f"  motion       {h['kp_count']} keypoints x {h['kp_dim']}, precision 2^-{h['kp_precision']}",
             *([f"  avcc         {info['avcc']['bundle']}: audio {info['avcc']['audio_coder']}, motion "
                f"{info['avcc']['motion_source']}"
                + (f", lips by diffusion ({info['avcc']['diffusion_steps']} steps, seed "
                   f"{info['avcc']['diffusion_seed']})" if info['avcc'].get('diffusion_steps') else "")]
               if info.get("avcc") else []),
             f"  total        {info['bytes']} bytes, {info['kbps']:.3f} kbps",
             *([f"  joined       at the REFRESH of frame {info['first_frame']} ({info['skipped_bytes']} bytes "
                "skipped before it): frames and rates count from there"] if info.get("skipped_bytes") else []),
             "",
             f"  {'unit type':<16}{'units':>7}{'bytes':>10}{'kbps':>9}{'bits/frame':>12}"]
    for name, u in info["units"].items():
        lines.append(f"  {name:<16}{u['count']:>7}{u['bytes']:>10}{u['kbps']:>9.3f}{u['bits_per_frame']:>12.1f}")
    for d in info["damages"]:
        lines.append(f"  DAMAGE at byte {d['offset']}, {d['length']} bytes: {d['reason']}")
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    from avfc.models.zoo import DEFAULT_MODEL, ZOO

    from avfc.avcc.zoo import AVCC_ZOO, DEFAULT_AVCC

    for name, e in ZOO.items():
        mark = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{mark}\n  arch {e.arch}, sha256 {e.sha256}\n  {e.description}")
    if AVCC_ZOO:
        print("\nAVCC bundles (--audio-coder context, --motion-source predicted|speech):")
    for name, a in AVCC_ZOO.items():
        mark = " (default)" if name == DEFAULT_AVCC else ""
        mark += " (--lips-model diffusion)" if a.diffusion else ""
        print(f"{name}{mark}\n  for {a.animation_model} at precision {a.kp_precision}, sha256 {a.sha256}\n"
              f"  {a.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avfc", description="Generative face video coding with audio.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"avfc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser("encode", help="encode a talking-face video to .avfc",
                       description="Encode a video (any format FFmpeg reads) to an .avfc file.")
    e.add_argument("input", help="input video (with or without audio); - reads it from stdin")
    e.add_argument("output_pos", nargs="?", metavar="OUTPUT", help="output .avfc file, as -o")
    e.add_argument("-o", "--output", help="output .avfc file (default: INPUT with suffix .avfc); - writes the "
                                          "stream to stdout as it is coded")
    e.add_argument("--bitrate", type=float, metavar="KBPS",
                   help="target rate of the whole file, audio included (sets key-frame quality)")
    e.add_argument("--rate-control", choices=["auto", "file", "stream"],
                   help="with --bitrate: file codes the input several times and keeps the pass that fills the "
                        "budget best; stream codes it once, sizing each key picture to what its interval earns "
                        "(any length; a key frame every 10 s unless --key-interval); auto (default): file up to "
                        "20 s of input, stream beyond")
    e.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads the encoder's networks use (default: torch's setting)")
    e.add_argument("--audio", choices=["codec2", "opus", "none"], help="audio codec (default codec2)")
    e.add_argument("--codec2-mode", choices=["700C", "1300", "1600", "3200"], help="Codec2 mode (default 700C)")
    e.add_argument("--opus-bitrate", type=int, metavar="BPS", help="Opus bitrate, 6000-24000")
    e.add_argument("--key-codec", choices=["av1", "hevc"], help="intra codec of key frames (default av1)")
    e.add_argument("--key-qp", type=int, help="key-frame QP when --bitrate is not given")
    e.add_argument("--key-interval", type=int, metavar="N",
                   help="a key frame every N frames (0: first only); with --key-policy adaptive the longest "
                        "distance between key frames (0: no limit)")
    e.add_argument("--key-policy", choices=["fixed", "adaptive"],
                   help="fixed (default): key frames every --key-interval frames; adaptive: the encoder renders "
                        "every frame as the decoder will and codes a key frame when the picture falls "
                        "--key-drop-db below its level just after the last key frame (slower encode)")
    e.add_argument("--key-drop-db", type=float, metavar="DB",
                   help="with --key-policy adaptive: the PSNR drop that triggers a key frame (default 3)")
    e.add_argument("--key-min-distance", type=int, metavar="N",
                   help="with --key-policy adaptive: the fewest frames between two key frames (default 25)")
    e.add_argument("--reference-mode", choices=["low-delay", "bidirectional"],
                   help="low-delay (default): frames are drawn from past key frames; bidirectional: the next key "
                        "frame is coded ahead and the frames between two key frames are drawn from both (needs "
                        "--key-interval N > 0, the fixed policy and --max-refs 2 or more; delays N frames)")
    e.add_argument("--first-key", type=int, metavar="N",
                   help="the frame of the stream's only key frame; the frames before it are drawn from it "
                        "(bi-directional). Default: frame 0, or at effort fast and above, for an input coded "
                        "whole (up to 20 s with --bitrate), the frame whose keypoints are nearest all others'")
    e.add_argument("--fixed-keys", dest="place_keys", action="store_const", const=False,
                   help="key frames where the policy puts them (frame 0, every --key-interval N): the search "
                        "efforts otherwise place them where the model draws best (the only key frame of an input "
                        "coded whole; in bidirectional mode, one in every N-frame window; an input longer than "
                        "20 s with --bitrate is written bidirectional, a key frame placed in every 10 s)")
    e.add_argument("--max-refs", type=int, metavar="N",
                   help="key frames the decoder keeps as references (default 4; at most what the model draws "
                        "from: 4 for the mrdac models)")
    e.add_argument("--model", help="zoo model (see `avfc models`)")
    e.add_argument("--frames", type=int, metavar="N", help="encode at most N frames")
    e.add_argument("--crop", choices=["face", "center", "none"], help="how to crop to a square (default face)")
    e.add_argument("--size", type=int, help="coded width and height (default 256)")
    e.add_argument("--fps", type=int, help="coded frame rate (default 25)")
    e.add_argument("--packet-frames", type=int, metavar="N", help="frames per motion packet (default 25)")
    e.add_argument("--kp-precision", type=int, metavar="BITS", help="fractional bits of keypoints (default 5)")
    e.add_argument("--kp-hysteresis", type=float, metavar="STEPS",
                   help="keypoint dead zone in grid steps (default 0.3): jitter below 0.5 + this costs no motion bits")
    e.add_argument("--motion-hold", action=argparse.BooleanOptionalAction, default=None,
                   help="per motion packet, send the reference's keypoints held still when that reconstructs "
                        "the source better (closed loop; default on; --no-motion-hold encodes about 3x faster)")
    e.add_argument("--hold-margin", type=float, metavar="FRACTION",
                   help="with --motion-hold: hold a packet unless holding's error exceeds the motion's by more "
                        "than this fraction of it (default 0; larger holds more packets: fewer motion bytes, a "
                        "sharper picture, less mouth motion)")
    e.add_argument("--effort", "--preset", dest="effort",
                   choices=["live", "detector", "fast", "medium", "slow", "placebo"],
                   help="how hard the encoder works (every file decodes the same way): live sends the keypoint "
                        "detector's output with no second render (real time), detector adds the closed-loop hold "
                        "(avfc 0.2's encoder), fast..placebo search the keypoints against the decoder's own render "
                        "(slower, better; default %s; speeds in docs/results.md)" % DEFAULT_EFFORT)
    e.add_argument("--device", default="auto",
                   help="torch device the motion search renders on (efforts fast and above): auto (default: a "
                        "GPU when one is present, else the CPU), cpu, cuda, ...")
    e.add_argument("--search-lambda", type=float, metavar="LAMBDA",
                   help="the search's rate weight: 8-bit levels of error per bit of motion (default: from "
                        "--bitrate, %g at 5 kbps)" % SEARCH_LAMBDA_5KBPS)
    e.add_argument("--search-weights", metavar="DIR",
                   help="add a perceptual term (--search-metric) to the motion search's distortion, from the "
                        "weights in DIR (e.g. ../shared/weights; avfc ships none), and search at 128 px: lower "
                        "LPIPS and DISTS for about 2.5x the search's time; an encoder choice, the file decodes the "
                        "same way (efforts fast and above; docs/experiments/2026-12-06-search-perceptual.md)")
    e.add_argument("--search-metric", choices=["lpips-alex", "lpips-vgg", "dists"], default="lpips-alex",
                   help="with --search-weights: the perceptual term (default lpips-alex)")
    e.add_argument("--search-perceptual-weight", type=float, metavar="W",
                   help="with --search-weights: 8-bit levels of error per unit of the term (default %g)"
                        % SEARCH_PERCEPTUAL_WEIGHT)
    e.add_argument("--format", type=int, choices=[1, 2], metavar="MAJOR",
                   help="bitstream format: 2 (default) the compact 2.0 layout, 1 the 1.x layout that avfc "
                        "readers before 0.2 read")
    e.add_argument("--refresh-interval", type=float, metavar="SECONDS",
                   help="random access (format 2.1): repeat the header and restart the references with a key "
                        "frame every SECONDS (rounded up to whole motion packets), so that a receiver that joins "
                        "late decodes from there (`avfc decode --join`); with --motion-source predicted / speech "
                        "or --audio-coder context (format 2.3) their histories restart there too; default off")
    e.add_argument("--adapt-decoder", action="store_true",
                   help="format 2.2: fit a few hundred of the model's last-layer parameters to the clip and send "
                        "them (DECODER_PARAMS, counted in the rate); codes the clip twice. Default off")
    e.add_argument("--motion-stride", type=int, metavar="N",
                   help="send the keypoints of every Nth frame, the decoder interpolates the rest (default: 1, or "
                        "with --bitrate the smallest of 1, 2, 3 whose keypoints fit --motion-share of the file; "
                        "a sparser one only when it saves 2%% of the file or more)")
    e.add_argument("--motion-share", type=float, metavar="FRACTION",
                   help="with --bitrate and no --motion-stride: the largest share of the file the keypoints may "
                        "take before sparser motion is sent (default 0.1; 1 keeps every frame's)")
    e.add_argument("--audio-coder", choices=["raw", "context"],
                   help="context: code Codec2 700C tokens with the AVCC context model (same audio, about 50 bit/s "
                        "fewer: 652 instead of 700 on held-out speech; opt-in, docs/results.md, Cross-modal features)")
    e.add_argument("--motion-source", choices=["transmitted", "predicted", "speech"],
                   help="predicted: code keypoints as residuals of a predictor that reads the decoded speech and "
                        "the keypoints already coded (8%% fewer motion bits on av-eval; the speech terms save 0.03 "
                        "bit of a frame's 44, 0.1%%); speech: send no motion, the decoder draws the lips from the "
                        "speech (measured: the mouth does not follow it, below the held key frame). Both opt-in, "
                        "docs/results.md, Cross-modal features")
    e.add_argument("--avcc", metavar="NAME", help="AVCC bundle for --audio-coder/--motion-source (see `avfc models`)")
    e.add_argument("--lips-model", choices=["regressor", "diffusion"],
                   help="with --motion-source speech: how the decoder draws the lips: regressor (default, "
                        "format 1.1) or diffusion (a denoising diffusion transformer over speech and motion, "
                        "format 1.3; needs a bundle with one, e.g. avcc-mrdac-cpu-v3, picked by default; it moves "
                        "the mouth but on unseen faces is no better than the regressor)")
    e.add_argument("--diffusion-steps", type=int, metavar="N",
                   help="with --lips-model diffusion: sampler steps the decoder runs, 1..64 (default 16; "
                        "written in the stream)")
    e.add_argument("--diffusion-seed", type=int, metavar="SEED",
                   help="with --lips-model diffusion: seed of the sampler's noise, 0..2^32-1 (default 0; "
                        "written in the stream, so every decoder draws the same lips)")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode .avfc to .mp4 (or .wav)",
                       description="Decode an .avfc file to a video with audio (.mp4) or audio alone (.wav).")
    d.add_argument("input", help="input .avfc file; - reads it from stdin (decoded as it arrives)")
    d.add_argument("output_pos", nargs="?", metavar="OUTPUT", help="output file, as -o")
    d.add_argument("-o", "--output", help="output .mp4 or .wav (or .mkv, .mov; default: INPUT with suffix "
                                          ".decoded.mp4); - writes to stdout as it decodes, in --output-format")
    d.add_argument("--output-format", choices=["mkv", "wav"],
                   help="with output -: Matroska video and audio (default) or WAV audio (formats written "
                        "in order: MP4 needs a file)")
    d.add_argument("--device", default="cpu", help="torch device of the generator (default cpu)")
    d.add_argument("--conceal-audio", choices=["repeat", "joint", "none"], default="repeat",
                   help="how lost Codec2 audio frames are filled: repeat the last received frame (default, up to "
                        "1 s), joint: rebuilt from the motion and the audio around them by the joint audio-video "
                        "model (700C streams at 25 fps; measured worse than repeat, docs/results.md, Cross-modal "
                        "features), none: silence")
    d.add_argument("--join", action="store_true",
                   help="the input may start at any byte of the stream (a late join, a lost start): decode from "
                        "the first intact REFRESH unit (streams encoded with --refresh-interval)")
    d.add_argument("--conceal-motion", choices=["hold", "joint"], default="hold",
                   help="how frames whose motion packet is lost are drawn: hold the last frame (default), joint: "
                        "from keypoints the joint audio-video model samples from their audio (measured worse than "
                        "hold, docs/results.md, Cross-modal features)")
    d.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads the decoder's network uses (default: torch's setting; 1 keeps decoding steady "
                        "on a CPU that other work shares)")
    d.set_defaults(func=cmd_decode)

    for sp in (e, d):
        sp.add_argument("-y", "--yes", "-f", "--force", dest="force", action="store_true",
                        help="overwrite the output file if it exists")
        sp.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and warnings")
        sp.add_argument("--progress", action="store_true", help="show a progress bar even when not on a terminal")

    i = sub.add_parser("info", help="describe an .avfc file: header, units, bits per unit type",
                       description="Print an .avfc file's header and its rate per unit type.")
    i.add_argument("input", help="input .avfc file; - reads it from stdin")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--join", action="store_true",
                   help="the file may start anywhere in a stream (a late joiner's bytes): describe it from its "
                        "first intact REFRESH unit when it has no intact sequence header first (format 2.1)")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list the shipped models")
    m.set_defaults(func=cmd_models)

    b = sub.add_parser("bench", help="benchmark avfc against the held key frame, x265, SVT-AV1, Opus, Codec2",
                       description="Rate-distortion, speed and memory of avfc and the anchors on a folder of clips. "
                                   "SSIM, MS-SSIM, LPIPS and DISTS score every 10th frame by default (--metric-stride, "
                                   "--all-frames; results.csv says which); a time estimate is printed first.")
    from avfc.eval.bench import add_bench_arguments, run_bench_from_args

    add_bench_arguments(b)
    b.set_defaults(func=run_bench_from_args)

    # `avfc train ...` is dispatched in main() to the trainer's parser; listed here for --help
    sub.add_parser("train", help="train an animation model (avfc train -h for its options)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the avfc command; returns its exit status (see EPILOG).

    When the reader of stdout goes away (``avfc info --json x.avfc | head -1``), the command stops
    quietly with status 141 (:data:`EXIT_BROKEN_PIPE`) instead of a BrokenPipeError traceback:
    stdout is pointed at the null device so that nothing fails again when Python flushes it at exit.
    """
    try:
        try:
            return _run(argv)
        finally:  # what is still buffered goes out here, inside the try, not at interpreter exit
            sys.stdout.flush()
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # stdout without a file descriptor (captured, in-process)
            pass
        return EXIT_BROKEN_PIPE


def _run(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # everything after `train` belongs to the trainer's own parser
        from avfc.train.__main__ import main as train_main

        return train_main(argv[1:], prog="avfc train")
    parser = build_parser()
    args = parser.parse_args(argv)
    _Stdout.used = _Stdout.gone = False
    try:
        return int(args.func(args))
    except AvfcError as e:
        if _Stdout.gone:  # stdout's reader went away and a layer below reported the failed write
            raise BrokenPipeError(str(e)) from None
        print(f"avfc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avfc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
