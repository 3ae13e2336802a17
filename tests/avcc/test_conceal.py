"""The joint audio-video concealment model: inference, training mirror, shipped file, and the decoder's
audio concealment modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import avfc
from avfc import bitstream as bs
from avfc.avcc.conceal import CONCEAL_ZOO, MAX_GAP_FRAMES, JointConcealer, concealer_for, load_concealer
from avfc.avcc.diffusion import DiffusionMeta, field_indexes
from avfc.avcc.motion_pred import FIELD_SIZES
from avfc.codec import Decoder
from avfc.codec.decoder import repeat_lost
from avfc.errors import ConfigError, EntropyError
from avfc.train.avcc_conceal import JointNet, TrainConfig, audio_only_windows, batch, losses, train
from avfc.train.avcc_data import AvccClip
from synthetic import speech_like, talking_face

META = DiffusionMeta(channels=4, kp_dim=2, block=6, context=2, lookahead=1, width=16, layers=1, heads=2, ffn=16,
                     embed=4, time_freqs=4)


def _net(seed: int = 0) -> JointNet:
    torch.manual_seed(seed)
    net = JointNet(META)
    with torch.no_grad():  # make the heads matter (they start small)
        for p in net.audio_heads.values():
            p.normal_(0.0, 1.0)
    return net.eval()


def _fields(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in FIELD_SIZES], axis=1).astype(np.int64)


def test_arrays_round_trip_and_numpy_matches_torch():
    net = _net()
    c = net.to_concealer()
    again = JointConcealer.from_arrays(c.to_arrays())
    assert set(again.heads) == set(c.heads)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, META.tokens, META.channels))
    roles = rng.integers(0, 4, (2, META.tokens))
    rows = _fields(META.tokens, 2)
    rows[3] = -1
    fidx = np.stack([field_indexes(rows)] * 2)
    u = np.array([0.0, 0.7])
    with torch.no_grad():
        h_t = net.features(torch.tensor(x, dtype=torch.float32), torch.tensor(roles), torch.tensor(fidx),
                           torch.tensor(u, dtype=torch.float32))
        lg_t = net.audio_logits(h_t)
    lg_n = c.logits(c.net.features(x, roles, fidx, u))
    for a, b in zip(lg_n, lg_t):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4)


def test_malformed_heads_are_refused():
    arrays = _net().to_concealer().to_arrays()
    bad = dict(arrays)
    bad["conceal.audio_head.energy.weight"] = bad["conceal.audio_head.energy.weight"][:3]
    with pytest.raises(EntropyError, match="energy"):
        JointConcealer.from_arrays(bad)
    del bad["conceal.audio_head.energy.weight"]
    with pytest.raises(EntropyError, match="missing"):
        JointConcealer.from_arrays(bad)


def test_fill_window_fills_only_the_unknown_block_fields_deterministically():
    c = _net().to_concealer()
    P, B = META.context, META.block
    rows = _fields(META.tokens, 3)
    rows[P + 1:P + 4] = -1  # three lost frames in the block
    rows[P + 5, 2] = -1  # one lost field after stop
    motion = np.random.default_rng(4).integers(-5, 6, (P + B, META.channels))
    known = np.ones(P + B, bool)
    out = c.fill_window(rows, motion, known, steps=3, stop=P + 5)
    again = c.fill_window(rows, motion, known, steps=3, stop=P + 5)
    np.testing.assert_array_equal(out, again)
    filled = rows < 0
    filled[P + 5:] = False
    np.testing.assert_array_equal(out[~filled & (rows >= 0)], rows[~filled & (rows >= 0)])
    assert (out[P + 1:P + 4] >= 0).all() and out[P + 5, 2] == -1
    for f, size in enumerate(FIELD_SIZES):
        assert (out[P + 1:P + 4, f] < size).all()
    # the motion is an input: other keypoints can change what is drawn
    other = c.fill_window(rows, motion * 0 + 7, known, steps=3, stop=P + 5)
    assert other.shape == out.shape
    with pytest.raises(EntropyError):
        c.fill_window(rows, motion, known, steps=0)
    with pytest.raises(EntropyError):
        c.fill_window(rows[:-1], motion, known)


def test_conceal_fills_every_gap_and_keeps_the_received_frames():
    c = _net().to_concealer()
    n = 40
    fields = _fields(n, 5)
    lost = np.zeros(n, bool)
    lost[[0, 1, 9, 10, 11, 12, 13, 14, 15, 16, 30]] = True
    damaged = fields.copy()
    damaged[lost] = -1
    offsets = np.random.default_rng(6).integers(-3, 4, (n, META.channels))
    out = c.conceal(damaged, offsets, np.ones(n, bool))
    assert (out >= 0).all()
    np.testing.assert_array_equal(out[~lost], fields[~lost])
    np.testing.assert_array_equal(out, c.conceal(damaged, offsets, np.ones(n, bool)))
    # a gap longer than MAX_GAP_FRAMES is filled for MAX_GAP_FRAMES frames only
    long = np.full((MAX_GAP_FRAMES + 8, 4), -1, np.int64)
    long[0] = fields[0]
    got = c.conceal(long, np.zeros((len(long), META.channels), np.int64), np.zeros(len(long), bool))
    assert (got[1:MAX_GAP_FRAMES + 1] >= 0).all() and (got[MAX_GAP_FRAMES + 1:] == -1).all()


def _clips(n_clips: int = 3, t: int = 40) -> list[AvccClip]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n_clips):
        f = _fields(t, 10 + i)
        f[:, 2] = np.where(np.arange(t) % 10 < 5, 15, 0)  # loud / quiet, with the mouth below
        q = rng.integers(-4, 5, (t, META.channels)).astype(np.int32)
        q[:, 1] = np.where(f[:, 2] > 7, 12, -12)  # the mouth opens when it is loud
        out.append(AvccClip(name=f"c{i}", q=q, fields=f, ref_q=np.zeros(META.channels, np.int32),
                            key=np.zeros((8, 8, 3), np.uint8)))
    return out


def test_a_few_training_steps_lower_the_loss():
    clips = _clips()
    cfg = TrainConfig(steps=60, batch=16, lr=3e-3, warmup=5, log_every=1000, p_audio_only=0.25)
    speech = [_fields(30, 20)]
    net, hist = train(clips, [], speech, META, cfg, log=lambda s: None)
    gen = torch.Generator().manual_seed(3)
    from avfc.train.avcc_diffusion import make_windows

    w = make_windows(clips, META, float(net.x_scale), "all")
    fresh = JointNet(META)
    fresh.x_scale.copy_(net.x_scale)
    b = batch(w, torch.arange(len(w)), META, cfg, gen, False)
    with torch.no_grad():
        mse0, ce0, n0 = losses(fresh.eval(), b, META)
        mse1, ce1, n1 = losses(net, b, META)
    assert n0 == n1 > 0
    assert float(ce1) / n1 < float(ce0) / n0 and float(mse1) < float(mse0)
    assert len(audio_only_windows(speech, META)) > 0


def test_the_shipped_model_is_found_for_the_default_model_and_checked():
    assert CONCEAL_ZOO
    entry = next(iter(CONCEAL_ZOO.values()))
    c = load_concealer(entry.name)
    assert concealer_for(entry.animation_model, entry.kp_precision) is c
    assert concealer_for("no-such-model", 5) is None
    assert concealer_for(entry.animation_model, entry.kp_precision + 1) is None


def test_repeat_lost_repeats_the_last_token_up_to_a_limit():
    assert repeat_lost([None, 1, None, None, None, 2, None], 2) == [None, 1, 1, 1, None, 2, 2]
    assert repeat_lost([None, None], 5) == [None, None]


# --------------------------------------------------------------------------- through the decoder
N, SIZE = 30, 128


def _without(data: bytes, unit_type: int, nth: int):
    """The stream without its ``nth`` unit of ``unit_type`` (1-based), and that unit's payload."""
    parsed = bs.parse_stream(data)
    out: list[bytes] = []
    w = bs.StreamWriter(type("F", (), {"write": lambda self, b: out.append(b)})(), parsed.version[0])
    w.write_header(parsed.header)
    seen, lost = 0, None
    for u in parsed.units:
        if u.type == unit_type:
            seen += 1
            if seen == nth:
                lost = bs.decode_payload(u, parsed.version[0])
                continue
        w.write_unit(u.type, u.payload)
    assert lost is not None
    return b"".join(out), lost


