"""The examples in examples/ run as written (CI runs them here)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_streaming_example_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "streaming.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "done: 75 frames, 3.00 s audio, issues: none" in out


def test_readme_main_job_runs(tmp_path):
    """The README's encode/decode command line, on the sample it makes."""
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=tmp_path, check=True,  # noqa: E731
                                    capture_output=True, text=True)
    run(str(ROOT / "examples" / "make_sample.py"), "talking.mp4", "--seconds", "2")
    enc = run("-m", "avfc.cli", "encode", "talking.mp4", "-o", "talking.avfc", "--bitrate", "5")
    assert "kbps" in enc.stdout
    run("-m", "avfc.cli", "decode", "talking.avfc", "-o", "talking.decoded.mp4")
    import av

    with av.open(str(tmp_path / "talking.decoded.mp4")) as c:
        assert c.streams.video[0].frames == 50 and c.streams.video[0].width == 256
