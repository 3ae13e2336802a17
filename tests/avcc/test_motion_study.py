"""The speech-motion feasibility study's fitting and exact bit counting (avfc.train.avcc_motion_v2)."""

from __future__ import annotations

import numpy as np
import pytest

from avfc.avcc.motion_pred import SpeechMotionPredictor, decode_predicted_motion, encode_predicted_motion
from avfc.train import avcc_motion_v2 as study
from avfc.train.avcc_data import AvccClip
from avfc.train.avcc_motion import audio_window, motion_bits

C = 6


def _clips(n: int, t: int, seed: int, speech_gain: float = 1.0, prefix: str = "s") -> list[AvccClip]:
    """Clips whose mouth channels (0, 1) jump with the speech energy; the others drift at random."""
    rng = np.random.default_rng(seed)
    clips = []
    for k in range(n):
        energy = np.repeat(rng.integers(0, 16, t // 4 + 1), 4)[:t]
        fields = np.stack([rng.integers(0, 512, t), rng.integers(0, 512, t), energy,
                           np.where(energy > 3, rng.integers(1, 64, t), 0)], axis=1).astype(np.int64)
        q = np.cumsum(rng.integers(-1, 2, (t, C)) * (rng.random((t, C)) < 0.2), axis=0).astype(np.float64)
        q[:, :2] += speech_gain * energy[:, None] / 2
        clips.append(AvccClip(name=f"{prefix}{k}", q=np.rint(q).astype(np.int32), fields=fields,
                              ref_q=np.rint(q[0]).astype(np.int32), key=np.zeros((4, 4, 3), np.uint8)))
    return clips


@pytest.mark.parametrize("intra", [True, False])
def test_format_11_predictor_counts_the_same_bits_as_its_coder(intra: bool) -> None:
    rng = np.random.default_rng(3)
    pred = SpeechMotionPredictor.create(
        C, 2, 12, bias=rng.integers(-500, 500, C), w_delta=rng.integers(-900, 900, (C, C)),
        energy=rng.integers(-300, 300, (3, 17, C)), voiced=rng.integers(-300, 300, (3, 3, C)),
        cross=np.tril(rng.integers(-900, 900, (C, C)), -1), index_offset=rng.integers(-2, 3, (3, 5)))
    clips = _clips(2, 60, 1)
    assert study.variant_bits(study.from_predictor(pred), clips, intra) == motion_bits(clips, pred, intra)
    assert study.plain_bits(clips, intra) == motion_bits(clips, None, intra)


def test_refit_fits_format_11_and_decodes() -> None:
    clips = _clips(3, 80, 2)
    fitted = study.fit_variant(study.Variant("1.1", history=2, lam=1.0), clips)
    pred = study.to_predictor(fitted)
    assert study.variant_bits(fitted, clips) == motion_bits(clips, pred)
    clip = clips[0]
    audio = audio_window(clip.fields, 0, 25, pred.history)
    data = encode_predicted_motion(clip.q[:25], pred, audio)
    assert np.array_equal(decode_predicted_motion(data, 25, C, pred, audio), clip.q[:25])
    with pytest.raises(Exception):
        study.to_predictor(study.fit_variant(study.Variant("la", lookahead=2, lam=1.0), clips))


@pytest.mark.parametrize("variant", [
    study.Variant("energy", history=2, lam=1.0),
    study.Variant("rich", history=3, lookahead=2, denergy=True, vq_classes=4, anchor=True,
                  offsets_ctx="onset", channel_offsets=True, lam=30.0),
    study.Variant("mouth only", history=2, speech_channels=(0, 1), lam=1.0),
])
def test_speech_terms_are_measured_where_speech_drives_motion(variant: study.Variant) -> None:
    train, test = _clips(4, 100, 4), _clips(2, 100, 5)
    with_speech = study.fit_variant(variant, train)
    ours = study.variant_bits(with_speech, test)[0]
    assert ours < study.variant_bits(study.fit_variant(variant.ablation(), train), test)[0]
    assert ours < study.variant_bits(with_speech.zeroed(), test)[0]
    # no speech in the data: the ablation is as good (within 3 %)
    quiet_train, quiet_test = _clips(4, 100, 4, 0.0), _clips(2, 100, 5, 0.0)
    quiet = study.variant_bits(study.fit_variant(variant, quiet_train), quiet_test)[0]
    assert quiet > 0.97 * study.variant_bits(study.fit_variant(variant.ablation(), quiet_train), quiet_test)[0]


def test_look_ahead_stops_at_the_packet_end() -> None:
    clips = _clips(1, 30, 6)
    fr = study.packet_frames(clips)
    rows = study.audio_lags(clips, fr, history=1, lookahead=3)
    last = int(np.flatnonzero(fr.packet == 0)[-1])  # frame 24, the packet's last
    assert (rows[last, -3:] == -1).all() and (rows[last, 2] == clips[0].fields[24]).all()
    assert (rows[0, 0] == -1).all()  # audio frame -1: before the clip


def test_people_stay_on_one_side_of_the_split() -> None:
    names = ["styletalk_Obama_clip1", "edtalk_uncrop_Obama", "styletalk_andrew_clip_1", "grid_a", "grid_b", "solo"]
    clips = [_clips(1, 5, i, prefix=n)[0] for i, n in enumerate(names)]
    fit, dev = study.split_people(clips, dev_people=("obama",))
    assert {study.person_of(c.name) for c in dev} == {"obama"} and len(dev) == 2
    assert not {study.person_of(c.name) for c in fit} & {"obama"}
    assert study.person_of("grid_b0") == study.person_of("grid_a0") == "grid"
