"""The examples in examples/ run as written (CI runs them here)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_streaming_example_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "streaming.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "done: 75 frames, 3.00 s audio, issues: none" in out


def test_readme_main_job_runs(tmp_path):
    """The README's encode/decode command line, on the GRID sample clip it names."""
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=tmp_path, check=True,  # noqa: E731
                                    capture_output=True, text=True)
    sample = ROOT / "examples" / "grid_sample.mp4"
    enc = run("-m", "avfc.cli", "encode", str(sample), "-o", "out.avfc", "--bitrate", "5")
    assert "kbps" in enc.stdout
    run("-m", "avfc.cli", "decode", "out.avfc", "-o", "out.mp4")
    import av

    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.video[0].frames == 75 and c.streams.video[0].width == 256
        assert c.streams.audio  # the speech comes back too


def test_readme_first_command_is_the_one_tested():
    readme = (ROOT / "README.md").read_text()
    assert ("avfc encode examples/grid_sample.mp4 -o out.avfc --bitrate 5 && avfc decode out.avfc -o out.mp4"
            in readme)
    assert (ROOT / "examples" / "grid_sample.mp4").stat().st_size < 300_000


def test_live_call_example_joins_late_and_resumes_after_a_dropped_connection():
    """examples/live_call.py --smoke: a TCP call of 3 s; the late receiver starts at a REFRESH, the first
    one starts at frame 0 and, after its connection drops, resumes at a later REFRESH (what is timed is
    reported, not asserted: latency is a benchmark figure)."""
    mod = runpy.run_path(str(ROOT / "examples" / "live_call.py"))
    report = mod["main"](["--smoke"])
    first, late = report["first"], report["late"]
    refresh = 36  # --smoke: a REFRESH every 1 s, rounded up to whole packets of 12 frames
    assert first["started_at"][0] == 0 and len(first["started_at"]) == 2
    assert first["started_at"][1] % refresh == 0 and first["started_at"][1] > 0
    assert late["started_at"] and late["started_at"][0] % refresh == 0 and late["started_at"][0] > 0
    assert late["frames"] == 75 - late["started_at"][0] and late["audio_s"] > 0
    assert report["kbps"] > 0 and first["median_latency_ms"] is not None


def test_live_call_example_one_to_one():
    """--receivers 1 --no-drop (how the latency is measured): one receiver, connected throughout, shows every
    frame from frame 0 and all the speech; there is no late receiver."""
    mod = runpy.run_path(str(ROOT / "examples" / "live_call.py"))
    report = mod["main"](["--smoke", "--receivers", "1", "--no-drop"])
    assert "late" not in report
    assert report["first"]["started_at"] == [0] and report["first"]["frames"] == 75
    assert report["first"]["audio_s"] == pytest.approx(3.0, abs=0.05)


def test_live_call_example_with_the_receiver_in_its_own_process():
    """--processes: the receiver runs in a spawned process (as the far end of a call), connected throughout; it
    shows every frame from frame 0 and the report says so (the script as a user runs it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "live_call.py"), "--smoke", "--processes",
                          "--receivers", "1", "--no-drop"], capture_output=True, text=True, timeout=240, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "first: 75 frames from frame(s) [0], latency median" in out.stdout and "late :" not in out.stdout


def test_live_webrtc_example_carries_the_units_and_conceals_the_lost_ones():
    """examples/live_webrtc.py --smoke (needs aiortc, the ``live`` extra): two peers over the loopback, the
    units on an unordered data channel without retransmission. Without loss the receiver shows exactly the
    lossless decode; with 10 % of the units dropped on the way it still shows every frame, the lost motion
    concealed."""
    pytest.importorskip("aiortc")
    mod = runpy.run_path(str(ROOT / "examples" / "live_webrtc.py"))
    clean = mod["main"](["--smoke", "--loss", "0"])
    assert clean["dropped"] == 0 and clean["received"] == clean["sent"] == clean["units"]
    assert clean["frames"] == clean["frames_sent"] == 50 and clean["changed_frames"] == 0 and not clean["issues"]
    assert clean["audio_s"] == 2.0
    lossy = mod["main"](["--smoke", "--seed", "0"])
    assert lossy["dropped"] > 0 and lossy["received"] == lossy["sent"] == lossy["units"] - lossy["dropped"]
    assert lossy["frames"] == 50 and lossy["first_frame"] == 0  # every frame shown, concealed where lost
    assert lossy["changed_frames"] > 0 and lossy["issues"].get("lost_motion", 0) > 0
