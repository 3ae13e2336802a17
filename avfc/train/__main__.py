"""``python -m avfc.train PRESET [--data DIR [DIR ...] | --corpus ROOT] [--out DIR] [--steps N] [--set KEY=JSON ...]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from avfc.errors import AvfcError
from avfc.train.configs import PRESETS, get_config, load_config
from avfc.train.trainer import train


def _set(overrides: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep:
        raise SystemExit(f"--set needs KEY=VALUE, got {item!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    node = overrides
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def main(argv: list[str] | None = None, prog: str = "python -m avfc.train") -> int:
    """Parse arguments, train, print the exported weights' path."""
    ap = argparse.ArgumentParser(prog=prog, description="Train an avfc animation model.")
    ap.add_argument("preset", help=f"preset name ({', '.join(sorted(PRESETS))}) or a JSON config file")
    ap.add_argument("--data", nargs="+", default=None, help="folders of training videos")
    ap.add_argument("--corpus", default=None, metavar="ROOT",
                    help="train on the v4 corpus under ROOT (av, av2, face, face2, images; split by person, "
                         "photo pairs mixed in); prepare it first with python -m avfc.train.prepare")
    ap.add_argument("--out", default=None, help="output folder (checkpoints, log, weights)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config value, e.g. --set loss.vgg_path='\"/path\"' --set batch_size=8")
    args = ap.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data:
        overrides.setdefault("data", {})["dirs"] = args.data
    if args.corpus:
        overrides.setdefault("data", {})["corpus"] = args.corpus
    if args.out:
        overrides["out_dir"] = args.out
    if args.steps:
        overrides["steps"] = args.steps
    for item in args.set:
        _set(overrides, item)
    try:
        cfg = get_config(args.preset, overrides) if args.preset in PRESETS else load_config(args.preset, overrides)
        print(train(cfg))
    except AvfcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
