"""Where the key frame falls: ``EncoderConfig.first_key`` and the search efforts' placement
(:func:`avfc.codec.search.place_key`)."""

from __future__ import annotations

import numpy as np
import pytest

import avfc
from avfc import bitstream as bs
from avfc.codec import Decoder, Encoder
from avfc.codec.encoder import analyse_clip, with_key_placed, with_key_windows
from avfc.codec.search import place_key
from avfc.config import MAX_FIRST_KEY, EncoderConfig
from avfc.errors import ConfigError
from avfc.media.synthetic import talking_face
from avfc.models.zoo import load_model

SIZE = 64


def _decode(data: bytes):
    dec = Decoder(keep_motion=True)
    dec.push(data)
    dec.close()
    return dec, dec.pull_frames()


def _key_indices(data: bytes) -> list[int]:
    parsed = bs.parse_stream(data)
    return [int(bs.decode_payload(u, parsed.version[0]).frame_index) for u in parsed.units
            if u.type == bs.UnitType.KEY_FRAME]


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_place_key_is_the_medoid_of_the_keypoint_rows(seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-40, 40, size=(37, 6))
    brute = np.abs(q[:, None, :] - q[None, :, :]).sum(axis=(1, 2))
    assert place_key(q) == int(np.argmin(brute))
    # the latest frame it may pick
    assert place_key(q, limit=5) == int(np.argmin(brute[:6]))
    assert place_key(q, limit=0) == 0


def test_place_key_takes_the_earliest_of_equals_and_refuses_bad_rows():
    q = np.array([[9, 9], [0, 0], [1, 1], [0, 0], [-9, -9]])
    assert place_key(q) == 1  # rows 1 and 3 tie
    assert place_key(q[:1]) == 0 and place_key(np.zeros((0, 4), np.int32)) == 0
    with pytest.raises(ConfigError):
        place_key(np.zeros(5, np.int32))


@pytest.mark.parametrize("effort", ["live", "detector", "fast"])
def test_a_first_key_after_frame_0_draws_the_frames_before_it(effort):
    frames = talking_face(30, SIZE, SIZE, seed=11)
    cfg = EncoderConfig.make(model="tiny-test", size=SIZE, audio="none", key_qp=35, packet_frames=10,
                             effort=effort, first_key=12)
    enc = Encoder(cfg)
    enc.push_frames(frames[:12])
    # the frames before the key frame wait for it: nothing but the header is written yet
    assert enc.stats.units_by_type.get("key_frame", 0) == 0 and enc.stats.units_by_type.get("motion", 0) == 0
    enc.push_frames(frames[12:])
    enc.close()
    data = enc.read()
    assert enc.header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL
    assert _key_indices(data) == [12]
    dec, out = _decode(data)
    assert dec.issues == [] and len(out) == 30  # every frame drawn, none concealed
    assert not all(np.array_equal(out[0], out[i]) for i in range(1, 12))  # drawn with their own motion
    if effort == "fast":  # closed loop: the decoder drew the rows the search chose
        rows = dec.motion_array()
        for k, choice in enumerate(enc.search_log):
            assert np.array_equal(rows[10 * k:10 * k + 10], choice.q)


def test_the_search_efforts_place_the_key_where_place_key_says_and_the_detector_keeps_frame_0():
    frames = talking_face(40, SIZE, SIZE, seed=12)
    frames[:8] = np.roll(frames[:8], 10, axis=2)  # the clip starts off its usual place
    model = load_model("tiny-test", SIZE)
    cfg = EncoderConfig.make(model="tiny-test", size=SIZE)
    want = place_key(analyse_clip(model, frames, cfg.kp_precision, cfg.kp_hysteresis))
    assert want > 0
    kw = dict(model="tiny-test", size=SIZE, audio="none", key_qp=35, packet_frames=10)
    placed = avfc.encode(frames, effort="fast", **kw)
    assert _key_indices(placed.data) == [want]
    assert placed.header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL
    # the whole-file rate control's passes place it too, and so does the one-pass rate control (its window of
    # 10 s holds the whole clip); a key interval, frame 0 asked for, place_keys off and the detector's effort do not
    rated = dict(kw, key_qp=None, bitrate_kbps=8)
    assert _key_indices(avfc.encode(frames, effort="fast", rate_control="file", **rated).data) == [want]
    streamed = avfc.encode(frames, effort="fast", rate_control="stream", **rated)
    assert _key_indices(streamed.data) == [want]
    assert streamed.header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL
    for res in (avfc.encode(frames, effort="detector", **kw), avfc.encode(frames, effort="fast", first_key=0, **kw),
                avfc.encode(frames, effort="fast", key_interval=20, **kw),
                avfc.encode(frames, effort="fast", place_keys=False, **kw),
                avfc.encode(frames, effort="fast", rate_control="stream", place_keys=False, **rated),
                avfc.encode(frames, effort="detector", rate_control="stream", **rated)):
        assert _key_indices(res.data)[0] == 0 and res.header.reference_mode == bs.ReferenceMode.LOW_DELAY
    assert len(_decode(placed.data)[1]) == 40


