"""The motion search's optional terms (avfc.codec.search): an injected perceptual distance and the
mouth-motion term. The codec ships no perceptual weights: these tests inject synthetic callables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import avfc
from avfc.codec import Decoder, Encoder
from avfc.codec.common import make_reference
from avfc.codec.encoder import analyse
from avfc.codec.search import Effort, MotionSearch, _mouth_energy_gap
from avfc.config import EncoderConfig
from avfc.entropy import encode_motion
from avfc.errors import ConfigError
from avfc.media.synthetic import talking_face
from avfc.models.zoo import load_model

SIZE = 64
SHIFT = 4  # grid steps (precision 5: 1/8 of the unit square)
EFFORT = Effort("test", search=True, steps=40, scale=1, choice_scale=1, lr=1.0)


def _setup(n: int = 8, seed: int = 1):
    model = load_model("tiny-test", SIZE)
    frames = talking_face(n + 1, SIZE, SIZE, seed=seed)
    enc = Encoder(EncoderConfig.make(model="tiny-test", size=SIZE, audio="none", key_qp=30, effort="detector"))
    enc.push_frames(frames[:1])
    ref = make_reference(model, enc.decoded_keys[0], 0, 5, torch.device("cpu"))
    return model, ref, frames[1:], analyse(model, frames[1:], 5, 0.3)


def _choose(search, ref, frames, det):
    return search.choose(1, det, list(frames), [ref], bidirectional=False, keys=set(), stride=1, prev=None,
                         bits=lambda q: 8 * len(encode_motion(q)))


def test_a_perceptual_term_moves_the_search_where_it_prefers():
    """A synthetic 'perceptual' term that prefers the render of the detector's keypoints shifted by SHIFT
    grid steps (whatever the source): with a large weight the searched rows land there; without it
    they do not. (The search hands the term a few frames at a time: each is told by its source.)"""
    model, ref, frames, det = _setup()
    target_q = det + SHIFT
    with torch.no_grad():
        target = model.draw([ref], torch.from_numpy(target_q.astype(np.float32) / 32),
                            list(range(1, 1 + len(det)))).clamp(0, 1)
    sources = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    calls = {"n": 0}

    def prefers_the_shift(render: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        assert render.shape == source.shape and render.shape[1:] == target.shape[1:]
        rows = [int((sources - s).abs().amax(dim=(1, 2, 3)).argmin()) for s in source]
        return (render - target[rows]).abs().mean(dim=(1, 2, 3))

    moved = MotionSearch(model, EFFORT, 5, lam=1e-4, perceptual=prefers_the_shift, perceptual_weight=1e4,
                         perceptual_size=SIZE)
    with_term = _choose(moved, ref, frames, det)
    plain = _choose(MotionSearch(model, EFFORT, 5, lam=1e-4), ref, frames, det)
    assert calls["n"] > EFFORT.steps  # every step and the exact choice
    assert with_term.kind == "search"
    dist_term = np.abs(with_term.q - target_q).mean()
    dist_plain = np.abs(plain.q - target_q).mean()
    assert dist_term < 0.5 * dist_plain
    assert dist_term < 0.5 * np.abs(det - target_q).mean()


def test_a_zero_weight_or_no_term_is_todays_search():
    model, ref, frames, det = _setup(seed=2)
    effort = Effort("t", search=True, steps=6, scale=1, choice_scale=1, lr=1.0)

    def never(render, source):
        raise AssertionError("a term of weight 0 is not called")

    a = _choose(MotionSearch(model, effort, 5, lam=0.05), ref, frames, det)
    b = _choose(MotionSearch(model, effort, 5, lam=0.05, perceptual=never, perceptual_weight=0.0), ref, frames, det)
    assert np.array_equal(a.q, b.q) and a.cost == b.cost


def test_the_perceptual_term_sees_the_render_at_its_size():
    model, ref, frames, det = _setup(n=4, seed=3)
    sizes = set()

    def term(render, source):
        sizes.add((render.shape[-1], source.shape[-1]))
        return (render - source).abs().mean(dim=(1, 2, 3))

    effort = Effort("t", search=True, steps=2, scale=1, choice_scale=1, lr=1.0)
    for size, seen in [(48, (48, 48)), (96, (96, 96)), (None, (SIZE, SIZE))]:  # None: the render's size
        sizes.clear()
        _choose(MotionSearch(model, effort, 5, lam=0.05, perceptual=term, perceptual_size=size), ref, frames, det)
        assert sizes == {seen}


@pytest.mark.parametrize("kw", [{"perceptual": 3}, {"perceptual_weight": -1.0}, {"perceptual_size": 8},
                                {"mouth_motion_weight": float("nan")}])
def test_bad_search_terms_are_config_errors(kw):
    with pytest.raises(ConfigError):
        MotionSearch(load_model("tiny-test", SIZE), EFFORT, 5, lam=1.0, **kw)


def test_the_mouth_motion_term_measures_the_mouth_boxs_energy():
    src = torch.zeros(3, 3, 12, 12)
    out = src.clone()
    src[1, :, 9:, 5] = 1.0  # the source's mouth box (rows 8.., cols 4..7) changes at frame 1 ...
    assert float(_mouth_energy_gap(out, src, [1, 2])) > 0  # ... the render's does not
    assert float(_mouth_energy_gap(src, src, [1, 2])) == 0
    far = out.clone()
    far[1, :, :3, :3] = 1.0  # outside the box: no mouth motion
    assert float(_mouth_energy_gap(far, out, [1, 2])) == 0


def test_the_mouth_motion_term_changes_the_choice():
    model, ref, frames, det = _setup(seed=4)
    effort = Effort("t", search=True, steps=10, scale=1, choice_scale=1, lr=1.0)
    a = _choose(MotionSearch(model, effort, 5, lam=0.05), ref, frames, det)
    b = _choose(MotionSearch(model, effort, 5, lam=0.05, mouth_motion_weight=50.0), ref, frames, det)
    assert not np.array_equal(a.q, b.q)


def _l1_term(render, source):
    return (render - source).abs().mean(dim=(1, 2, 3))


def test_encode_with_a_term_decodes_and_is_deterministic_and_without_one_is_unchanged():
    frames = talking_face(24, SIZE, SIZE, seed=5)
    kw = dict(model="tiny-test", size=SIZE, audio="none", key_qp=35, effort="fast", packet_frames=12)
    plain = avfc.encode(frames, **kw).data
    assert avfc.encode(frames, search_perceptual=None, **kw).data == plain
    # weight 0: the term is never called, the file is today's
    assert avfc.encode(frames, search_perceptual=_l1_term, search_perceptual_weight=0.0, **kw).data == plain
    with_term = [avfc.encode(frames, search_perceptual=_l1_term, search_perceptual_weight=300.0, **kw).data
                 for _ in range(2)]
    assert with_term[0] == with_term[1]
    assert with_term[0] != plain
    dec = Decoder()
    dec.push(with_term[0])
    dec.close()
    assert dec.issues == [] and len(dec.pull_frames()) == 24


def test_a_term_the_search_cannot_use_is_refused_before_any_work():
    frames = talking_face(4, SIZE, SIZE, seed=6)
    with pytest.raises(ConfigError, match="callable"):
        avfc.encode(frames, model="tiny-test", size=SIZE, audio="none", effort="fast", search_perceptual="lpips")
    with pytest.raises(ConfigError, match="effort"):
        avfc.encode(frames, model="tiny-test", size=SIZE, audio="none", effort="detector",
                    search_perceptual=_l1_term)
    with pytest.raises(ConfigError, match="effort"):
        Encoder(EncoderConfig.make(model="tiny-test", size=SIZE, audio="none", effort="live"), perceptual=_l1_term)
    with pytest.raises(ConfigError):
        EncoderConfig.make(search_perceptual_weight=-1)


def test_with_a_term_the_search_renders_at_the_efforts_perceptual_scale():
    model = load_model("tiny-test", 128)
    frames = talking_face(4, 128, 128, seed=7)
    enc = Encoder(EncoderConfig.make(model="tiny-test", size=128, audio="none", key_qp=30, effort="detector"))
    enc.push_frames(frames[:1])
    ref = make_reference(model, enc.decoded_keys[0], 0, 5, torch.device("cpu"))
    det = analyse(model, frames[1:], 5, 0.3)
    sizes = []

    def term(render, source):
        sizes.append(render.shape[-1])
        return (render - source).abs().mean(dim=(1, 2, 3))

    effort = Effort("t", search=True, steps=2, scale=2, choice_scale=2, perceptual_scale=1, lr=1.0)
    _choose(MotionSearch(model, effort, 5, lam=0.05, perceptual=term), ref, frames[1:], det)
    assert sizes[:2] == [128, 128] and set(sizes[2:]) == {64}  # the steps at 128 px, the choice at 64
