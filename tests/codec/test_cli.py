"""The avfc command, run in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from avfc.cli import EXIT_BROKEN_PIPE, main
from synthetic import write_clip

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v2_0-codec2-av1.avfc"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("cli") / "talk.mp4", n=30)


def test_encode_info_decode(clip, tmp_path, capsys):
    out = tmp_path / "talk.avfc"
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--bitrate", "8", "-q"]) == 0
    assert out.stat().st_size > 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 30 and info["header"]["width"] == 64
    assert info["bytes"] == out.stat().st_size
    assert sum(u["bytes"] for u in info["units"].values()) == info["bytes"]
    assert info["kbps"] <= 8.0
    assert main(["info", str(out)]) == 0
    assert "motion" in capsys.readouterr().out
    mp4 = tmp_path / "talk.decoded.mp4"
    assert main(["decode", str(out), "-o", str(mp4), "-q"]) == 0
    import av
    with av.open(str(mp4)) as c:
        kinds = sorted(s.type for s in c.streams)
        assert kinds == ["audio", "video"]
        assert c.streams.video[0].width == 64
    wav = tmp_path / "talk.wav"
    assert main(["decode", str(out), "-o", str(wav), "-q"]) == 0
    import soundfile as sf
    audio, sr = sf.read(str(wav))
    assert sr == 16000 and len(audio) == 30 * 16000 // 25


def test_encode_with_refresh_interval_and_decode_with_join(clip, tmp_path, capsys):
    out = tmp_path / "live.avfc"
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--effort", "live",
                 "--key-qp", "50", "--packet-frames", "5", "--refresh-interval", "0.4", "-q"]) == 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == "2.1" and info["units"]["refresh"]["count"] == 2  # frames 10 and 20
    data = out.read_bytes()
    cut = tmp_path / "cut.avfc"
    cut.write_bytes(data[len(data) // 2:])  # a receiver that joined in the middle
    wav = tmp_path / "cut.wav"
    assert main(["decode", str(cut), "-o", str(wav), "-q"]) == 2  # without --join: not an .avfc file
    assert "not an .avfc file" in capsys.readouterr().err
    assert main(["decode", str(cut), "-o", str(tmp_path / "cut.mp4"), "--join"]) == 0
    printed = capsys.readouterr().out
    assert "10 frames" in printed and "from frame 20" in printed
    assert main(["decode", str(cut), "-o", str(wav), "--join", "-q"]) == 0
    import soundfile as sf
    audio, sr = sf.read(str(wav))
    assert len(audio) == 10 * 16000 // 25
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.avfc"), "--size", "64", "--model", "tiny-test",
                 "--refresh-interval", "2", "--format", "1", "-q"]) == 2
    assert "format_major 2" in capsys.readouterr().err


def test_encode_with_adapt_decoder(clip, tmp_path, capsys):
    out = tmp_path / "adapted.avfc"
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--effort", "live",
                 "--key-qp", "50", "--adapt-decoder", "-q"]) == 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # the fit sends the parameters when they draw the clip closer (format 2.2), else the stream stays 2.0
    assert (info["version"], "decoder_params" in info["units"]) in (("2.2", True), ("2.0", False))
    assert main(["decode", str(out), "-o", str(tmp_path / "adapted.mp4"), "-q"]) == 0
    assert main(["encode", str(clip), "-o", str(tmp_path / "y.avfc"), "--size", "64", "--model", "tiny-test",
                 "--adapt-decoder", "--format", "1", "-q"]) == 2
    assert "format_major 2" in capsys.readouterr().err


def test_refuses_to_overwrite_without_force(clip, tmp_path, capsys):
    out = tmp_path / "x.avfc"
    out.write_bytes(b"keep me")
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "-q"]) == 2
    assert out.read_bytes() == b"keep me"
    assert "-f" in capsys.readouterr().err
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "-q", "-f"]) == 0
    assert out.read_bytes()[:4] == b"AVFC"


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "bad.avfc"
    bad.write_bytes(b"AVFC\x09\x00garbage")
    assert main(["decode", str(bad), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avfc: error:") and "Traceback" not in err
    assert main(["info", str(tmp_path / "nope.avfc")]) == 2


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    assert "tiny-test" in capsys.readouterr().out


def test_encode_with_motion_stride_writes_sparse_units(clip, tmp_path, capsys):
    out = tmp_path / "sparse.avfc"
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--motion-stride", "3",
                 "-q"]) == 0
    assert out.read_bytes()[4:6] == bytes((2, 0))  # the default layout
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["units"]["motion_sparse"]["count"] == 2 and "motion" not in info["units"]
    assert main(["decode", str(out), "-o", str(tmp_path / "sparse.mp4")]) == 0


def test_encode_with_diffusion_lips_writes_a_1_3_stream(clip, tmp_path, capsys):
    out = tmp_path / "lips.avfc"
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--audio-coder",
                 "context", "--motion-source", "speech", "--avcc", "avcc-mrdac-cpu-v3", "--lips-model", "diffusion",
                 "--diffusion-steps", "3", "--diffusion-seed", "42", "--format", "1", "-q"]) == 0
    assert out.read_bytes()[4:6] == bytes((1, 3))
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["avcc"]["diffusion_steps"] == 3 and info["avcc"]["diffusion_seed"] == 42
    assert main(["info", str(out)]) == 0
    assert "lips by diffusion (3 steps, seed 42)" in capsys.readouterr().out
    assert main(["decode", str(out), "-o", str(tmp_path / "lips.mp4"), "-q"]) == 0
    # the diffusion needs lips from speech
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.avfc"), "--size", "64", "--model", "tiny-test",
                 "--lips-model", "diffusion", "-q"]) == 2
    assert main(["models"]) == 0
    assert "avcc-mrdac-cpu-v3 (--lips-model diffusion)" in capsys.readouterr().out


def test_encode_hold_margin_holds_more_motion(clip, tmp_path, capsys):
    motion = {}
    for margin in ("0", "10"):
        out = tmp_path / f"margin{margin}.avfc"
        assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--audio", "none",
                     "--key-qp", "35", "--packet-frames", "10", "--hold-margin", margin, "--effort", "detector",
                     "-q"]) == 0
        assert main(["info", str(out), "--json"]) == 0
        motion[margin] = json.loads(capsys.readouterr().out)["units"]["motion"]["bytes"]
    assert motion["10"] < motion["0"]  # a huge margin holds every packet
    assert main(["encode", str(clip), "-o", str(tmp_path / "bad.avfc"), "--size", "64", "--model", "tiny-test",
                 "--hold-margin", "-1", "-q"]) == 2
    assert "motion_hold_margin" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("avfc: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def no_work(monkeypatch):
    """avfc.api.encode and decode that fail the test if they are called: checks come before work."""
    def boom(*a, **k):
        raise AssertionError("the command started work before checking its paths")

    monkeypatch.setattr("avfc.api.encode", boom)
    monkeypatch.setattr("avfc.api.decode", boom)


def test_unwritable_output_is_refused_before_any_work(clip, tmp_path, capsys, no_work):
    missing = tmp_path / "no" / "such" / "dir"
    assert main(["encode", str(clip), "-o", str(missing / "x.avfc")]) == 2
    assert f"no such directory {missing}" in _one_line_error(capsys)
    assert main(["decode", str(GOLDEN), "-o", str(missing / "x.mp4")]) == 2
    assert "no such directory" in _one_line_error(capsys)
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    assert main(["encode", str(clip), "-o", str(a_file / "x.avfc")]) == 2
    assert "is not a directory" in _one_line_error(capsys)
    for force in ([], ["-y"]):  # a directory is never overwritten
        assert main(["decode", str(GOLDEN), "-o", str(tmp_path), *force]) == 2
        assert "is a directory" in _one_line_error(capsys)
    assert main(["decode", str(GOLDEN), "-o", str(tmp_path / "x.avi")]) == 2  # a suffix decode cannot write
    assert ".mp4 or .wav" in _one_line_error(capsys)
    assert main(["encode", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "x.avfc")]) == 2  # missing input
    assert "no such file" in _one_line_error(capsys)
    assert main(["decode", str(tmp_path), "-o", str(tmp_path / "x.mp4")]) == 2  # a directory as input
    assert "is a directory" in _one_line_error(capsys)


def test_output_without_permission_is_refused_before_any_work(clip, tmp_path, capsys, no_work, monkeypatch):
    # os.access is patched: tests may run as root, for whom chmod refuses nothing
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.avfc")]) == 2
    assert "permission denied" in _one_line_error(capsys)
    old = tmp_path / "old.mp4"
    old.write_bytes(b"keep me")
    assert main(["decode", str(GOLDEN), "-o", str(old), "-y"]) == 2
    assert "permission denied" in _one_line_error(capsys)
    assert old.read_bytes() == b"keep me"


def test_yes_is_the_overwrite_flag_beside_force(clip, tmp_path, capsys, monkeypatch):
    calls = []

    def fake_encode(src, dst, **kw):
        calls.append(dst)
        Path(dst).write_bytes(b"AVFC new")
        return SimpleNamespace(warnings=[])

    monkeypatch.setattr("avfc.api.encode", fake_encode)
    out = tmp_path / "x.avfc"
    out.write_bytes(b"keep me")
    assert main(["encode", str(clip), "-o", str(out), "-q"]) == 2
    err = _one_line_error(capsys)
    assert "-y" in err and "-f" in err and out.read_bytes() == b"keep me" and not calls
    for flag in ("-y", "--yes", "-f", "--force"):
        out.write_bytes(b"keep me")
        assert main(["encode", str(clip), "-o", str(out), "-q", flag]) == 0
        assert out.read_bytes() == b"AVFC new"
    assert len(calls) == 4


def test_info_read_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["info", str(tmp_path / "nope.avfc")]) == 2
    assert "no such file" in _one_line_error(capsys)
    assert main(["info", str(tmp_path)]) == 2
    assert "is a directory" in _one_line_error(capsys)
    assert main(["info", str(GOLDEN), "--json"]) == 0
    capsys.readouterr()

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # as root, chmod 000 would not refuse the read
    assert main(["info", str(GOLDEN)]) == 2
    assert f"cannot read {GOLDEN}: Permission denied" in _one_line_error(capsys)


@pytest.mark.parametrize("args", [["info", "--json", str(GOLDEN)], ["models"]])
def test_a_closed_pipe_ends_the_command_quietly(args):
    """`avfc info --json x.avfc | head -1`: the reader goes away before the command writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that is gone before the first byte: every write fails with EPIPE
    try:
        p = subprocess.run([sys.executable, "-m", "avfc", *args], stdout=write_end, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    finally:
        os.close(write_end)
    assert p.returncode == EXIT_BROKEN_PIPE == 141
    assert p.stderr == ""  # no traceback, no "Exception ignored" at exit


def test_a_reader_that_leaves_early_gets_what_it_read(tmp_path):
    """A shell pipeline into `head -1`: the first line arrives, the command ends without a traceback."""
    p = subprocess.run(f'"{sys.executable}" -m avfc info --json "{GOLDEN}" | head -1; exit ${{PIPESTATUS[0]}}',
                       shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert p.stdout == "{\n" and p.stderr == ""
    assert p.returncode in (0, EXIT_BROKEN_PIPE)  # 0 when the whole output fit the pipe before head left


def test_reference_and_key_policy_flags_reach_the_configuration(clip, tmp_path, monkeypatch):
    seen = {}

    def fake_encode(src, dst, **kw):
        seen.update(kw)
        return SimpleNamespace(warnings=[])

    monkeypatch.setattr("avfc.api.encode", fake_encode)
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.avfc"), "-q", "--reference-mode", "bidirectional",
                 "--key-policy", "adaptive", "--key-drop-db", "1.5", "--key-min-distance", "7", "--max-refs", "3"]) == 0
    assert (seen["reference_mode"], seen["key_policy"], seen["key_drop_db"], seen["key_min_distance"],
            seen["max_refs"]) == ("bidirectional", "adaptive", 1.5, 7, 3)