def test_a_placed_key_draws_a_clip_that_starts_away_from_its_usual_place_closer_to_the_source():
    """With a real model: a clip whose first frames sit elsewhere, coded from a key picture at frame 0 and at
    the placed frame, at the same key QP: the placed key's decode is closer to the source."""
    frames = talking_face(40, SIZE, SIZE, seed=13)
    frames[:10] = np.roll(frames[:10], 8, axis=1)
    kw = dict(model="mrdac-cpu-v4", size=SIZE, audio="none", key_qp=40, packet_frames=20, effort="fast")
    err = {}
    for name, first in (("frame 0", 0), ("placed", None)):
        res = avfc.encode(frames, first_key=first, **kw)
        err[name] = _l1(_decode(res.data)[1], frames)
    assert err["placed"] < err["frame 0"]


def test_with_key_placed_leaves_streams_of_several_key_frames_alone():
    q = np.array([[5, 5], [0, 0], [0, 1], [1, 0]], np.int32)
    base = EncoderConfig.make(model="tiny-test", size=SIZE, effort="fast")
    assert with_key_placed(base, q).first_key == 1
    for cfg in (EncoderConfig.make(base, key_interval=50), EncoderConfig.make(base, key_policy="adaptive"),
                EncoderConfig.make(base, effort="detector"), EncoderConfig.make(base, first_key=0),
                EncoderConfig.make(base, refresh_interval=1.0)):
        assert with_key_placed(cfg, q) is cfg


@pytest.mark.parametrize("kw", [dict(key_interval=25), dict(key_policy="adaptive"), dict(refresh_interval=1.0),
                                dict(reference_mode="bidirectional", key_interval=25, max_refs=2),
                                dict(first_key=MAX_FIRST_KEY + 1)])
def test_first_key_refuses_what_it_cannot_do(kw):
    with pytest.raises(ConfigError):
        EncoderConfig.make(model="tiny-test", size=SIZE, first_key=kw.pop("first_key", 5), **kw)


def test_a_first_key_past_the_input_is_a_clear_error():
    frames = talking_face(8, SIZE, SIZE, seed=14)
    enc = Encoder(EncoderConfig.make(model="tiny-test", size=SIZE, audio="none", key_qp=35, first_key=8))
    enc.push_frames(frames)
    with pytest.raises(ConfigError, match="first_key 8"):
        enc.close()


# ----------------------------------------------------------------- a key frame placed in every window (bi-directional)

def _windowed(frames, effort="fast", **kw):
    cfg = EncoderConfig.make(model="tiny-test", size=SIZE, audio="none", key_qp=35, packet_frames=10, effort=effort,
                             reference_mode="bidirectional", key_interval=20, max_refs=2, **kw)
    enc = Encoder(cfg)
    sizes = []
    for i in range(0, len(frames), 7):  # pushed in pieces that do not line up with the windows
        enc.push_frames(frames[i:i + 7])
        sizes.append(len(enc._window))
    enc.close()
    return enc, enc.read(), sizes


def test_in_bidirectional_mode_each_windows_key_frame_goes_where_place_key_says():
    frames = talking_face(50, SIZE, SIZE, seed=15)
    frames[20:26] = np.roll(frames[20:26], 9, axis=2)  # the second window starts off its usual place
    model = load_model("tiny-test", SIZE)
    q = analyse_clip(model, frames, 5, 0.3)
    want = [s + place_key(q[s:s + 20]) for s in (0, 20, 40)]  # the last window has 10 frames
    assert want != [0, 20, 40]
    enc, data, sizes = _windowed(frames)
    assert _key_indices(data) == want
    assert max(sizes) < 20  # a window's frames are held until it is complete, no longer
    dec, out = _decode(data)
    assert dec.issues == [] and len(out) == 50 and dec.header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL
    rows = dec.motion_array()  # closed loop: the decoder drew the rows the search chose
    for k, choice in enumerate(enc.search_log):
        assert np.array_equal(rows[10 * k:10 * k + 10], choice.q)
    # place_keys off, or an effort that does not place key frames: every key_interval-th frame, as before
    for fixed in (_windowed(frames, place_keys=False)[1], _windowed(frames, effort="detector")[1]):
        assert _key_indices(fixed) == [0, 20, 40]


def test_with_key_windows_writes_a_long_inputs_one_pass_rate_control_bidirectional():
    base = EncoderConfig.make(model="tiny-test", size=SIZE, effort="fast", bitrate_kbps=5)
    placed = with_key_windows(base)
    assert placed.reference_mode == "bidirectional" and placed.key_interval == 250 and placed.max_refs == 2
    for cfg in (EncoderConfig.make(model="tiny-test", size=SIZE, effort="fast"), EncoderConfig.make(base, effort="live"),
                EncoderConfig.make(base, effort="detector"), EncoderConfig.make(base, place_keys=False),
                EncoderConfig.make(base, first_key=0), EncoderConfig.make(base, key_interval=100),
                EncoderConfig.make(base, refresh_interval=4.0), EncoderConfig.make(base, max_refs=1),
                EncoderConfig.make(base, key_policy="adaptive")):
        assert with_key_windows(cfg) is cfg
