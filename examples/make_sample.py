"""Write a short synthetic talking-face clip (video + speech-like audio) to try avfc on.

    python examples/make_sample.py sample.mp4 [--seconds 4]

(``--smoke``: a 0.4-s clip in a temporary folder, a check that it runs.)
"""

import argparse
import tempfile
from pathlib import Path

from avfc.media.synthetic import write_clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output", nargs="?", default="sample.mp4")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--smoke", action="store_true", help="write a 0.4-s clip to a temporary folder")
    a = p.parse_args()
    if a.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            path = write_clip(Path(tmp) / "sample.mp4", n=10, width=320, height=240)
            print(f"wrote {path} ({path.stat().st_size} bytes)")
        return
    path = write_clip(Path(a.output), n=int(a.seconds * 25), width=320, height=240)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
