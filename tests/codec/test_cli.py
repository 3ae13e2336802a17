"""The avfc command, run in-process."""

from __future__ import annotations

import json

import pytest

from avfc.cli import main
from synthetic import write_clip


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
                     "--key-qp", "35", "--packet-frames", "10", "--hold-margin", margin, "-q"]) == 0
        assert main(["info", str(out), "--json"]) == 0
        motion[margin] = json.loads(capsys.readouterr().out)["units"]["motion"]["bytes"]
    assert motion["10"] < motion["0"]  # a huge margin holds every packet
    assert main(["encode", str(clip), "-o", str(tmp_path / "bad.avfc"), "--size", "64", "--model", "tiny-test",
                 "--hold-margin", "-1", "-q"]) == 2
    assert "motion_hold_margin" in capsys.readouterr().err