def test_encode_bidirectional_and_adaptive_from_the_command_line(clip, tmp_path, capsys):
    common = [str(clip), "--size", "64", "--model", "tiny-test", "--audio", "none", "--key-qp", "35",
              "--packet-frames", "10", "-q"]
    out = tmp_path / "bi.avfc"
    assert main(["encode", *common, "-o", str(out), "--reference-mode", "bidirectional", "--key-interval", "10",
                 "--max-refs", "2"]) == 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["header"]["reference_mode"], info["header"]["max_refs"]) == (1, 2)
    assert info["units"]["key_frame"]["count"] == 3  # frames 0, 10, 20 of 30
    out = tmp_path / "adaptive.avfc"
    assert main(["encode", *common, "-o", str(out), "--key-policy", "adaptive", "--key-drop-db", "0.01",
                 "--key-min-distance", "5"]) == 0
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["units"]["key_frame"]["count"] > 1
    # bi-directional mode needs a key interval: refused in one line
    assert main(["encode", *common, "-o", str(tmp_path / "x.avfc"), "--reference-mode", "bidirectional"]) == 2
    assert "bidirectional mode needs" in _one_line_error(capsys)


def test_max_refs_above_the_model_is_refused_before_any_work(clip, tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the encode analysed the clip before refusing max_refs")

    monkeypatch.setattr("avfc.api.analyse_clip", boom)
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.avfc"), "--size", "64", "--model", "mrdac-cpu-v3",
                 "--max-refs", "5"]) == 2
    err = _one_line_error(capsys)
    assert "max_refs 5" in err and "at most 4" in err