@pytest.fixture(scope="module")
def damaged():
    """A default-model stream (700C, 25 fps) with one audio unit of 5 frames removed."""
    res = avfc.encode(talking_face(N, SIZE, SIZE, seed=3), pcm=speech_like(N / 25, seed=3), size=SIZE, key_qp=30,
                      packet_frames=5)
    data, lost = _without(res.data, bs.UnitType.AUDIO, 3)
    return res.data, data, int(lost.first_frame), int(lost.num_frames)


def _decode(data: bytes, mode: str):
    dec = Decoder(conceal_audio=mode)
    dec.push(data)
    dec.close()
    return dec, dec.audio_frames()[0], dec.audio()


def test_decoder_concealment_modes(damaged):
    intact, data, first, n = damaged
    gap = range(first, first + n)
    results = {m: _decode(data, m) for m in ("none", "repeat", "joint")}
    none, repeat, joint = (results[m][1] for m in ("none", "repeat", "joint"))
    assert all(none[i] is None for i in gap) and sum(t is None for t in none) == n
    assert all(repeat[i] == none[first - 1] for i in gap)
    assert all(t is not None for t in joint) and any(joint[i] != repeat[i] for i in gap)
    for i, t in enumerate(none):  # the received tokens are kept as they are
        if t is not None:
            assert repeat[i] == t and joint[i] == t
    assert _decode(data, "joint")[1] == joint  # deterministic
    notes = [i.message for i in results["joint"][0].issues if i.kind == "concealed_audio"]
    assert notes and notes[0].startswith(f"{n} of {n} lost audio frames rebuilt")

    # the PCM: silence in the gap without concealment, sound with it
    span = slice(first * 640 + 640, (first + n) * 640 - 320)  # inside the gap, clear of the codec's delay

    def rms(x):
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))

    silent = rms(results["none"][2][span])
    assert silent < 0.05 * rms(results["none"][2])
    for mode in ("repeat", "joint"):
        assert rms(results[mode][2][span]) > 5 * silent, mode
    # an intact stream decodes to the same tokens whatever the mode
    ref = _decode(intact, "none")[1]
    assert all(t is not None for t in ref)
    for mode in ("repeat", "joint"):
        assert _decode(intact, mode)[1] == ref
    with pytest.raises(ConfigError):
        Decoder(conceal_audio="guess")


