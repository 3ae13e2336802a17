"""`-` for stdin and stdout: `avfc encode - -`, `avfc decode - -`, `avfc info -`, through real pipes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

import avfc
from avfc.cli import EXIT_BROKEN_PIPE, main
from synthetic import write_clip

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v2_0-codec2-av1.avfc"
ENCODE = ["--size", "64", "--model", "tiny-test", "--effort", "live", "--key-qp", "40", "--packet-frames", "10"]


def _avfc(*args: str) -> str:
    return f'"{sys.executable}" -m avfc ' + " ".join(f'"{a}"' for a in args)


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("pipes") / "talk.mp4", n=20)


def test_a_clip_goes_through_encode_and_decode_by_pipes(clip, tmp_path):
    """cat clip | avfc encode - - | tee s.avfc | avfc decode - - > out.mkv: the same stream and pictures as
    with files; only the data is on stdout (the commands' own lines on stderr)."""
    piped, mkv = tmp_path / "piped.avfc", tmp_path / "piped.mkv"
    cmd = (f'cat "{clip}" | {_avfc("encode", "-", "-", *ENCODE)} | tee "{piped}" | {_avfc("decode", "-", "-")} '
           f'> "{mkv}"; exit $(( ${{PIPESTATUS[1]}} | ${{PIPESTATUS[3]}} ))')
    p = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "<stdout>: 20 frames" in p.stderr  # both summaries went to stderr
    filed = tmp_path / "filed.avfc"
    assert main(["encode", str(clip), str(filed), *ENCODE, "-q"]) == 0
    assert piped.read_bytes() == filed.read_bytes()
    filed_mkv = tmp_path / "filed.mkv"
    assert main(["decode", str(filed), str(filed_mkv), "-q"]) == 0
    assert np.array_equal(_frames(mkv), _frames(filed_mkv))
    with av.open(str(mkv)) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]


def test_decode_to_stdout_as_wav_and_info_from_stdin(tmp_path):
    wav = tmp_path / "piped.wav"
    cmd = (f'{_avfc("decode", str(GOLDEN), "-", "--output-format", "wav", "-q")} > "{wav}" && '
           f'cat "{GOLDEN}" | {_avfc("info", "-", "--json")}')
    p = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["bytes"] == GOLDEN.stat().st_size
    want = avfc.decode(GOLDEN).audio
    got, rate = sf.read(str(wav), dtype="int16")  # a streamed WAV: its header declares no length
    assert rate == 16000 and len(got) == len(want)
    # (Codec2 decodes unvoiced phases from a process-global generator: close, not equal, across processes)
    assert np.corrcoef(got.astype(np.float64), want)[0, 1] > 0.99


@pytest.mark.parametrize("args", [["decode", str(GOLDEN), "-"], ["encode", "CLIP", "-", *ENCODE]])
def test_a_reader_gone_before_the_data_ends_the_command_quietly(args, clip):
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout fails with EPIPE
    try:
        p = subprocess.run([sys.executable, "-m", "avfc", *[str(clip) if a == "CLIP" else a for a in args]],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(write_end)
    assert p.returncode == EXIT_BROKEN_PIPE
    assert p.stderr == ""


class _Std:
    """A stand-in for sys.stdin / sys.stdout with a binary buffer (not a terminal)."""

    def __init__(self, data: bytes = b"") -> None:
        self.buffer = io.BytesIO(data)

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_decode_from_stdin_in_process_streams_the_file_object(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Std(GOLDEN.read_bytes()))
    out = tmp_path / "x.wav"
    assert main(["decode", "-", str(out), "-q"]) == 0
    assert len(sf.read(str(out))[0]) == len(avfc.decode(GOLDEN).audio)


def test_stdio_mistakes_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Std(b""))
    assert main(["encode", "-"]) == 2
    assert "encoding stdin: give the output file" in capsys.readouterr().err
    assert main(["decode", "-"]) == 2
    assert "decoding stdin: give the output file" in capsys.readouterr().err
    assert main(["decode", str(GOLDEN), str(tmp_path / "a.mkv"), "--output-format", "wav"]) == 2
    assert "--output-format is for stdout" in capsys.readouterr().err
    assert main(["decode", str(GOLDEN), str(tmp_path / "a.mkv"), "-o", str(tmp_path / "b.mkv")]) == 2
    assert "two outputs given" in capsys.readouterr().err
    tty = _Std()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdout", tty)
    assert main(["decode", str(GOLDEN), "-"]) == 2
    assert "refusing to write binary data to a terminal" in capsys.readouterr().err
    assert main(["info", "-"]) == 2  # empty stdin: not a stream
