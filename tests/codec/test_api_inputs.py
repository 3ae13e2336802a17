"""What avfc.encode / avfc.decode accept and refuse: output paths, torch tensors, a Media's frame
rate, faces the crop cannot find, and max_refs against the model."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

import avfc
import avfc.api
import avfc.media.crop as crop
from avfc.codec import Encoder
from avfc.config import EncoderConfig
from avfc.errors import AvfcError, ConfigError, FileAccessError, FormatError, MediaError
from avfc.media import Media
from synthetic import speech_like, talking_face

SIZE = 64
MODEL = "tiny-test"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v2_0-codec2-av1.avfc"


def small(**kw):
    return dict(size=SIZE, model=MODEL, key_qp=30, packet_frames=10, **kw)


@pytest.fixture
def no_work(monkeypatch):
    """encode's analysis and media reading fail the test if called: the checks come first."""
    def boom(*a, **k):
        raise AssertionError("encode started work before checking its arguments")

    monkeypatch.setattr(avfc.api, "analyse_clip", boom)
    monkeypatch.setattr(avfc.api, "prepare", boom)


# ---------------------------------------------------------------- output and input paths


def test_encode_refuses_an_unwritable_output_before_any_work(tmp_path, no_work, monkeypatch):
    frames = talking_face(5, SIZE, SIZE)
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileAccessError, match=f"no such directory {missing}"):
        avfc.encode(frames, missing / "x.avfc", **small())
    with pytest.raises(FileAccessError, match="is a directory"):
        avfc.encode(frames, tmp_path, **small())
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    with pytest.raises(FileAccessError, match="is not a directory"):
        avfc.encode(frames, a_file / "x.avfc", **small())
    # os.access is patched: tests may run as root, for whom chmod refuses nothing
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)
    with pytest.raises(FileAccessError, match="permission denied"):
        avfc.encode(frames, tmp_path / "x.avfc", **small())
    assert issubclass(FileAccessError, AvfcError)


def test_encode_wraps_a_failing_final_write(tmp_path, monkeypatch):
    def refuse(self, data):
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(FileAccessError, match="No space left on device"):
        avfc.encode(talking_face(5, SIZE, SIZE), tmp_path / "x.avfc", audio="none", **small())


def test_decode_of_a_path_it_cannot_read_is_a_file_access_error(tmp_path):
    with pytest.raises(FileAccessError, match="cannot read .*nope.avfc"):
        avfc.decode(tmp_path / "nope.avfc")
    with pytest.raises(FileAccessError, match="cannot read"):
        avfc.decode(tmp_path)  # a directory
    with pytest.raises(FileAccessError, match="cannot read"):
        with open(tmp_path / "w.avfc", "wb") as f:  # a file object opened for writing
            avfc.decode(f)
    with pytest.raises(FormatError, match="binary mode"):
        avfc.decode(io.StringIO("AVFC"))


def test_write_decoded_checks_the_path_and_wraps_the_writers(tmp_path, monkeypatch):
    res = avfc.decode(GOLDEN)
    with pytest.raises(FileAccessError, match="no such directory"):
        avfc.api.write_decoded(res, tmp_path / "no" / "x.mp4")
    with pytest.raises(FileAccessError, match="no such directory"):
        avfc.api.write_decoded(res, tmp_path / "no" / "x.wav")
    with pytest.raises(ConfigError, match=".mp4 or .wav"):
        avfc.api.write_decoded(res, tmp_path / "x.avi")

    def failing_writer(path, *a, **k):
        try:
            raise PermissionError(13, "Permission denied", str(path))
        except OSError as exc:
            raise MediaError(f"cannot write {path}: {exc}") from exc

    monkeypatch.setattr(avfc.api, "write_media", failing_writer)
    with pytest.raises(FileAccessError, match="x.mp4: Permission denied"):
        avfc.api.write_decoded(res, tmp_path / "x.mp4")


# ---------------------------------------------------------------- torch tensors


def test_torch_tensors_are_taken_where_arrays_are():
    frames = talking_face(12, SIZE, SIZE)
    pcm = speech_like(12 / 25)
    want = avfc.encode(frames, pcm=pcm, **small()).data
    got = avfc.encode(torch.from_numpy(frames), pcm=torch.from_numpy(pcm).requires_grad_(), **small()).data
    assert got == want
    half = avfc.encode(torch.from_numpy(frames), pcm=torch.from_numpy(pcm).to(torch.bfloat16), **small())
    assert len(half.data) > 0  # reduced-precision speech is read as float32


def test_a_channels_first_tensor_is_refused_with_the_fix():
    frames = torch.from_numpy(talking_face(4, SIZE, SIZE)).permute(0, 3, 1, 2)
    with pytest.raises(MediaError, match=r"channels-last.*permute\(0, 2, 3, 1\)"):
        avfc.encode(frames, **small())
    with pytest.raises(MediaError, match="uint8"):
        avfc.encode(torch.zeros(4, SIZE, SIZE, 3), **small())  # float frames


