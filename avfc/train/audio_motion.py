"""Training of a motion-conditioned AUDIO_CTX model (study, issue 21): tables per motion level.

``python -m avfc.train.audio_motion --out FILE.safetensors [--levels 3]`` reads the aligned clips
of the shared ``av/`` and ``av2/`` folders (:func:`avfc.train.avcc_data.load_clips`: the keypoints the
encoder sends with ``--model``, default ``mrdac-cpu-v3``, and the 700C tokens of the same frames),
computes every frame's motion level (:mod:`avfc.avcc.motion_ctx`, packets of 25 frames) and fits
one table per (context, level) on top of a base model (default: the audio model of the bundle the
encoder uses for ``--model``), written as safetensors with prefix ``audio.`` plus
``audio.motion_thresholds``. av-eval is never read here.

Levels: ``M = levels + 1``. Level 0 ("no motion") is the base model's rows, unchanged, so a packet
coded at level 0 is the base model's packet byte for byte. The thresholds split the training
frames' activity into ``levels`` groups of about equal size. A level's row backs off to the base
row of the same context: ``p(s | c, m) = (n(c, m, s) + alpha * b(s | c)) / (n(c, m) + alpha)``,
with ``alpha`` chosen per table kind by leave-one-person-out cross-validation (people from
``avfc/train/people.csv``, so that a person's clips are never on both sides). Integer arithmetic
only: the same input gives the same file on any machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from avfc.avcc.audio_ctx import KINDS, AudioContextModel
from avfc.avcc.motion_ctx import check_thresholds, motion_activity, motion_levels
from avfc.entropy.tables import TABLE_TOTAL
from avfc.errors import AvfcError, ConfigError
from avfc.train.audio_ctx import ALPHAS, KindFit, _cost_bits, count_events

PACKET_FRAMES = 25


def activity_seq(q: np.ndarray, packet_frames: int = PACKET_FRAMES) -> np.ndarray:
    """:func:`~avfc.avcc.motion_ctx.motion_activity` of every frame of a clip, packet by packet."""
    return np.concatenate([motion_activity(q[s:s + packet_frames]) for s in range(0, len(q), packet_frames)]
                          or [np.zeros(0, np.int64)])


def level_seq(q: np.ndarray, thresholds: Sequence[int], packet_frames: int = PACKET_FRAMES) -> list[int]:
    """The level of every frame of a clip whose frames all have motion, packet by packet."""
    out: list[int] = []
    for s in range(0, len(q), packet_frames):
        out += motion_levels(q[s:s + packet_frames], thresholds)
    return out


def quantile_thresholds(activities: Sequence[np.ndarray], levels: int) -> tuple[int, ...]:
    """Integer thresholds splitting the pooled activities into ``levels`` groups of about equal size
    (duplicates dropped, so there may be fewer)."""
    if levels < 1:
        raise ConfigError(f"levels must be >= 1, got {levels}")
    pooled = np.sort(np.concatenate(list(activities)))
    if len(pooled) == 0:
        raise ConfigError("no frames to choose motion thresholds from")
    cuts = sorted({int(pooled[(i * len(pooled)) // levels]) for i in range(1, levels)} - {0})
    return check_thresholds(cuts)


def backoff_tables(counts: np.ndarray, base: np.ndarray, levels: int, alpha: int) -> np.ndarray:
    """Integer tables ``(C * M, K + 1)`` for counts ``(C * M, K)`` backed off to ``base`` ``(C, K + 1)``.

    Row ``c * M`` (level 0) is ``base[c]``; row ``c * M + m`` (``m >= 1``):
    ``f[0] = 1``, ``f[1 + s] = 1 + floor(w(s) * (2**24 - K - 1) / W)`` with
    ``w(s) = n(s) * (2**24 - 1) + alpha * base[c][1 + s]``; the rest of ``2**24`` to the first most
    probable value. Exact integer arithmetic.
    """
    k = base.shape[1] - 1
    free = TABLE_TOTAL - k - 1
    rows = []
    for r, row in enumerate(counts.tolist()):
        c, m = divmod(r, levels)
        b = [int(x) for x in base[c, 1:]]
        if m == 0:
            rows.append([int(x) for x in base[c]])
            continue
        w = [int(n) * (TABLE_TOTAL - 1) + alpha * y for n, y in zip(row, b)]
        total = sum(w)
        f = [1 + x * free // total for x in w]
        f[f.index(max(f))] += TABLE_TOTAL - 1 - sum(f)
        rows.append([1] + f)
    return np.array(rows, dtype=np.int64)


def train_conditioned(base: AudioContextModel, token_seqs: Sequence[Sequence[int]],
                      level_seqs: Sequence[Sequence[int]], levels: int, groups: Sequence[str],
                      packet_frames: int = PACKET_FRAMES) -> tuple[AudioContextModel, list[KindFit]]:
    """A model with ``M = levels`` whose level-0 rows are ``base``'s and the others are fitted (see
    the module doc). ``groups``: one person id per sequence, the units of the cross-validation."""
    if base.motion_levels != 1:
        raise ConfigError("the base model must be unconditioned (motion_levels 1)")
    if len(groups) != len(token_seqs):
        raise ConfigError("one group per token sequence")
    events = count_events(token_seqs, packet_frames, level_seqs, levels)
    base_arrays = base.to_arrays()
    tables, fits = {}, []
    for kind, (name, _, _) in enumerate(KINDS):
        b = base_arrays["audio." + name].astype(np.int64)
        per_group: dict[str, np.ndarray] = {}
        for g, e in zip(groups, events):
            per_group[g] = per_group[g] + e[kind] if g in per_group else e[kind].copy()
        total = np.sum(list(per_group.values()), axis=0)
        best, best_bits = ALPHAS[-1], None
        if len(per_group) >= 2:
            for alpha in ALPHAS:
                bits = sum(_cost_bits(c, backoff_tables(total - c, b, levels, alpha)) for c in per_group.values())
                if best_bits is None or bits < best_bits - 1e-9:
                    best, best_bits = alpha, bits
        tables[name] = backoff_tables(total, b, levels, best)
        fits.append(KindFit(name, best, Fraction(0), best_bits, int(total.sum())))
    return AudioContextModel(tables, levels), fits


def save(model: AudioContextModel, thresholds: Sequence[int], path: Path) -> None:
    """Write the model's arrays and ``audio.motion_thresholds`` (int32) as safetensors."""
    from safetensors.numpy import save_file

    arrays = model.to_arrays()
    arrays["audio.motion_thresholds"] = np.array(check_thresholds(thresholds), dtype=np.int32)
    save_file(arrays, str(path))