@pytest.mark.parametrize("first_key", [None, 0])
def test_lost_motion_drawn_by_the_joint_model(damaged, first_key):
    """The default stream's key frame is placed at frame 18, after the lost frames 10-14 (bi-directional: they are
    drawn from it); with first_key 0 the stream is low delay and the lost frames follow the key frame."""
    intact = damaged[0] if first_key is None else avfc.encode(
        talking_face(N, SIZE, SIZE, seed=3), pcm=speech_like(N / 25, seed=3), size=SIZE, key_qp=30, packet_frames=5,
        first_key=0).data
    data, lost = _without(intact, bs.UnitType.MOTION, 3)
    first, n = int(lost.first_frame), int(lost.num_frames)
    runs = {}
    for mode in ("hold", "joint"):
        dec = Decoder(conceal_motion=mode)
        dec.push(data)
        dec.close()
        runs[mode] = (dec, dec.pull_frames())
    hold, joint = runs["hold"][1], runs["joint"][1]
    assert len(hold) == len(joint) == N
    gap = slice(first, first + n)
    assert all((hold[i] == hold[first - 1]).all() for i in range(first, first + n))  # held still
    assert not np.array_equal(hold[gap], joint[gap])  # drawn, not held
    np.testing.assert_array_equal(hold[:first], joint[:first])
    np.testing.assert_array_equal(hold[first + n:], joint[first + n:])  # later packets are intra: unaffected
    notes = [i.message for i in runs["joint"][0].issues if i.kind == "lost_motion"]
    assert notes and "by the joint model" in notes[0]
    assert all(i not in runs["joint"][0].motion for i in range(first, first + n))  # not a prediction base
    with pytest.raises(ConfigError):
        Decoder(conceal_motion="guess")