def _stream(frames, pcm, chunk: int) -> bytes:
    """A streaming Encoder fed ``chunk`` frames (and their speech) at a time."""
    enc = Encoder(EncoderConfig.make(**small(effort="live")))
    out = b""
    for i in range(0, len(frames), chunk):
        enc.push_frames(frames[i:i + chunk])
        enc.push_audio(pcm[i * 640:(i + chunk) * 640])
        out += enc.read()
    enc.close()
    return out + enc.read()


def test_the_streaming_encoder_takes_tensors_where_it_takes_arrays():
    frames = talking_face(12, SIZE, SIZE)
    pcm = speech_like(12 / 25)
    want = _stream(frames, pcm, 5)
    assert _stream(torch.from_numpy(frames), torch.from_numpy(pcm).requires_grad_(), 5) == want
    assert _stream(torch.from_numpy(frames), torch.from_numpy(pcm).double(), 5) == want
    half = _stream(torch.from_numpy(frames), torch.from_numpy(pcm).to(torch.bfloat16), 5)
    assert len(half) > 0  # reduced-precision speech is read as float32
    enc = Encoder(EncoderConfig.make(**small(effort="live")))
    with pytest.raises(MediaError, match="uint8"):
        enc.push_frames(torch.zeros(2, SIZE, SIZE, 3))  # float frames


# ---------------------------------------------------------------- a Media's frame rate


def test_a_media_at_another_frame_rate_is_refused_naming_both(no_work):
    media = Media.from_arrays(talking_face(6, SIZE, SIZE), 30)
    with pytest.raises(ConfigError, match="30 fps.*25 fps"):
        avfc.encode(media, **small())


def test_a_media_at_the_configured_rate_is_coded_at_it():
    media = Media.from_arrays(talking_face(6, SIZE, SIZE), 30)
    res = avfc.encode(media, fps=30, audio="none", **small())
    assert res.header.fps_num == 30 and res.duration == pytest.approx(6 / 30)


# ---------------------------------------------------------------- faces


def test_no_face_warns_and_codes_the_centred_square(monkeypatch):
    monkeypatch.setattr(crop, "_detect_faces", lambda rgb: [])
    frames = talking_face(6, 96, SIZE)
    res = avfc.encode(frames, audio="none", **small())
    assert (res.crop.x, res.crop.w) == (16, SIZE)  # the centred square
    assert any("no face found in the 96x64 input" in w for w in res.warnings), res.warnings


def test_several_faces_warn_that_the_largest_is_coded(monkeypatch):
    two = [(30.0, 30.0, 24.0), (70.0, 30.0, 20.0)]
    monkeypatch.setattr(crop, "_detect_faces", lambda rgb: two)
    res = avfc.encode(talking_face(6, 96, SIZE), audio="none", **small())
    assert any("2 faces found" in w and "largest" in w for w in res.warnings), res.warnings
    assert res.crop == crop.box_around_face(30.0, 30.0, 24.0, 96, SIZE)


def test_one_face_or_square_input_gives_no_face_warning(monkeypatch):
    frames = talking_face(6, 96, SIZE)
    monkeypatch.setattr(crop, "_detect_faces", lambda rgb: [(40.0, 30.0, 24.0)])
    assert crop.face_warnings(frames) == []
    assert crop.face_warnings(frames, method="center") == []
    seen = []
    monkeypatch.setattr(crop, "_detect_faces", lambda rgb: seen.append(1) or [])
    assert crop.face_warnings(talking_face(3, SIZE, SIZE)) == [] and not seen  # square: coded whole


# ---------------------------------------------------------------- max_refs


def test_max_refs_above_what_the_model_draws_is_refused_at_configuration(no_work):
    cfg = EncoderConfig.make(size=SIZE, model="mrdac-cpu-v3", max_refs=5, audio="none")
    with pytest.raises(ConfigError, match=r"max_refs 5 .*mrdac-cpu-v3.* at most 4"):
        Encoder(cfg)
    with pytest.raises(ConfigError, match=r"max_refs 5 .* at most 4"):
        avfc.encode(talking_face(4, SIZE, SIZE), config=cfg)  # before the analysis (no_work)
    Encoder(EncoderConfig.make(cfg, max_refs=4))  # the model's own bound is fine
    Encoder(EncoderConfig.make(size=SIZE, model=MODEL, max_refs=8, audio="none"))  # tiny-test sets none


def test_decode_checks_its_output_before_decoding(tmp_path, monkeypatch):
    import avfc.api as api
    from avfc.errors import ConfigError, FileAccessError

    def never(*a, **k):
        raise AssertionError("decoded before checking the output")

    monkeypatch.setattr(api, "Decoder", never)
    with pytest.raises(FileAccessError):
        api.decode(b"not read", tmp_path / "missing" / "out.mp4")
    with pytest.raises(ConfigError):
        api.decode(b"not read", tmp_path / "out.avi")
