"""Write a short synthetic talking-face clip (video + speech-like audio) to try avfc on.

    python examples/make_sample.py sample.mp4 [--seconds 4]
"""

import argparse
from pathlib import Path

from avfc.media.synthetic import write_clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", nargs="?", default="sample.mp4")
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args()
    path = write_clip(Path(a.output), n=int(a.seconds * 25), width=320, height=240)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