def load(path: Path) -> tuple[AudioContextModel, tuple[int, ...]]:
    """The model and thresholds written by :func:`save`."""
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    th = arrays.get("audio.motion_thresholds")
    if th is None:
        raise ConfigError(f"{path} has no audio.motion_thresholds")
    return AudioContextModel.from_arrays(arrays), check_thresholds([int(x) for x in th])


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: fit on av/ + av2/ and write the safetensors file."""
    from avfc.avcc.tokens import join_700c
    from avfc.avcc.zoo import default_avcc_for, load_avcc
    from avfc.models.zoo import get_entry
    from avfc.train.avcc_data import load_clips
    from avfc.train.people import eval_people, load_people, persons

    parser = argparse.ArgumentParser(prog="python -m avfc.train.audio_motion", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--levels", type=int, default=3, help="motion levels besides level 0")
    parser.add_argument("--model", default="mrdac-cpu-v3", help="zoo model whose keypoints the encoder sends")
    parser.add_argument("--precision", type=int, default=5)
    parser.add_argument("--hysteresis", type=float, default=0.3)
    parser.add_argument("--data", nargs="+", type=Path)
    parser.add_argument("--base", help="AVCC bundle whose audio model is level 0 (default: the encoder's)")
    args = parser.parse_args(argv)
    try:
        shared = Path(__file__).resolve().parents[2].parent / "shared" / "data"
        folders = args.data or [shared / "av", shared / "av2"]
        table = load_people()
        clips, groups = [], []
        for folder in folders:
            for clip in load_clips([folder], args.model, precision=args.precision, hysteresis=args.hysteresis):
                rel = f"{folder.name}/{next(p.name for p in folder.iterdir() if p.stem == clip.name)}"
                who = persons(rel, table)
                if set(who) & eval_people(table):
                    raise ConfigError(f"{rel} shows a person of av-eval: not trained on")
                clips.append(clip)
                groups.append("+".join(who))
        keypoints = get_entry(args.model).keypoints_of or args.model
        base_name = args.base or default_avcc_for(keypoints)
        if base_name is None:
            raise ConfigError(f"no AVCC bundle for {args.model}")
        base = load_avcc(base_name).audio
        thresholds = quantile_thresholds([activity_seq(c.q) for c in clips], args.levels)
        levels = len(thresholds) + 2
        tokens = [[join_700c(tuple(int(v) for v in row)) for row in c.fields] for c in clips]  # type: ignore[arg-type]
        model, fits = train_conditioned(base, tokens, [level_seq(c.q, thresholds) for c in clips], levels, groups)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save(model, thresholds, args.out)
    except AvfcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    frames = sum(c.num_frames for c in clips)
    print(f"{len(clips)} clips ({len(set(groups))} people), {frames} frames; base {base_name}; "
          f"thresholds {list(thresholds)} (M = {levels}) -> {args.out}")
    print("| kind | events | alpha | held-out bits/frame |")
    print("| --- | --- | --- | --- |")
    for f in fits:
        cv = "-" if f.cv_bits is None else f"{f.cv_bits / frames:.3f}"
        print(f"| {f.name} | {f.events} | {f.alpha} | {cv} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
