"""Merge trained AVCC parts into one bundle file for the zoo.

    python -m avfc.train.audio_ctx --out /tmp/avcc/audio_ctx.safetensors
    python -m avfc.train.avcc_motion --model mrdac-cpu-v1 --out /tmp/avcc/avcc_motion.safetensors
    python -m avfc.train.avcc_bundle /tmp/avcc/audio_ctx.safetensors /tmp/avcc/avcc_motion.safetensors \\
        --out avfc/avcc/weights/NAME.safetensors

The bundle holds the ``audio.*``, ``motion.*`` and ``lips.*`` arrays, and optionally the float32
``diffusion.*`` of ``python -m avfc.train.avcc_diffusion`` (format 1.3; ``avcc-mrdac-cpu-v3`` is the
v2 bundle file merged with one), checked by building each part, and prints its sha256, which goes into :data:`avfc.avcc.zoo.AVCC_ZOO` (rename the file to
``<name>-<first 8 hex>.safetensors``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from avfc.avcc.zoo import AvccEntry, bundle_from_arrays
from avfc.errors import ConfigError


def merge(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """The arrays of every file, refusing a name that two files both define."""
    arrays: dict[str, np.ndarray] = {}
    for path in paths:
        for key, value in load_file(str(path)).items():
            if key in arrays:
                raise ConfigError(f"{key!r} is defined twice (again in {path})")
            arrays[key] = value
    return arrays


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: merge, check, write, print the sha256."""
    ap = argparse.ArgumentParser(prog="python -m avfc.train.avcc_bundle", description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="+", help="safetensors files of trained parts")
    ap.add_argument("--out", required=True, help="bundle file to write")
    args = ap.parse_args(argv)
    arrays = merge(args.parts)
    bundle_from_arrays(AvccEntry(name="check", sha256="0" * 64, animation_model="", kp_precision=0), arrays)
    save_file(arrays, args.out)
    digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
    print(f"{args.out}: {len(arrays)} arrays, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
