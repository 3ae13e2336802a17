"""One-pass rate control (avfc.codec.rate.StreamRate) in the streaming Encoder: every 30-s stretch of a
long stream near the target, a target that changes while encoding, and how avfc.encode picks it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfc import bitstream as bs
from avfc.codec.encoder import Encoder
from avfc.codec.rate import STREAM_KEY_SECONDS, StreamRate, uses_file_rate
from avfc.config import EncoderConfig
from avfc.errors import ConfigError
from avfc.media.synthetic import speech_like, talking_face

SIZE = 64
FPS = 25


def _stream(seconds: int, kbps: float, change: dict[int, float] | None = None, **kw):
    """Encode ``seconds`` of synthetic face and speech in packets of 1 s; ``change``: second -> new target."""
    n = seconds * FPS
    frames = talking_face(n, SIZE, SIZE, seed=1)
    pcm = speech_like(seconds)
    cfg = EncoderConfig(**{"model": "tiny-test", "size": SIZE, "effort": "detector", "bitrate_kbps": kbps,
                           "crop": "none", **kw})
    enc = Encoder(cfg, frame_count=n)
    out = []
    for s in range(seconds):
        if change and s in change:
            enc.set_bitrate(change[s])
        enc.push_frames(frames[s * FPS:(s + 1) * FPS])
        enc.push_audio(pcm[s * 16000:(s + 1) * 16000])
        out.append(enc.read())
    enc.close()
    out.append(enc.read())
    return enc, b"".join(out)


def _kbps_per_stretch(data: bytes, seconds: int, stretch: int) -> np.ndarray:
    """The rate of every ``stretch``-s part of the stream: each unit counted in the stretch of its first frame
    (the header in the first, END_OF_STREAM in the last; Codec2 700C has one audio frame per video frame)."""
    parsed = bs.parse_stream(data)
    total = np.zeros(seconds // stretch)
    total[0] += len(data) - sum(u.size for u in parsed.units)  # preamble and header
    for unit in parsed.units:
        p = bs.decode_payload(unit, parsed.version[0])
        first = getattr(p, "frame_index", getattr(p, "first_frame", seconds * FPS - 1))
        total[min(int(first) // (stretch * FPS), len(total) - 1)] += unit.size
    return total * 8 / 1000 / stretch


def test_every_30s_stretch_of_a_long_stream_is_within_10_percent_of_the_target():
    enc, data = _stream(60, 3.0)
    rates = _kbps_per_stretch(data, 60, 30)
    assert np.all(np.abs(rates - 3.0) <= 0.3), rates
    # the budget bought refreshed key pictures: one every STREAM_KEY_SECONDS, each given what its interval
    # earns less motion and audio (with one key picture for the whole minute the file came out far below)
    assert len(enc.stats.key_qps) == 60 // STREAM_KEY_SECONDS
    assert enc.key_interval == STREAM_KEY_SECONDS * FPS


@pytest.mark.parametrize("effort,seconds,interval", [("detector", 60, 250), ("fast", 30, 125)],
                         ids=["fixed", "placed"])
def test_a_bidirectional_stream_holds_the_target_too(effort, seconds, interval):
    """Bi-directional: the motion of the frames before a key frame is written after it, so its budget leaves
    room for that motion (with a key frame placed in its window, the window's frames earn their bytes before
    any motion is written; the search's effort places them)."""
    enc, data = _stream(seconds, 3.0, reference_mode="bidirectional", key_interval=interval, max_refs=2,
                        effort=effort)
    rates = _kbps_per_stretch(data, seconds, seconds // 2)
    assert np.all(np.abs(rates - 3.0) <= 0.3), rates
    assert enc.stats.keys == 6 and bs.parse_stream(data).header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL


def test_the_target_can_change_while_encoding():
    _, data = _stream(60, 3.0, change={30: 1.5})
    rates = _kbps_per_stretch(data, 60, 30)
    assert abs(rates[0] - 3.0) <= 0.3 and abs(rates[1] - 1.5) <= 0.15, rates


def test_a_fixed_key_qp_or_key_bytes_turns_the_one_pass_control_off():
    cfg = EncoderConfig(model="tiny-test", size=SIZE, effort="detector", bitrate_kbps=3.0, audio="none")
    assert Encoder(cfg).rate is not None
    assert Encoder(EncoderConfig.make(cfg, key_qp=40)).rate is None
    enc = Encoder(cfg, key_bytes=500)
    assert enc.rate is None
    with pytest.raises(ConfigError):
        enc.set_bitrate(2.0)  # the whole-file passes' fixed budget stays fixed
    assert Encoder(EncoderConfig(model="tiny-test", size=SIZE, effort="detector", audio="none")).rate is None


def test_set_bitrate_starts_rate_control_and_moves_the_search_lambda():
    cfg = EncoderConfig(model="tiny-test", size=SIZE, effort="detector", audio="none")
    enc = Encoder(cfg)
    enc.set_bitrate(2.0)
    assert enc.rate is not None and enc.rate.kbps == 2.0
    with pytest.raises(ConfigError):
        enc.set_bitrate(0.0)


def test_key_budget_is_the_interval_less_motion_and_audio_plus_a_bounded_carry():
    r = StreamRate(4.0, 25)  # 20 bytes per frame
    r.other_prior = 5.0
    assert r.key_budget(250) == 250 * 20 - 250 * 5
    r.frames(250)
    r.spend(250 * 5)
    r.spend(2000, key=True)  # under budget by 3000 - 2000 + 0: the next key picture gets the slack
    assert r.balance == 250 * 20 - 250 * 5 - 2000
    assert r.other_per_frame() == pytest.approx(5.0)  # measured now, not the prior
    assert r.key_budget(250) == 250 * 15 + 1750
    r.spend(100000, key=True)  # far over: the carry is bounded by one interval's earnings
    assert r.key_budget(250) == 1


def test_key_budget_of_a_bidirectional_key_leaves_the_motion_still_owed_and_counts_held_frames_once():
    r = StreamRate(4.0, 25)  # 20 bytes per frame
    r.other_prior = 5.0
    assert not r.measured
    for _ in range(250):  # the audio of 250 frames written; their motion (2 bytes a frame) waits for the key frame
        r.frames(1)
        r.spend(3)
    assert r.measured and r.other_per_frame() == pytest.approx(3.0, rel=0.01)
    plain = r.key_budget(250)
    assert plain == int(250 * 20 - 250 * r.other_per_frame() + 250 * 17)
    assert r.key_budget(250, owed=500) == plain - 500
    assert abs(r.key_budget(250, owed=500, unseen=2.0) - (plain - 1000)) <= 1
    # a key frame placed in a window of 250 frames held until it was complete: those frames have earned their
    # bytes already (in the balance) and written their audio; what is left is the balance less the owed motion
    assert r.key_budget(250, owed=500, counted=250) == 250 * 20 - 250 * 3 - 500


def test_rate_control_auto_picks_the_whole_file_passes_for_short_inputs_only():
    cfg = EncoderConfig(bitrate_kbps=5.0)
    assert uses_file_rate(cfg, 4.0) and uses_file_rate(cfg, 20.0)
    assert not uses_file_rate(cfg, 21.0)
    assert uses_file_rate(EncoderConfig.make(cfg, rate_control="file"), 600.0)
    assert not uses_file_rate(EncoderConfig.make(cfg, rate_control="stream"), 4.0)
    assert not uses_file_rate(EncoderConfig(), 4.0)  # no bitrate: no rate control


def test_threads_bound_the_encoders_torch_threads_only_while_it_works(monkeypatch):
    seen = []
    cfg = EncoderConfig(model="tiny-test", size=SIZE, effort="detector", audio="none", threads=1)
    enc = Encoder(cfg)
    detect = enc.model.detect

    def spy(x):
        seen.append(torch.get_num_threads())
        return detect(x)

    monkeypatch.setattr(enc.model, "detect", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        enc.push_frames(talking_face(5, SIZE, SIZE))
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_progress_covers_every_pass_of_the_rate_control_to_its_last_frame():
    import avfc

    frames = talking_face(30, SIZE, SIZE)
    for kbps, one_pass in ((None, True), (3.0, False), (3.0, True)):
        calls: list[tuple[str, int, int]] = []
        rc = "stream" if (one_pass and kbps) else "auto"
        avfc.encode(frames, model="tiny-test", size=SIZE, effort="detector", audio="none", bitrate_kbps=kbps,
                    rate_control=rc, progress=lambda s, d, t: calls.append((s, d, t)))
        stages = list(dict.fromkeys(s for s, _, _ in calls if s != "analyse"))
        assert all(max(d for s, d, _ in calls if s == st) == 30 for st in stages)  # each pass reaches the end
        assert all(t == 30 for _, _, t in calls)
        if one_pass:
            assert stages == ["encode"]
        else:  # the probe, then at least one planned pass
            assert len(stages) >= 2 and all(st.startswith("encode (rate pass") for st in stages)


def test_the_encoders_state_stays_bounded_over_a_long_stream():
    enc, _ = _stream(60, 3.0)  # six key frames
    assert sorted(enc.decoded_keys) == enc._ref_indices[-len(enc.decoded_keys):]
    assert len(enc.decoded_keys) <= enc.config.max_refs


def test_the_avcc_predictors_audio_history_is_trimmed_without_changing_a_byte():
    from avfc.avcc.zoo import DEFAULT_AVCC

    seconds = 24
    frames, pcm = talking_face(seconds * FPS, SIZE, SIZE, seed=2), speech_like(seconds, seed=2)
    cfg = EncoderConfig(model="tiny-test", size=SIZE, effort="detector", key_qp=40, crop="none",
                        motion_source="predicted", avcc=DEFAULT_AVCC)

    def run(trim: bool) -> tuple[Encoder, bytes]:
        enc = Encoder(cfg)
        if not trim:
            enc._trim = lambda: None  # the encoder as it was: every row kept
        for s in range(seconds):
            enc.push_frames(frames[s * FPS:(s + 1) * FPS])
            enc.push_audio(pcm[s * 16000:(s + 1) * 16000])
        enc.close()
        return enc, enc.read()

    trimmed, data = run(True)
    full, expected = run(False)
    assert data == expected
    assert len(full._fields) == seconds * FPS and len(trimmed._fields) < 300 + 2 * FPS


def test_a_file_is_encoded_as_a_stream_with_the_same_bytes_as_when_read_whole(tmp_path):
    import avfc
    from avfc.media import read_media
    from avfc.media.synthetic import write_clip

    clip = tmp_path / "talk.mp4"
    write_clip(clip, n=60, width=160, height=128)
    kw = dict(model="tiny-test", size=SIZE, effort="detector", key_qp=40, key_interval=25)
    streamed = avfc.encode(clip, tmp_path / "s.avfc", **kw)  # no bitrate: one pass over the stream
    held = avfc.encode(read_media(clip, fps=FPS), **kw)  # the same media held whole
    assert streamed.data == held.data and (tmp_path / "s.avfc").read_bytes() == streamed.data
    assert streamed.crop == held.crop and streamed.frames == 60
    assert not list(tmp_path.glob("*.part"))


def test_a_long_file_at_a_bitrate_is_coded_in_one_pass_and_written_as_it_goes(tmp_path, monkeypatch):
    import avfc
    import avfc.api as api
    from avfc.media.synthetic import write_clip

    clip = tmp_path / "long.mp4"
    write_clip(clip, n=25 * 22, width=160, height=128)  # 22 s: past the whole-file passes' 20 s
    passes = []
    monkeypatch.setattr(api, "fit_file_rate", lambda *a, **k: passes.append(1))
    res = avfc.encode(clip, tmp_path / "l.avfc", model="tiny-test", size=SIZE, effort="detector", bitrate_kbps=3.0)
    assert passes == [] and res.frames == 25 * 22
    assert (tmp_path / "l.avfc").read_bytes() == res.data
    assert len(res.stats.key_qps) == 3  # frames 0, 250 and 500: a key frame every 10 s
    assert abs(res.kbps - 3.0) < 0.3


def test_a_long_file_at_the_search_effort_is_written_bidirectional_with_its_key_frames_placed(tmp_path, monkeypatch):
    import avfc
    import avfc.codec.rate as rate
    from avfc.codec import Decoder
    from avfc.media.synthetic import write_clip

    clip = tmp_path / "long.mp4"
    write_clip(clip, n=75, width=160, height=128)
    monkeypatch.setattr(rate, "FILE_RATE_MAX_SECONDS", 1.0)  # 3 s counts as long: the one-pass rate control
    kw = dict(model="tiny-test", size=SIZE, effort="fast", bitrate_kbps=5.0, audio="none")
    res = avfc.encode(clip, tmp_path / "l.avfc", **kw)  # read as a stream, coded in one pass
    assert res.header.reference_mode == bs.ReferenceMode.BIDIRECTIONAL and res.stats.keys == 1
    dec = Decoder()
    dec.push(res.data)
    dec.close()
    assert len(dec.pull_frames()) == 75 and dec.issues == []
    fixed = avfc.encode(clip, place_keys=False, **kw)
    assert fixed.header.reference_mode == bs.ReferenceMode.LOW_DELAY


def test_with_refreshes_the_key_pictures_come_at_the_refreshes_and_the_rate_holds():
    enc, data = _stream(60, 3.0, refresh_interval=4.0)
    assert enc.key_interval == 0 and enc.refresh_frames == 100  # no extra key frames besides the refreshes
    assert len(enc.stats.key_qps) == 15
    rates = _kbps_per_stretch(data, 60, 30)
    assert np.all(np.abs(rates - 3.0) <= 0.3), rates
    assert bs.parse_stream(data).version == (2, 1)


def test_a_live_sender_pushing_one_frame_gets_a_motion_prior_like_a_whole_packets():
    """The first key picture's budget leaves room for the motion expected (StreamRate.other_prior). A live
    sender pushes one frame before that key picture: its prior is a packet's first row spread over the packet
    plus residual rows, not the whole first row for every frame (which made it about 10x too large and the
    first key picture of a call the coarsest)."""
    frames = talking_face(25, SIZE, SIZE, seed=1)
    priors = []
    for chunk in (1, 25):
        enc = Encoder(EncoderConfig(model="tiny-test", size=SIZE, audio="none", bitrate_kbps=5.0,
                                    rate_control="stream", effort="live", packet_frames=25))
        enc.push_frames(frames[:chunk])
        assert enc.rate is not None and enc.rate.other_prior is not None
        priors.append(enc.rate.other_prior)
    one, packet = priors
    assert 0 < one < 3 * packet
