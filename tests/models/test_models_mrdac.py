"""MRDAC: shapes for 1..4 references, determinism, keypoint range, temporal weights, input checks."""

from __future__ import annotations

import pytest
import torch

from avfc.errors import AvfcError, ConfigError
from avfc.models.base import Reference, temporal_weights
from avfc.models.generator import fuse, warp
from avfc.models.mrdac import MRDAC

SIZE = 64


def _model(seed: int = 0, **kw: object) -> MRDAC:
    torch.manual_seed(seed)
    return MRDAC(num_kp=10, size=SIZE, **kw).eval()


def _frames(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 3, SIZE, SIZE, generator=g)


def _refs(model: MRDAC, frames: torch.Tensor, indices: list[int], prepare: bool = True) -> list[Reference]:
    refs = []
    for f, i in zip(frames, indices):
        ref = Reference(i, f, model.detect(f))
        if prepare:
            ref.state = model.prepare_reference(ref)
        refs.append(ref)
    return refs


@pytest.mark.parametrize("num_refs", [1, 2, 3, 4])
def test_render_shape_and_range_for_each_reference_count(num_refs: int) -> None:
    model = _model()
    frames = _frames(num_refs + 1)
    refs = _refs(model, frames[:num_refs], list(range(0, 10 * num_refs, 10)))
    out = model.render(refs, model.detect(frames[-1]), target_index=7)
    assert out.shape == (1, 3, SIZE, SIZE)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_detect_shape_range_and_layout() -> None:
    model = _model()
    frames = torch.cat([_frames(3, seed=5).squeeze(1), torch.zeros(1, 3, SIZE, SIZE), torch.ones(1, 3, SIZE, SIZE)])
    kp = model.detect(frames)
    assert kp.shape == (5, model.motion_channels) == (5, 20)
    assert kp.min() >= -1 and kp.max() <= 1
    # (x0, y0, x1, y1, ...): the flat layout is the (K, 2) keypoints row-major
    assert torch.equal(kp.view(5, 10, 2), model.keypoints(frames))


def test_same_input_twice_gives_identical_output() -> None:
    model = _model()
    frames = _frames(3)
    kp_t = model.detect(frames[2])
    out1 = model.render(_refs(model, frames[:2], [0, 8]), kp_t, 5)
    out2 = model.render(_refs(model, frames[:2], [0, 8]), kp_t, 5)
    assert torch.equal(out1, out2)
    # a second model built with the same seed is the same function
    other = _model()
    assert torch.equal(other.render(_refs(other, frames[:2], [0, 8]), other.detect(frames[2]), 5), out1)


def test_prepared_state_and_on_the_fly_state_agree() -> None:
    model = _model()
    frames = _frames(3)
    kp_t = model.detect(frames[2])
    cached = model.render(_refs(model, frames[:2], [0, 8], prepare=True), kp_t, 5)
    fresh = model.render(_refs(model, frames[:2], [0, 8], prepare=False), kp_t, 5)
    assert torch.equal(cached, fresh)


def test_render_uses_the_temporal_weights() -> None:
    model = _model()
    frames = _frames(3)
    indices, target = [0, 12], 9
    refs = _refs(model, frames[:2], indices)
    kp_t = model.detect(frames[2])
    out = model.render(refs, kp_t, target)

    # rebuild the same frame by hand with base.temporal_weights
    w = temporal_weights(indices, target)
    assert not torch.allclose(w, torch.full_like(w, 0.5))  # unequal distances, unequal weights
    kp = kp_t.view(1, 10, 2)
    with torch.no_grad():
        levels, occs = [[], [], []], []
        for ref in refs:
            st = ref.state
            flow, occ = model.dense_motion(st.small, st.kp, kp, st.gaussians)
            occs.append(occ)
            for lvl, feat in enumerate(st.pyramid):
                levels[lvl].append(warp(feat, flow))
        fused, vis = zip(*(fuse(level, occs, w.unsqueeze(0)) for level in levels))
        manual = model.decoder(fused, vis)
    assert torch.allclose(out, manual, atol=1e-5)  # (render draws with the batch norms folded: float rounding)

    # the weights matter: another target index (other weights) changes the picture,
    # and listing the references in the other order changes nothing (beyond rounding)
    assert not torch.allclose(model.render(refs, kp_t, 1), out, atol=1e-4)
    assert torch.allclose(model.render(refs[::-1], kp_t, target), out, atol=1e-5)


