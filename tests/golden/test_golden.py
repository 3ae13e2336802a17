"""Golden .avfc files: every later avfc must decode them to the same integers.

The files were written once by make_golden.py (``v1_0-*``: avfc 0.1.0, format 1.0; ``v1_1-*``:
format 1.1 with the AVCC bundle ``avcc-mrdac-cpu-v1``; ``v1_2-*``: format 1.2, sparse motion; ``v1_3-*``: format
1.3, diffusion lips with ``avcc-mrdac-cpu-v3``; ``v2_0-*``: format 2.0, the compact layout; ``v2_1-*``: format
2.1, REFRESH units for random access; ``v2_2-*``: format 2.2, decoder parameters; ``v2_3-*``: format 2.3,
REFRESH with the AVCC modes) and are never
regenerated. Decoded motion, audio tokens and key-frame pictures must hash exactly the same;
rendered frames (a float network) must match per-frame means within a small tolerance. (The
keypoints of ``v1_3-*`` come from the float64 diffusion sampler: exact on the machine that wrote them,
almost always equal elsewhere; docs/bitstream.md F.10.7.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from make_golden import (
    CHECKED_FRAMES,
    FRAME_TOLERANCE,
    MODEL_FRAMES,
    MODEL_STREAMS,
    decoded_frames,
    describe,
    describe_model,
    unpack_frames,
)

HERE = Path(__file__).parent
GOLDEN = sorted(p.stem for p in HERE.glob("*.avfc"))
#: the streams of the shipped models (make_golden.MODEL_STREAMS), checked by test_shipped_model_golden_file
MODEL_GOLDEN = sorted(n for n in GOLDEN if n.startswith("v2_0-model-"))


def test_there_are_golden_files_for_format_1_0():
    assert {"v1_0-codec2-av1", "v1_0-opus-hevc-keys", "v1_0-video-only"} <= set(GOLDEN)


def test_there_are_golden_files_for_format_1_1():
    assert {"v1_1-context-predicted", "v1_1-lips-from-speech"} <= set(GOLDEN)
    for name in ("v1_1-context-predicted", "v1_1-lips-from-speech"):
        assert (HERE / f"{name}.avfc").read_bytes()[4:6] == bytes((1, 1))


def test_there_are_golden_files_for_format_1_2():
    assert "v1_2-sparse-motion" in GOLDEN
    data = (HERE / "v1_2-sparse-motion.avfc").read_bytes()
    assert data[4:6] == bytes((1, 2))
    from avfc import bitstream as bs

    units = bs.parse_stream(data).units
    assert any(u.type == bs.UnitType.MOTION_SPARSE for u in units)
    assert not any(u.type == bs.UnitType.MOTION for u in units)


def test_there_are_golden_files_for_format_1_3():
    assert "v1_3-diffusion-lips" in GOLDEN
    data = (HERE / "v1_3-diffusion-lips.avfc").read_bytes()
    assert data[4:6] == bytes((1, 3))
    from avfc import bitstream as bs

    header = bs.parse_stream(data).header
    assert header.diffusion_lips and header.avcc_name == "avcc-mrdac-cpu-v3"


def test_there_are_golden_files_for_format_2_0():
    names = {"v2_0-codec2-av1", "v2_0-cropped-sparse-keys", "v2_0-context-predicted"}
    assert names <= set(GOLDEN)
    from avfc import bitstream as bs

    headers = {}
    for name in names:
        data = (HERE / f"{name}.avfc").read_bytes()
        assert data[4:6] == bytes((2, 0))
        parsed = bs.parse_stream(data)
        assert all(u.crc_size == 2 for u in parsed.units)
        headers[name] = parsed.header
    assert headers["v2_0-cropped-sparse-keys"].cropped and headers["v2_0-cropped-sparse-keys"].sparse_motion
    assert headers["v2_0-context-predicted"].avcc_name == "avcc-mrdac-cpu-v3"
    assert len(headers["v2_0-codec2-av1"].weights_sha256) == 16  # the 8-byte prefix


def test_there_is_a_golden_file_whose_only_key_frame_follows_the_frames_it_draws():
    """Format 2.0 in bi-directional mode with its one key frame at frame 12 (an encoder's placed key frame): the
    key frame comes before any motion and frames 0-11 are drawn from it."""
    from avfc import bitstream as bs

    data = (HERE / "v2_0-first-key.avfc").read_bytes()
    parsed = bs.parse_stream(data)
    assert data[4:6] == bytes((2, 0)) and parsed.header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL
    video = [bs.decode_payload(u, 2) for u in parsed.units if u.type in (bs.UnitType.KEY_FRAME, bs.UnitType.MOTION)]
    assert isinstance(video[0], bs.KeyFrame) and video[0].frame_index == 12
    assert [v.frame_index for v in video if isinstance(v, bs.KeyFrame)] == [12]
    expected = json.loads((HERE / "v2_0-first-key.json").read_text())
    assert expected["frames"] == 30 and expected["issues"] == []


def test_there_are_golden_files_for_format_2_1():
    """A 2.1 file with REFRESH units at frames 10, 20, 30; joined at each, it decodes to the recorded stream's
    integers from that frame on (and its rendered frames within the tolerance)."""
    assert "v2_1-refresh" in GOLDEN
    from avfc import bitstream as bs
    from avfc.codec import Decoder

    data = (HERE / "v2_1-refresh.avfc").read_bytes()
    assert data[4:6] == bytes((2, 1))
    parsed = bs.parse_stream(data)
    refreshes = [u for u in parsed.units if u.type == bs.UnitType.REFRESH]
    assert [bs.decode_payload(u, 2).frame_index for u in refreshes] == [10, 20, 30]
    expected = json.loads((HERE / "v2_1-refresh.json").read_text())
    full = Decoder(keep_motion=True)
    full.push(data)
    full.close()
    for unit, first in zip(refreshes, (10, 20, 30)):
        dec = Decoder(join=True, keep_motion=True)
        dec.push(data[unit.offset - 3:])  # from the middle of the unit before
        dec.close()
        frames = dec.pull_frames()
        assert dec.first_frame == first and len(frames) == expected["frames"] - first
        assert all(np.array_equal(dec.motion[i], full.motion[i]) for i in range(first, expected["frames"]))
        keys = [int(k) for k in expected["key_frames_sha256"] if int(k) >= first]  # a key frame shows its picture
        assert {k: hashlib.sha256(np.ascontiguousarray(frames[k - first]).tobytes()).hexdigest() for k in keys} == {
            int(k): v for k, v in expected["key_frames_sha256"].items() if int(k) >= first}
        means = frames.reshape(len(frames), -1, 3).mean(axis=1)
        np.testing.assert_allclose(means, np.array(expected["frame_means"][first:]), atol=1.0)


def test_there_are_golden_files_for_format_2_2():
    """A 2.2 file with decoder parameters (tiny-test's six) before frame 0 and after the REFRESH at frame 15:
    the recorded values, and its frames are not those of the zoo's model (decoded with the units dropped)."""
    assert "v2_2-decoder-params" in GOLDEN
    from avfc import bitstream as bs
    from avfc.bitstream.units import encode_unit
    from avfc.codec import Decoder

    data = (HERE / "v2_2-decoder-params.avfc").read_bytes()
    assert data[4:6] == bytes((2, 2))
    parsed = bs.parse_stream(data)
    params = [bs.decode_payload(u, 2) for u in parsed.units if u.type == bs.UnitType.DECODER_PARAMS]
    expected = json.loads((HERE / "v2_2-decoder-params.json").read_text())
    assert [[p.frame_index, p.param_set, p.shift, list(p.values)] for p in params] == expected["decoder_params"]
    stripped = data[:6] + encode_unit(1, parsed.header.to_bytes(2), 2) + b"".join(
        encode_unit(int(u.type), u.payload, 2) for u in parsed.units if u.type != bs.UnitType.DECODER_PARAMS)
    dec = Decoder()
    dec.push(stripped)
    dec.close()
    means = dec.pull_frames().reshape(expected["frames"], -1, 3).mean(axis=1)
    # (small deltas: the fit only corrects the coded key picture's colours; rendering differences between
    # machines move these means by far less than 0.01)
    assert np.abs(means - np.array(expected["frame_means"])).max() > 0.05


@pytest.mark.parametrize("name", ["v2_3-refresh-avcc", "v2_3-refresh-lips"])
def test_there_are_golden_files_for_format_2_3(name):
    """2.3 files (speech-predicted motion with context-coded audio; lips from speech) with REFRESH units at frames
    10, 20, 30 stating 2.3: joined at each, they decode to the whole file's motion integers, audio tokens and key
    pictures from that frame on. The same units labelled 2.1 decode the lips file to other keypoints after a
    REFRESH (2.1 reads the audio before it): the file pins the restart."""
    assert name in GOLDEN
    from avfc import bitstream as bs
    from avfc.bitstream.units import encode_preamble, encode_unit
    from avfc.codec import Decoder

    def decode(data: bytes, join: bool = False) -> Decoder:
        dec = Decoder(join=join, keep_motion=True)
        dec.push(data)
        dec.close()
        return dec

    data = (HERE / f"{name}.avfc").read_bytes()
    assert data[4:6] == bytes((2, 3))
    parsed = bs.parse_stream(data)
    assert parsed.header.avcc_name is not None
    refreshes = [u for u in parsed.units if u.type == bs.UnitType.REFRESH]
    assert [(bs.decode_payload(u, 2).frame_index, bs.decode_payload(u, 2).minor) for u in refreshes] == [
        (10, 3), (20, 3), (30, 3)]
    expected = json.loads((HERE / f"{name}.json").read_text())
    full = decode(data)
    n = expected["frames"]
    for unit, first in zip(refreshes, (10, 20, 30)):
        dec = decode(data[unit.offset - 3:], join=True)
        frames = dec.pull_frames()
        assert dec.first_frame == first and len(frames) == n - first
        assert all(np.array_equal(dec.motion.get(i, -1), full.motion.get(i, -1)) for i in range(first, n))
        assert {k: t for k, t in dec.audio_tokens.items() if k >= first} == {
            k: t for k, t in full.audio_tokens.items() if k >= first}
        keys = {int(k): v for k, v in expected["key_frames_sha256"].items() if int(k) >= first}
        assert {k: hashlib.sha256(np.ascontiguousarray(frames[k - first]).tobytes()).hexdigest() for k in keys} == keys
    if name == "v2_3-refresh-lips":
        as_2_1 = encode_preamble((2, 1)) + encode_unit(1, parsed.header.to_bytes(2), 2) + b"".join(
            encode_unit(int(u.type), bs.Refresh(frame_index=bs.decode_payload(u, 2).frame_index,
                                                header=bs.decode_payload(u, 2).header, minor=1).to_bytes(2)
                        if u.type == bs.UnitType.REFRESH else u.payload, 2) for u in parsed.units)
        old = decode(as_2_1)
        assert not all(np.array_equal(old.motion.get(i, -1), full.motion.get(i, -1)) for i in range(10, n))


def test_there_are_golden_files_for_the_default_and_every_shipped_model():
    from avfc import bitstream as bs
    from avfc.models.zoo import DEFAULT_MODEL, ZOO

    shipped = {n for n in ZOO if n != "tiny-test"}  # (tiny-test: every other golden file)
    assert DEFAULT_MODEL in shipped
    assert {f"v2_0-model-{m}" for m in shipped} == set(MODEL_GOLDEN) == set(MODEL_STREAMS)
    for name in MODEL_GOLDEN:
        data = (HERE / f"{name}.avfc").read_bytes()
        header = bs.parse_stream(data).header
        assert data[4:6] == bytes((2, 0)) and header.model_name == name.removeprefix("v2_0-model-")
        assert (header.width, header.height) == (256, 256)
        assert len(data) < 1024 and (HERE / MODEL_FRAMES.format(name=name)).stat().st_size < 100_000


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", MODEL_GOLDEN)
def test_shipped_model_golden_file(name, threads):
    """A shipped model's stream decodes to the recorded integers exactly (motion, key pictures, audio tokens)
    and to the recorded pictures within FRAME_TOLERANCE levels at every pixel (measured when they were
    written: 0 at every pixel with 1, 2 and 4 threads on the 2-core machine that wrote them), with 1 and 2
    torch threads."""
    data = (HERE / f"{name}.avfc").read_bytes()
    expected = json.loads((HERE / f"{name}.json").read_text())
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"], "the golden file itself changed"
    got = describe_model(data)
    for key in ("frames", "motion_shape", "motion_sha256", "key_pictures_sha256", "audio_tokens_sha256",
                "audio_samples", "issues"):
        assert got[key] == expected[key], key
    np.testing.assert_allclose(np.array(got["frame_means"]), np.array(expected["frame_means"]), atol=0.5)
    want = unpack_frames((HERE / MODEL_FRAMES.format(name=name)).read_bytes(), data)
    frames = decoded_frames(data)[list(CHECKED_FRAMES)]
    assert int(np.abs(frames.astype(np.int16) - want).max()) <= FRAME_TOLERANCE


@pytest.mark.parametrize("name", [n for n in GOLDEN if n not in MODEL_GOLDEN])
def test_golden_file_decodes_to_the_recorded_integers(name):
    data = (HERE / f"{name}.avfc").read_bytes()
    expected = json.loads((HERE / f"{name}.json").read_text())
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"], "the golden file itself changed"
    got = describe(data)
    for key in ("frames", "motion_shape", "motion_sha256", "key_frames_sha256", "audio_tokens_sha256",
                "audio_samples", "issues"):
        assert got[key] == expected[key], key
    np.testing.assert_allclose(np.array(got["frame_means"]), np.array(expected["frame_means"]), atol=1.0)


@pytest.mark.parametrize("name", GOLDEN)
def test_damaged_golden_file_still_decodes_its_intact_units(name):
    from avfc.codec import Decoder

    data = bytearray((HERE / f"{name}.avfc").read_bytes())
    data[len(data) // 2] ^= 0x40
    dec = Decoder()
    dec.push(bytes(data))
    dec.close()
    expected = json.loads((HERE / f"{name}.json").read_text())
    assert len(dec.pull_frames()) == expected["frames"]
    assert dec.issues
