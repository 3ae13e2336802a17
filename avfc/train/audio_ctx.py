"""Training of the AUDIO_CTX model: smoothed context counts -> integer frequency tables.

``python -m avfc.train.audio_ctx --out FILE.safetensors [--data DIR ...]`` reads the speech of
every audio or video file in the folders (default: ``speech/`` and ``av/`` of the shared data),
codes it with avfc's Codec2 700C, counts the model's ``(kind, context, value)`` events
(:func:`avfc.avcc.audio_ctx.walk_packet`, the coder's own definition of the contexts, over
packets of ``--packet-frames`` tokens) and writes the integer tables as safetensors (prefix
``audio.``).

Smoothing: for each table kind, a context's distribution is its counts backed off to the
kind's add-beta smoothed marginal with weight alpha:
``p(s | c) = (n(c, s) + alpha * q(s)) / (n(c) + alpha)``, ``q(s) = (n(s) + beta) / (N + beta K)``.
``alpha`` and ``beta`` are chosen per kind on a fixed grid by leave-one-file-out cross-validation
(the held-out file's cost under tables built from the other files), since the data is small.
Tables are made with integer arithmetic only (``beta`` is a fraction), so the same input gives
the same file on any machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple, Optional, cast

import numpy as np

from avfc.avcc.audio_ctx import KINDS, MAX_FRAMES, AudioContextModel, walk_packet
from avfc.avcc.tokens import split_700c
from avfc.entropy.tables import TABLE_TOTAL
from avfc.errors import AvfcError, ConfigError

ALPHAS: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096, 16384)
"""Back-off weights tried for every table kind."""

BETAS: tuple[Fraction, ...] = (Fraction(1, 4), Fraction(1), Fraction(4), Fraction(16), Fraction(64))
"""Add-beta smoothing of the marginal tried for every table kind."""

DEFAULT_SMOOTHING = (64, Fraction(1))
"""``(alpha, beta)`` used when there are fewer than two files to cross-validate on."""

PACKET_FRAMES = 25
"""Tokens per packet in training (the codec's AUDIO_CTX packet: one second at 25 fps)."""

DEFAULT_DATA = ("speech", "av")
"""Folders of the shared data read when ``--data`` is not given."""

MEDIA_SUFFIXES = (".wav", ".mp4", ".mpg", ".mkv", ".webm", ".flac", ".mov", ".avi")


class KindFit(NamedTuple):
    """What training chose for one table kind and what it measured."""

    name: str
    alpha: int
    beta: Fraction
    cv_bits: Optional[float]  # held-out bits of this kind, summed over files (None: no CV)
    events: int


def count_events(token_seqs: Sequence[Sequence[int]], packet_frames: int = PACKET_FRAMES,
                 motion_seqs: Sequence[Sequence[int]] | None = None,
                 motion_levels: int = 1) -> list[list[np.ndarray]]:
    """Per sequence, per table kind: the ``(contexts * M, values)`` int64 count matrix.

    Sequences are cut into packets of ``packet_frames`` tokens, each coded from a fresh
    context, exactly as the encoder does.

    Raises:
        ConfigError: bad ``packet_frames``/``motion_levels`` or motion lengths.
        EntropyError: a token that is not a 700C token.
    """
    if (isinstance(packet_frames, bool) or not isinstance(packet_frames, int)
            or not 1 <= packet_frames <= MAX_FRAMES):
        raise ConfigError(f"packet_frames must be an int in 1..{MAX_FRAMES}, got {packet_frames!r}")
    if isinstance(motion_levels, bool) or not isinstance(motion_levels, int) or motion_levels < 1:
        raise ConfigError(f"motion_levels must be a positive int, got {motion_levels!r}")
    if motion_seqs is not None and [len(m) for m in motion_seqs] != [len(t) for t in token_seqs]:
        raise ConfigError("motion_seqs must give one motion context per token of every sequence")
    out = []
    for i, tokens in enumerate(token_seqs):
        counts = [np.zeros((c * motion_levels, v), dtype=np.int64) for _, v, c in KINDS]

        def step(kind: int, ctx: int, value: Optional[int]) -> int:
            assert value is not None
            counts[kind][ctx, value] += 1
            return value

        fields = [split_700c(t) for t in tokens]
        for start in range(0, len(fields), packet_frames):
            chunk = fields[start:start + packet_frames]
            motion = None if motion_seqs is None else motion_seqs[i][start:start + packet_frames]
            if motion is not None and any(not 0 <= int(m) < motion_levels for m in motion):
                raise ConfigError(f"motion contexts must be in 0..{motion_levels - 1}")
            walk_packet(len(chunk), step, chunk, motion, motion_levels)
        out.append(counts)
    return out


def smoothed_tables(counts: np.ndarray, alpha: int, beta: Fraction) -> np.ndarray:
    """Integer tables ``(C, K + 1)`` from counts ``(C, K)``: column 0 is the reserved symbol.

    ``f[c, 0] = 1``; ``f[c, 1 + s] = 1 + floor(w(c, s) * (2**24 - K - 1) / W(c))`` with
    ``w(c, s) = n(c, s) * Q + alpha * q(s)``, ``q(s) = m(s) * b + a``, ``Q = sum(q)``
    (``beta = a / b``; ``m`` the column sums of ``counts``); the rest of
    ``2**24`` goes to the first most probable value. Exact integer arithmetic.
    """
    n = [[int(x) for x in row] for row in np.asarray(counts)]
    k = len(n[0])
    m = [int(x) for x in np.asarray(counts).sum(axis=0)]
    q = [x * beta.denominator + beta.numerator for x in m]
    big_q = sum(q)
    free = TABLE_TOTAL - k - 1
    rows = []
    for row in n:
        w = [x * big_q + alpha * y for x, y in zip(row, q)]
        total = sum(w)
        f = [1 + x * free // total for x in w]
        f[f.index(max(f))] += TABLE_TOTAL - 1 - sum(f)
        rows.append([1] + f)
    return np.array(rows, dtype=np.int64)


def _cost_bits(counts: np.ndarray, table: np.ndarray) -> float:
    """Bits to code ``counts`` with ``table`` (measurement only, never feeds a coder)."""
    bits = np.log2(TABLE_TOTAL / table[:, 1:].astype(np.float64))
    return float((counts * bits).sum())


def fit_kind(per_file: Sequence[np.ndarray], name: str) -> tuple[np.ndarray, KindFit]:
    """Choose ``(alpha, beta)`` for one kind by leave-one-file-out CV and build its tables.

    Files with no events of this kind are left out of the CV; with fewer than two files left
    the smoothing is :data:`DEFAULT_SMOOTHING`. Ties go to the earlier grid point.
    """
    total = np.sum(per_file, axis=0)
    files = [c for c in per_file if c.sum() > 0]
    best: tuple[int, Fraction] = DEFAULT_SMOOTHING
    best_bits: Optional[float] = None
    if len(files) >= 2:
        for alpha in ALPHAS:
            for beta in BETAS:
                bits = sum(_cost_bits(c, smoothed_tables(total - c, alpha, beta)) for c in files)
                if best_bits is None or bits < best_bits - 1e-9:
                    best, best_bits = (alpha, beta), bits
    tables = smoothed_tables(total, *best)
    return tables, KindFit(name, best[0], best[1], best_bits, int(total.sum()))


def train_model(token_seqs: Sequence[Sequence[int]], packet_frames: int = PACKET_FRAMES,
                motion_seqs: Sequence[Sequence[int]] | None = None,
                motion_levels: int = 1) -> tuple[AudioContextModel, list[KindFit]]:
    """Learn an :class:`AudioContextModel` from 700C token sequences (one per file).

    Raises:
        ConfigError: no tokens at all, or bad arguments (see :func:`count_events`).
        EntropyError: a token that is not a 700C token.
    """
    if sum(len(t) for t in token_seqs) == 0:
        raise ConfigError("no tokens to train the audio context model on")
    events = count_events(token_seqs, packet_frames, motion_seqs, motion_levels)
    tables, fits = {}, []
    for kind, (name, _, _) in enumerate(KINDS):
        tables[name], fit = fit_kind([e[kind] for e in events], name)
        fits.append(fit)
    return AudioContextModel(tables, motion_levels), fits


def media_files(folders: Sequence[Path]) -> list[Path]:
    """Media files (by suffix) directly in ``folders``, sorted by name within each folder.

    Raises:
        ConfigError: a folder that does not exist.
    """
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"no data folder {folder}")
        out += sorted(p for p in folder.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES)
    return out


def file_tokens(path: Path) -> list[int]:
    """The 700C tokens of the speech in ``path`` (16 kHz mono, avfc's Codec2 encoder).

    Raises:
        MediaError: unreadable file or no audio stream.
    """
    from avfc.audio import make_audio_codec_by_name
    from avfc.media.io import load_audio

    tokens = make_audio_codec_by_name("codec2", 700).encode(load_audio(path, 16000))
    return cast(list[int], tokens)  # (Codec2's tokens are ints; bytes are Opus')


def save_model(model: AudioContextModel, path: Path) -> None:
    """Write the model's arrays (prefix ``audio.``) as a safetensors file, no metadata."""
    from safetensors.numpy import save_file

    save_file(model.to_arrays(), str(path))


def default_folders() -> list[Path]:
    """The shared data's training folders (:data:`DEFAULT_DATA`) beside the repository."""
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return [shared / name for name in DEFAULT_DATA]


def main(argv: list[str] | None = None) -> int:
    """Command line: train on the folders' speech and write the safetensors file."""
    parser = argparse.ArgumentParser(prog="python -m avfc.train.audio_ctx",
                                     description="Train the AUDIO_CTX model on speech files.")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    parser.add_argument("--data", nargs="+", type=Path, help="folders of media with speech")
    parser.add_argument("--packet-frames", type=int, default=PACKET_FRAMES)
    args = parser.parse_args(argv)
    try:
        paths = media_files(args.data or default_folders())
        seqs = []
        for p in paths:
            seqs.append(file_tokens(p))
            print(f"{p}: {len(seqs[-1])} frames", file=sys.stderr)
        model, fits = train_model(seqs, args.packet_frames)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, args.out)
    except AvfcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    frames = sum(len(s) for s in seqs)
    print(f"{len(paths)} files, {frames} frames -> {args.out}")
    print("| kind | events | alpha | beta | held-out bits/frame |")
    print("| --- | --- | --- | --- | --- |")
    for f in fits:
        cv = "-" if f.cv_bits is None else f"{f.cv_bits / frames:.3f}"
        print(f"| {f.name} | {f.events} | {f.alpha} | {f.beta} | {cv} |")
    cv_bits = [f.cv_bits for f in fits if f.cv_bits is not None]
    if len(cv_bits) == len(fits):
        per_frame = sum(cv_bits) / frames
        print(f"held-out total: {per_frame:.3f} bits/frame "
              f"({per_frame * 25:.1f} bit/s at 25 fps, before rANS overhead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