def test_one_reference_is_independent_of_its_index() -> None:
    model = _model()
    frames = _frames(2)
    kp_t = model.detect(frames[1])
    a = model.render(_refs(model, frames[:1], [0]), kp_t, 3)
    b = model.render(_refs(model, frames[:1], [40]), kp_t, 3)
    assert torch.equal(a, b)


def test_reference_batch_of_one_broadcasts_to_several_targets() -> None:
    model = _model()
    frames = _frames(3)
    refs = _refs(model, frames[:1], [0])
    kps = torch.cat([model.detect(frames[1]), model.detect(frames[2])])
    both = model.render(refs, kps, 4)
    assert both.shape == (2, 3, SIZE, SIZE)
    assert torch.allclose(both[1:], model.render(refs, kps[1:], 4), atol=1e-5)


def test_bad_calls_raise_config_errors() -> None:
    model = _model()
    frames = _frames(6)
    refs = _refs(model, frames[:5], [0, 1, 2, 3, 4])
    kp_t = model.detect(frames[5])
    with pytest.raises(ConfigError, match="1..4 references"):
        model.render([], kp_t, 0)
    with pytest.raises(ConfigError, match="1..4 references"):
        model.render(refs, kp_t, 0)
    with pytest.raises(ConfigError, match="target keypoints"):
        model.render(refs[:1], kp_t[:, :10], 0)
    with pytest.raises(ConfigError, match="integers"):
        model.render(refs[:1], kp_t, 2.5)
    with pytest.raises(ConfigError, match="frames"):
        model.detect(torch.rand(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="float"):
        model.detect(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="reference keypoints"):
        model.prepare_reference(Reference(0, frames[0], torch.zeros(1, 7)))


@pytest.mark.parametrize("kw", [{"kp_dim": 3}, {"size": 100}, {"max_refs": 5}, {"motion_size": 24},
                                {"num_kp": 0}, {"feature_channels": (8, 8)}, {"picture_warp": "nearest"}])
def test_bad_architectures_are_refused(kw: dict) -> None:
    with pytest.raises(AvfcError):
        MRDAC(**{"size": SIZE, **kw})


def test_config_dict_rebuilds_the_same_architecture() -> None:
    model = _model(feature_channels=(8, 16, 24), decoder_blocks=2, max_refs=2)
    clone = MRDAC(**model.config_dict())
    a, b = model.state_dict(), clone.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)
    assert clone.max_refs == 2


def test_bicubic_warp_keeps_more_texture_than_bilinear() -> None:
    # a half-pixel shift: bilinear averages neighbours (a low-pass), bicubic keeps more of the detail
    texture = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    flow = torch.stack((xs + 1.0 / (SIZE - 1), ys), dim=-1).unsqueeze(0)  # half a pixel right
    def detail(x: torch.Tensor) -> float:
        return float((x[..., 1:] - x[..., :-1]).abs().mean())
    lin, cub = warp(texture, flow), warp(texture, flow, "bicubic")
    assert detail(cub) > 1.2 * detail(lin)
    assert detail(cub) < detail(texture)  # still an interpolation, not noise


def test_picture_warp_changes_only_the_picture_level_and_stays_in_range() -> None:
    lin, cub = _model(), _model(picture_warp="bicubic")
    cub.load_state_dict(lin.state_dict())
    frames = _frames(2, seed=4)
    kp = lin.detect(frames[1])
    out = {}
    for name, model in (("bilinear", lin), ("bicubic", cub)):
        refs = _refs(model, frames[:1], [0])
        res = model.animate([refs[0].state], kp.view(1, 10, 2), torch.ones(1, 1))
        out[name] = res
        assert res["prediction"].min() >= 0 and res["prediction"].max() <= 1
    assert torch.equal(out["bilinear"]["warped"][0], out["bicubic"]["warped"][0])  # features: bilinear in both
    assert not torch.equal(out["bilinear"]["prediction"], out["bicubic"]["prediction"])