def test_encode_first_key_and_info_says_where_the_key_frames_fall(clip, tmp_path, capsys):
    common = [str(clip), "--size", "64", "--model", "tiny-test", "--audio", "none", "--key-qp", "35", "-q"]
    out = tmp_path / "first.avfc"
    assert main(["encode", *common, "-o", str(out), "--first-key", "7"]) == 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["key_frames"] == [7] and info["reference_mode"] == "bidirectional"
    assert main(["info", str(out)]) == 0
    assert "at frame 7; bidirectional" in capsys.readouterr().out
    out = tmp_path / "zero.avfc"
    assert main(["encode", *common, "-o", str(out), "--first-key", "0", "--key-interval", "10"]) == 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["key_frames"] == [0, 10, 20] and info["reference_mode"] == "low-delay"
    # bi-directional: a key frame in every 10-frame window, placed by the search's effort unless --fixed-keys
    bidir = [*common, "--reference-mode", "bidirectional", "--key-interval", "10", "--max-refs", "2"]
    keys = {}
    for name, extra in (("placed", []), ("fixed", ["--fixed-keys"])):
        out = tmp_path / f"{name}.avfc"
        assert main(["encode", *bidir, *extra, "-o", str(out)]) == 0
        assert main(["info", str(out), "--json"]) == 0
        keys[name] = json.loads(capsys.readouterr().out)["key_frames"]
    assert keys["fixed"] == [0, 10, 20] and keys["placed"] != keys["fixed"]
    assert [k // 10 for k in keys["placed"]] == [0, 1, 2]  # one in each window
    # a first key past the clip's 30 frames: refused in one line
    assert main(["encode", *common, "-o", str(tmp_path / "x.avfc"), "--first-key", "40"]) == 2
    assert "first_key 40" in _one_line_error(capsys)
