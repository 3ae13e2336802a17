"""Lips from speech by the diffusion model end to end (format 1.3): signalling, the bundle choice,
identical decodes in another process and in any split of the input, key frames, refusals."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.avcc.tokens import split_700c
from avfc.avcc.zoo import load_avcc
from avfc.codec import Decoder
from avfc.errors import ConfigError, ModelMismatchError
from synthetic import speech_like, talking_face

SIZE = 64
MODEL = "tiny-test"  # 20 motion channels like mrdac-cpu-v2: the bundles fit it (named explicitly)
N = 60
V3, V2 = "avcc-mrdac-cpu-v3", "avcc-mrdac-cpu-v2"


@pytest.fixture(scope="module")
def media():
    return talking_face(N, SIZE, SIZE, seed=11), speech_like(N / 25, seed=11)


def _encode(media, **mode):
    frames, pcm = media
    mode = {"audio_coder": "context", "motion_source": "speech", "key_qp": 40, **mode}
    mode.setdefault("format_major", 1)  # the 1.3 layout (2.0: tests/codec/test_format_2.py)
    return avfc.encode(frames, pcm=pcm, model=MODEL, size=SIZE, **mode)


@pytest.fixture(scope="module")
def streams(media):
    return {
        "diffusion": _encode(media, avcc=V3, lips_model="diffusion", diffusion_steps=4, diffusion_seed=77,
                             key_interval=30, max_refs=2),
        "regressor": _encode(media, avcc=V2, key_interval=30, max_refs=2),
    }


def _decode(data: bytes, chunks=None) -> Decoder:
    dec = Decoder(keep_motion=True)
    if chunks is None:
        dec.push(data)
    else:
        pos = 0
        for size in chunks:
            dec.push(data[pos:pos + size])
            pos += size
        dec.push(data[pos:])
    dec.close()
    return dec


def test_the_header_signals_diffusion_and_the_stream_is_1_3(streams):
    parsed = bs.parse_stream(streams["diffusion"].data)
    h = parsed.header
    assert parsed.version == (1, 3) and h.diffusion_lips
    assert (h.diffusion_steps, h.diffusion_seed, h.avcc_name) == (4, 77, V3)
    assert h.avcc_sha256 == load_avcc(V3).entry.sha256
    reg = bs.parse_stream(streams["regressor"].data)
    assert reg.version == (1, 1) and not reg.header.diffusion_lips
    # the same units: no motion in either
    types = {u.type for u in parsed.units}
    assert types.isdisjoint({bs.UnitType.MOTION, bs.UnitType.MOTION_PRED, bs.UnitType.MOTION_SPARSE})
    # the header costs 5 bytes more (steps, seed); the rest is the same size
    assert len(streams["diffusion"].data) - len(streams["regressor"].data) == 5


def test_the_default_bundle_depends_on_the_lips_model(media):
    frames, pcm = media
    res = avfc.encode(frames[:10], pcm=pcm[:6400], model="mrdac-cpu-v2", size=SIZE, key_qp=40,
                      audio_coder="context", motion_source="speech", lips_model="diffusion")
    assert bs.parse_stream(res.data).header.avcc_name == V3
    res = avfc.encode(frames[:10], pcm=pcm[:6400], model="mrdac-cpu-v2", size=SIZE, key_qp=40,
                      audio_coder="context", motion_source="speech")
    assert bs.parse_stream(res.data).header.avcc_name == V2


def test_decoded_keypoints_are_the_sampler_output_plus_the_key_keypoints(streams):
    dec = _decode(streams["diffusion"].data)
    assert dec.issues == [] and len(dec.pull_frames()) == N
    diff = load_avcc(V3).diffusion
    fields = np.array([split_700c(int(dec.audio_tokens[i])) for i in range(len(dec.audio_tokens))])
    offsets = diff.generate(fields, N, seed=77, steps=4)
    refs = {r.frame_index: r for r in dec._refs}
    assert sorted(refs) == [0, 30]
    from avfc.entropy import quantize

    ref_q = {i: quantize(r.keypoints[0].numpy().astype(np.float64).reshape(-1), 5) for i, r in refs.items()}
    for i, q in dec.motion.items():
        base = 30 if i >= 30 else 0
        np.testing.assert_array_equal(q, np.clip(ref_q[base] + offsets[i], -32767, 32767))
    # a key frame changes the keypoints they are added to, not the offsets
    assert set(dec.motion) == set(range(1, N)) - {30}


def test_any_split_of_the_input_decodes_the_same(streams):
    data = streams["diffusion"].data
    whole = _decode(data)
    rng = np.random.default_rng(0)
    for _ in range(2):
        chunks = rng.integers(1, 200, size=len(data) // 50).tolist()
        dec = _decode(data, chunks)
        np.testing.assert_array_equal(dec.motion_array(), whole.motion_array())
    byte_by_byte = _decode(data, [1] * len(data))
    np.testing.assert_array_equal(byte_by_byte.motion_array(), whole.motion_array())


def test_frames_come_out_block_by_block_as_the_audio_arrives(streams):
    data = streams["diffusion"].data
    units = bs.parse_stream(data).units
    starts = [u.offset for u in units] + [len(data)]
    dec = Decoder()
    dec.push(data[:starts[0]])  # preamble and header
    drawn = []
    for a, b in zip(starts, starts[1:]):
        dec.push(data[a:b])
        drawn.append(len(dec.pull_frames()))
    dec.close()
    total = np.cumsum(drawn)
    # until the end of the input, only whole blocks of 25 frames whose lookahead has arrived are drawn
    assert all(t % 25 == 0 for t in total) and total[-1] == 50
    assert total[-1] + len(dec.pull_frames()) == N


def test_decoding_in_another_process_gives_the_same_keypoints_and_frames(streams, tmp_path):
    path = tmp_path / "s.avfc"
    path.write_bytes(streams["diffusion"].data)
    code = ("import json,hashlib,avfc;from avfc.codec import Decoder;d=Decoder(keep_motion=True);"
            f"d.push(open({str(path)!r},'rb').read());d.close();f=d.pull_frames();"
            "print(json.dumps([d.motion_array().tolist(),hashlib.sha256(f.tobytes()).hexdigest()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    motion, frames_sha = json.loads(out.stdout)
    dec = _decode(streams["diffusion"].data)
    assert motion == dec.motion_array().tolist()
    assert frames_sha == hashlib.sha256(dec.pull_frames().tobytes()).hexdigest()


def test_the_diffusion_moves_the_lips_differently_from_the_regressor(streams):
    a, b = _decode(streams["diffusion"].data), _decode(streams["regressor"].data)
    assert a.motion_array().shape == b.motion_array().shape == (N - 2, 20)
    assert not np.array_equal(a.motion_array(), b.motion_array())


def test_config_rules(media):
    with pytest.raises(ConfigError, match="lips_model 'diffusion' needs motion_source 'speech'"):
        _encode(media, motion_source="predicted", avcc=V3, lips_model="diffusion")
    with pytest.raises(ConfigError, match="has no diffusion lips model"):
        _encode(media, avcc=V2, lips_model="diffusion")
    with pytest.raises(ConfigError):
        _encode(media, avcc=V3, lips_model="diffusion", diffusion_steps=65)
    with pytest.raises(ConfigError):
        _encode(media, avcc=V3, lips_model="diffusion", diffusion_seed=-1)


def test_a_stream_asking_for_diffusion_from_a_bundle_without_it_is_refused(streams):
    parsed = bs.parse_stream(streams["diffusion"].data)
    v2 = load_avcc(V2).entry
    header = parsed.header.model_copy(update={"avcc_name": v2.name, "avcc_sha256": v2.sha256})
    out = []
    w = bs.StreamWriter(type("F", (), {"write": lambda self, b: out.append(b)})())
    w.write_header(bs.SequenceHeader(**header.model_dump()))
    for u in parsed.units:
        w.write_unit(u.type, u.payload)
    with pytest.raises(ModelMismatchError, match="diffusion"):
        _decode(b"".join(out))


def test_a_1_2_reader_would_draw_the_regressor_lips(streams):
    """What a 1.2 reader makes of a 1.3 stream whose bundle it had: the flag and the two fields are
    ignored, so it draws the lips with lips.* (the same arrays as v2's)."""
    parsed = bs.parse_stream(streams["diffusion"].data)
    header = parsed.header.model_copy(update={"avcc_flags": 0, "diffusion_steps": 0, "diffusion_seed": 0})
    out = []
    w = bs.StreamWriter(type("F", (), {"write": lambda self, b: out.append(b)})())
    w.write_header(bs.SequenceHeader(**header.model_dump()))
    for u in parsed.units:
        w.write_unit(u.type, u.payload)
    dec = _decode(b"".join(out))
    assert dec.issues == [] and bs.parse_stream(b"".join(out)).version == (1, 1)
    assert dec.motion_array().shape == (N - 2, 20)