def test_picture_warp_is_part_of_the_config_only_when_not_bilinear() -> None:
    assert "picture_warp" not in _model().config_dict()
    model = _model(picture_warp="bicubic")
    assert model.config_dict()["picture_warp"] == "bicubic"
    assert MRDAC(**model.config_dict()).picture_warp == "bicubic"


def _with_random_batch_norms(model: MRDAC, seed: int = 3) -> MRDAC:
    """A model whose batch norms are not the identity (a fresh one's are: mean 0, variance 1, scale 1, bias 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def test_render_draws_with_folded_batch_norms_what_the_trained_layers_draw() -> None:
    """``render`` goes through ``inference_modules`` (each batch norm folded into the convolution before it):
    the same picture as ``animate`` through the model's own layers, to float rounding; the model's layers, its
    state dict and ``draw`` (the search's and the fit's differentiable path) are left as they are."""
    model = _with_random_batch_norms(_model())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    frames = _frames(3)
    refs = _refs(model, frames[:2], [0, 10])
    kp = model.detect(frames[2])
    out = model.render(refs, kp, target_index=4)
    w = temporal_weights([0, 10], 4)[None]
    with torch.no_grad():
        plain = model.animate([r.state for r in refs], kp.view(1, 10, 2), w)["prediction"]
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
    dense_motion, decoder = model.inference_modules()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in (*dense_motion.modules(), *decoder.modules()))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.decoder.modules())
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(state[k], v) for k, v in now.items())
    assert model.inference_modules()[1] is decoder  # built once


def test_folded_layers_follow_a_change_of_the_parameters() -> None:
    """An in-place change of a parameter or of a batch norm's statistics (``load_state_dict``, an adapted
    model's deltas) is drawn at the next render: the folded layers are rebuilt, never stale."""
    model = _with_random_batch_norms(_model())
    frames = _frames(3)
    refs = _refs(model, frames[:1], [0])
    kp = model.detect(frames[2])
    before = model.render(refs, kp, target_index=3)
    bn = model.decoder.mix1[2].body[3]
    assert isinstance(bn, torch.nn.BatchNorm2d)
    with torch.no_grad():
        bn.bias.add_(0.5)
    after = model.render(refs, kp, target_index=3)
    with torch.no_grad():
        plain = model.animate([refs[0].state], kp.view(1, 10, 2), torch.ones(1, 1))["prediction"]
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, plain, rtol=0, atol=1e-5)
    other = _with_random_batch_norms(_model(), seed=4)
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(model.render(refs, kp, target_index=3), other.render(refs, kp, target_index=3),
                               rtol=0, atol=1e-5)
    with pytest.raises(ConfigError):
        model.train().inference_modules()


def test_draw_through_the_folded_layers_differentiates_in_the_keypoints_only() -> None:
    """``draw(folded=True)`` (the encoder's search): the render and its gradient in the keypoints of ``draw``
    through the model's own layers, to float rounding; the parameters get no gradient (the decoder-parameter
    fit, which needs one, draws unfolded)."""
    model = _with_random_batch_norms(_model())
    frames = _frames(4)
    refs = _refs(model, frames[:2], [0, 10])
    kp = torch.cat([model.detect(f) for f in frames[2:]])
    outs, grads = [], []
    for folded in (False, True):
        x = kp.clone().requires_grad_(True)
        out = model.draw(refs, x, [3, 7], folded=folded)
        (g,) = torch.autograd.grad((out * torch.linspace(0, 1, out.numel()).view_as(out)).sum(), [x])
        outs.append(out.detach())
        grads.append(g)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4 * float(grads[0].abs().max()))
    assert grads[0].abs().max() > 0
    for p in model.parameters():
        p.requires_grad_(True)
    model.draw(refs, kp.clone().requires_grad_(True), [3, 7], folded=True).sum().backward()
    assert all(p.grad is None for p in model.parameters())
