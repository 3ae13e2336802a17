"""motion_hold: the encoder's closed-loop choice between sending motion and holding the reference."""

from __future__ import annotations

import numpy as np

import avfc
from avfc.codec import Decoder, Encoder
from avfc.config import EncoderConfig
from synthetic import talking_face

SIZE = 64
MODEL = "tiny-test"


def _encode(frames, **kw):
    kw.setdefault("effort", "detector")  # the closed-loop hold of the detector's keypoints (no search)
    enc = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, audio="none", key_qp=35, packet_frames=10, **kw))
    enc.push_frames(frames)
    enc.close()
    return enc, enc.read()


def _decode(data):
    dec = Decoder(keep_motion=True)
    dec.push(data)
    dec.close()
    return dec, dec.pull_frames()


def test_a_still_clip_is_held_and_decodes_to_the_key_frame():
    frames = np.repeat(talking_face(1, SIZE, SIZE), 30, axis=0)
    enc, data = _encode(frames, motion_hold=True, kp_hysteresis=0.0, kp_precision=8)
    assert enc.held_packets == 3
    dec, out = _decode(data)
    assert dec.issues == []
    rows = dec.motion_array()
    assert (rows == rows[0]).all()  # every frame holds the reference's keypoints
    # holding the reference draws (almost) the key frame itself
    key = enc.decoded_keys[0].astype(np.float64)
    assert np.abs(out[1:].astype(np.float64) - key).mean() < 2.0
    _, dense = _encode(frames, kp_hysteresis=0.0, kp_precision=8)
    assert len(data) <= len(dense)


def test_hold_is_chosen_per_packet_by_reconstruction_error():
    frames = talking_face(40, SIZE, SIZE)
    enc, data = _encode(frames, motion_hold=True)
    dec, out = _decode(data)
    assert dec.issues == [] and len(out) == 40
    rows = dec.motion_array()
    held = [k for k in range(4) if (rows[10 * k:10 * k + 10] == rows[0:1] * 0 + _ref_row(dec)).all()]
    assert len(held) == enc.held_packets
    # the choice never makes a packet worse than the motion it replaced (closed loop, MSE)
    _, plain = _decode(_encode(frames)[1])
    for k in range(4):
        sl = slice(10 * k + (k == 0), 10 * k + 10)
        err_hold = np.mean((out[sl].astype(float) - frames[sl]) ** 2)
        err_plain = np.mean((plain[sl].astype(float) - frames[sl]) ** 2)
        assert err_hold <= err_plain + 1e-9


def _ref_row(dec):
    p = dec.header.kp_precision
    return np.rint(dec._refs[-1].keypoints[0].numpy().astype(np.float64) * 2.0 ** p).astype(np.int32)


def test_motion_hold_through_the_api_and_with_sparse_motion():
    frames = np.repeat(talking_face(1, SIZE, SIZE), 20, axis=0)
    res = avfc.encode(frames, size=SIZE, model=MODEL, audio="none", key_qp=35, motion_hold=True, motion_stride=3,
                      kp_hysteresis=0.0, kp_precision=8)
    out = avfc.decode(res.data)
    assert out.issues == [] and len(out.frames) == 20


def test_motion_hold_is_off_without_motion():
    assert EncoderConfig().motion_hold  # the default
    enc = Encoder(EncoderConfig.make(size=SIZE, model=MODEL, motion_source="speech", audio_coder="context",
                                     avcc="avcc-mrdac-cpu-v2"))
    assert not enc._hold  # motion from speech sends no motion: nothing to choose


def test_hold_margin_holds_more_packets_for_fewer_bytes():
    frames = talking_face(40, SIZE, SIZE)
    runs = {m: _encode(frames, motion_hold=True, motion_hold_margin=m) for m in (0.0, 0.5, 10.0)}
    held = [runs[m][0].held_packets for m in (0.0, 0.5, 10.0)]
    assert held == sorted(held)  # a wider margin never holds fewer packets
    assert held[0] < 4 and held[-1] == 4  # the plain choice moves somewhere; a huge margin holds all 4
    motion = {m: enc.stats.bytes_by_type["motion"] for m, (enc, _) in runs.items()}
    assert motion[10.0] < motion[0.0]
    dec, out = _decode(runs[10.0][1])
    assert dec.issues == [] and len(out) == 40
    assert (dec.motion_array() == _ref_row(dec)).all()  # every frame holds the reference


def test_hold_margin_has_no_effect_without_motion_hold():
    frames = talking_face(20, SIZE, SIZE)
    assert _encode(frames, motion_hold=False)[1] == _encode(frames, motion_hold=False, motion_hold_margin=10.0)[1]
