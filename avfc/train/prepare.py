"""``python -m avfc.train.prepare [PRESET] --root DATA --cache DIR [--size S ...] [--limit N]``

Builds (or completes: cached items are skipped) the v4 training corpus: face crops of every clip
and photo of ``av``, ``av2``, ``face``, ``face2`` and ``images`` under ``--root`` at each size, the
key pictures coded and decoded with the key-frame codec, the split by person, and
``<cache>/corpus/manifest.json``. Frame rate, frame limit, codec, QPs, stride and the split come
from the training preset (default ``cpu-v4``), so that training finds exactly this cache; the
``--set`` overrides are the trainer's. Prints the files dropped for showing an ``av-eval/``
person, the files the people table does not list, the time spent and the cache's size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from avfc.errors import AvfcError
from avfc.train.__main__ import _set
from avfc.train.configs import PRESETS, get_config, load_config
from avfc.train.corpus import prepare_corpus


def _size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.npy")) if folder.is_dir() else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m avfc.train.prepare", description="Prepare the v4 training corpus.")
    ap.add_argument("preset", nargs="?", default="cpu-v4", help="training preset or JSON config (default cpu-v4)")
    ap.add_argument("--root", default=None, help="data root (default: the preset's data.corpus)")
    ap.add_argument("--cache", default=None, help="cache folder (default: data.cache_dir, $AVFC_CACHE or ~/.cache/avfc)")
    ap.add_argument("--size", type=int, action="append", default=None,
                    help="training size, repeatable (default: the preset's model.size)")
    ap.add_argument("--folders", nargs="+", default=None, help="folders under the root (default: data.corpus_folders)")
    ap.add_argument("--limit", type=int, default=None, help="prepare only the first N sources (a quick check)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="config override, as for training")
    args = ap.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        _set(overrides, item)
    try:
        cfg = get_config(args.preset, overrides) if args.preset in PRESETS else load_config(args.preset, overrides)
        d = cfg.data
        root = args.root or d.corpus
        if not root:
            print("error: no data root (--root or data.corpus)", file=sys.stderr)
            return 2
        sizes = args.size or [cfg.model.size]
        t0 = time.perf_counter()

        def progress(rel: str, worked: bool, seconds: float) -> None:
            print(f"{'prepared' if worked else 'cached  '} {seconds:7.1f} s  {rel}", flush=True)

        corpus = prepare_corpus(root, args.cache or d.cache_dir, sizes, folders=args.folders or d.corpus_folders,
                                fps=d.fps, max_frames=d.max_frames, codec=d.ref_codec, qps=d.ref_qps,
                                stride=d.ref_stride, dev_fraction=d.dev_fraction, split_seed=d.split_seed,
                                limit=args.limit, progress=progress)
    except AvfcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for rel, who in corpus.dropped.items():
        print(f"dropped  {rel}: shows {', '.join(who)} (an av-eval person)")
    for rel in corpus.unknown:
        print(f"unknown  {rel}: not in avfc/train/people.csv (taken as its own person)")
    for rel, err in corpus.failed.items():
        print(f"FAILED   {rel}: {err}")
    n = {(side, kind): len(corpus.select(side, kind)) for side in ("train", "dev") for kind in ("video", "photo")}
    frames = sum(i.frames for i in corpus.items if i.kind == "video")
    print(f"{len(corpus.items)} items ({corpus.prepared} prepared now), {frames} video frames; "
          f"train {n['train', 'video']} clips + {n['train', 'photo']} photos, "
          f"dev {n['dev', 'video']} clips + {n['dev', 'photo']} photos; {len(corpus.dropped)} dropped; "
          f"{time.perf_counter() - t0:.0f} s; cache {_size_of(corpus.dir) / 2**20:.0f} MiB in {corpus.dir}")
    return 1 if corpus.failed else 0


if __name__ == "__main__":
    sys.exit(main())
