"""Training: a few steps lower the loss, train() runs and resumes, export round trip."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from synthetic import talking_face, write_clip

from avfc.errors import ConfigError, ModelMismatchError
from avfc.models.base import Reference
from avfc.models.mrdac import MRDAC
from avfc.train import export_model, get_config, load_exported, train
from avfc.train.configs import LossConfig, OptimConfig, TrainConfig
from avfc.train.trainer import (
    TrainStep,
    grow_decoder,
    init_weights,
    learning_rate,
    reference_weights,
    searched_keypoints,
    train_step,
)

SIZE = 64


def _batch() -> dict[str, torch.Tensor]:
    """Two samples of a synthetic talking face: target first, then two references."""
    frames = torch.from_numpy(talking_face(40, SIZE, SIZE, seed=0)).permute(0, 3, 1, 2).float() / 255
    idx = torch.tensor([[12, 0, 30], [25, 5, 38]])
    return {"frames": frames[idx], "indices": idx}


def test_twenty_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=5, size=SIZE)
    step = TrainStep(model, LossConfig(perceptual=0.0, equivariance=1.0, contrastive=0.1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = _batch()
    l1 = [train_step(step, opt, batch, 1 + i % 2, grad_clip=1.0)["l1"] for i in range(20)]
    assert all(np.isfinite(l1))
    assert np.mean(l1[-3:]) < 0.7 * np.mean(l1[:3])


def test_train_step_reports_every_term() -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=5, size=SIZE)
    step = TrainStep(model, LossConfig(perceptual=0.0))
    out = train_step(step, torch.optim.AdamW(model.parameters()), _batch(), 2, grad_clip=1.0)
    assert {"l1", "equivariance", "contrastive", "total", "grad_norm"} <= out.keys()
    one = train_step(step, torch.optim.AdamW(model.parameters()), _batch(), 1, grad_clip=1.0)
    assert "contrastive" not in one  # one reference: nothing to contrast
    with pytest.raises(ConfigError):
        step(_batch()["frames"], _batch()["indices"], 3)
    with pytest.raises(ConfigError, match="perceptual"):
        TrainStep(model, LossConfig(perceptual=1.0))


def test_separation_term_is_reported_and_weighted() -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=5, size=SIZE)
    on = TrainStep(model, LossConfig(perceptual=0.0, equivariance=0.0, contrastive=0.0, separation=2.0))
    losses = {k: v.detach() for k, v in on(_batch()["frames"], _batch()["indices"], 1).items()}
    assert 0.0 < float(losses["separation"]) <= 1.0
    assert float(losses["total"]) == pytest.approx(float(losses["l1"] + 2.0 * losses["separation"]), rel=1e-5)
    off = TrainStep(model, LossConfig(perceptual=0.0, separation=0.0))
    assert "separation" not in off(_batch()["frames"], _batch()["indices"], 1)


class _MeanSquare(torch.nn.Module):
    """A stand-in distance network: per-image mean squared error."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).mean(dim=(1, 2, 3))


def test_distance_losses_are_reported_weighted_and_trained() -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=5, size=SIZE)
    cfg = LossConfig(perceptual=0.0, equivariance=0.0, contrastive=0.0, l1=0.0, lpips=3.0)
    step = TrainStep(model, cfg, distances={"lpips": _MeanSquare()})
    losses = {k: v.detach() for k, v in step(_batch()["frames"], _batch()["indices"], 1).items()}
    assert float(losses["lpips"]) > 0 and "dists" not in losses
    assert float(losses["total"]) == pytest.approx(3.0 * float(losses["lpips"]), rel=1e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = [train_step(step, opt, _batch(), 1, grad_clip=1.0)["lpips"] for _ in range(15)]
    assert first[-1] < first[0]  # the distance alone trains the model
    with pytest.raises(ConfigError, match="dists"):
        TrainStep(model, LossConfig(perceptual=0.0, dists=1.0))


def _render_l1(model: MRDAC, batch: dict[str, torch.Tensor], kp_target: torch.Tensor) -> float:
    frames = batch["frames"]
    with torch.no_grad():
        state = model.encode_reference(frames[:, 1], model.keypoints(frames[:, 1]))
        pred = model.animate([state], kp_target, torch.ones(frames.shape[0], 1))["prediction"]
        return float((pred - frames[:, 0]).abs().mean())


def test_the_training_search_moves_keypoints_to_a_closer_render() -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=5, size=SIZE).eval()
    batch = _batch()
    frames = batch["frames"]
    with torch.no_grad():
        kp = model.keypoints(frames.reshape(-1, 3, SIZE, SIZE)).view(2, 3, 5, 2)
    moved = searched_keypoints(model, frames[:, 1:2], kp[:, 1:2], frames[:, 0], kp[:, 0], torch.ones(2, 1),
                               steps=8, lr=2.0, precision=5)
    assert moved.shape == kp[:, 0].shape and not moved.requires_grad
    step = (moved - kp[:, 0]).abs().amax()
    assert 0 < step <= 8 * 2.0 / 32 * 1.01  # Adam moves at most about its step size (lr, shrinking) per step
    assert _render_l1(model, batch, moved) < _render_l1(model, batch, kp[:, 0])
    same = searched_keypoints(model, frames[:, 1:2], kp[:, 1:2], frames[:, 0], kp[:, 0], torch.ones(2, 1),
                              steps=0, lr=2.0, precision=5)
    assert torch.equal(same, kp[:, 0])


def test_search_aware_training_draws_the_first_share_of_the_batch_from_searched_keypoints() -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=5, size=SIZE)
    cfg = LossConfig(perceptual=0.0, equivariance=0.0, contrastive=0.0, kp_precision=10, search_steps=4,
                     search_lr=16.0, search_size=SIZE, search_share=0.5)
    step = TrainStep(model, cfg)
    seen: list[torch.Tensor] = []
    animate = model.animate

    def spy(states, kp_target, weights):  # type: ignore[no-untyped-def]
        seen.append(kp_target.detach().clone())
        return animate(states, kp_target, weights)

    model.animate = spy  # type: ignore[method-assign]
    batch = _batch()
    losses = step(batch["frames"], batch["indices"], 1)
    losses["total"].backward()
    with torch.no_grad():
        used = batch["frames"][:, :2].reshape(-1, 3, SIZE, SIZE)  # as the step detects them (batch statistics)
        detector = model.keypoints(used).view(2, 2, 5, 2)[:, 0]
    final = seen[-1]  # the training render (the search's renders come first, from its own copy)
    assert torch.allclose(final[1], detector[1], atol=1e-3)  # the second sample: the detector's (+ rounding noise)
    assert (final[0] - detector[0]).abs().amax() > 5e-3  # the first: moved by the search
    assert model.dense_motion.parameters().__next__().grad is not None
    assert not any(p.requires_grad for p in step._search[0].parameters())  # the copy does not train


def test_init_from_loads_a_zoo_model_or_an_exported_file(tmp_path) -> None:
    from avfc.models.zoo import load_model

    model = get_config("cpu").model.build()
    init_weights(model, "mrdac-cpu-v1")
    shipped = load_model("mrdac-cpu-v1").state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items())
    torch.manual_seed(3)
    small = MRDAC(num_kp=4, size=SIZE)
    export_model(small, tmp_path / "s.safetensors")
    other = MRDAC(num_kp=4, size=SIZE)
    init_weights(other, str(tmp_path / "s.safetensors"))
    assert all(torch.equal(v, small.state_dict()[k]) for k, v in other.state_dict().items())
    with pytest.raises(ConfigError, match="does not fit"):
        init_weights(MRDAC(num_kp=5, size=SIZE), str(tmp_path / "s.safetensors"))
    with pytest.raises(ConfigError, match="neither"):
        init_weights(other, str(tmp_path / "missing.safetensors"))


def test_a_grown_decoder_renders_as_the_smaller_model_then_trains_its_new_blocks(tmp_path) -> None:
    torch.manual_seed(4)
    small = MRDAC(num_kp=4, size=SIZE, decoder_blocks=2)
    with torch.no_grad():  # trained-looking batch norms, so "identity" is not an accident of the defaults
        for m in small.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    export_model(small, tmp_path / "s.safetensors")
    grown = MRDAC(num_kp=4, size=SIZE, decoder_blocks=4)
    init_weights(grown, str(tmp_path / "s.safetensors"), grow=True)
    small.eval(), grown.eval()
    frames = _batch()["frames"]
    ref, target = frames[:1, 1], frames[:1, 0]
    with torch.no_grad():
        out = [m.animate([m.encode_reference(ref, m.keypoints(ref))], m.keypoints(target), torch.ones(1, 1))
               ["prediction"] for m in (small, grown)]
    assert torch.equal(out[0], out[1])
    new_bn = grown.decoder.blocks[3].body[-1]
    assert torch.count_nonzero(new_bn.weight) == 0
    # the new blocks learn: their zeroed scale gets a gradient
    grown.train()
    loss = grown.animate([grown.encode_reference(ref, grown.keypoints(ref))], grown.keypoints(target),
                         torch.ones(1, 1))["prediction"].sub(target).abs().mean()
    loss.backward()
    assert new_bn.weight.grad is not None and float(new_bn.weight.grad.abs().sum()) > 0
    # anything but added decoder blocks is refused
    state = small.state_dict()
    with pytest.raises(ConfigError, match="nothing to grow"):
        grow_decoder(MRDAC(num_kp=4, size=SIZE, decoder_blocks=2), state)
    with pytest.raises(ConfigError, match="lacks"):
        grow_decoder(MRDAC(num_kp=4, size=SIZE, decoder_blocks=1), state)
    with pytest.raises(ConfigError, match="shape"):
        grow_decoder(MRDAC(num_kp=5, size=SIZE, decoder_blocks=4), state)
    with pytest.raises(ConfigError, match="only frame-decoder blocks"):
        grow_decoder(MRDAC(num_kp=4, size=SIZE, decoder_blocks=4), {k: v for k, v in state.items()
                                                                  if not k.startswith("encoder.")})


def test_reference_weights_match_the_codec_weights() -> None:
    w = reference_weights(torch.tensor([[10, 0, 8, 10], [5, 4, 4, 4]]))
    assert torch.allclose(w[0], torch.tensor([0.5, 1.3, 1.5]) / 3.3)
    assert torch.allclose(w[1], torch.full((3,), 1 / 3))


def test_learning_rate_warms_up_then_decays() -> None:
    cfg = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [learning_rate(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert learning_rate(100, 100, cfg) == pytest.approx(1e-4)


def _tiny_config(tmp_path, steps: int) -> TrainConfig:
    videos = tmp_path / "videos"
    if not videos.is_dir():
        videos.mkdir()
        write_clip(videos / "a.mp4", n=30, width=96, height=80, audio=False)
    return get_config("cpu-small", {
        "model": {"size": SIZE, "num_kp": 4, "max_refs": 2},
        "data": {"dirs": [str(videos)], "cache_dir": str(tmp_path / "cache"), "max_frames": 30},
        "loss": {"perceptual": 0.0},
        "steps": steps, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": 2,
        "eval_samples": 2, "out_dir": str(tmp_path / "run"), "threads": 1,
    })


def test_train_writes_weights_and_resumes(tmp_path) -> None:
    final = train(_tiny_config(tmp_path, 3), progress=False)
    run = tmp_path / "run"
    assert final == run / "cpu-small.safetensors" and final.is_file()
    digest = hashlib.sha256(final.read_bytes()).hexdigest()
    assert (run / "cpu-small.sha256").read_text().split()[0] == digest
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3] and "eval_l1" in log[2]
    assert log[0]["still_l1"] > 0 and log[0]["eval_l1"] > 0

    train(_tiny_config(tmp_path, 5), progress=False)  # continues at step 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1, 2, 3, 4, 5]
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 5


def test_train_on_coded_references_with_a_frozen_keypoint_detector(tmp_path) -> None:
    cfg = _tiny_config(tmp_path, 2)
    cfg = TrainConfig(**{**cfg.model_dump(), "freeze": ["kp_detector"], "train_refs": 1,
                         "data": {**cfg.data.model_dump(), "ref_codec": "av1", "ref_qps": [50], "ref_stride": 7,
                                  "same_frame": 0.5}})
    torch.manual_seed(cfg.seed)  # train() builds the same initial model
    start = cfg.model.build()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    final = train(cfg, progress=False)
    after = load_exported(final).state_dict()
    kp = [k for k in before if k.startswith("kp_detector.")]
    assert kp and all(torch.equal(before[k], after[k]) for k in kp)  # weights and batch-norm statistics
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert list((tmp_path / "cache" / "clips").glob("*-coded-*.npy"))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["refs"] == 1


def test_train_needs_data(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no training data"):
        train(get_config("cpu-small", {"out_dir": str(tmp_path)}), progress=False)
    with pytest.raises(ConfigError, match="train_refs"):
        train(_tiny_config(tmp_path, 1).model_copy(update={"train_refs": 3}), progress=False)


def test_export_round_trip_gives_identical_outputs_and_its_sha256(tmp_path) -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=6, size=SIZE, decoder_blocks=2)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = tmp_path / "m.safetensors"
    digest = export_model(model, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    clone = load_exported(path)
    assert isinstance(clone, MRDAC) and clone.config_dict() == model.config_dict()
    frames = torch.rand(3, 1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    outs = []
    for m in (model, clone):
        refs = [Reference(i, f, m.detect(f)) for i, f in zip((0, 6), frames[:2])]
        outs.append((m.detect(frames[2]), m.render(refs, m.detect(frames[2]), 3)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    # the same weights give the same file, hence the same hash
    assert export_model(clone, tmp_path / "again.safetensors") == digest


def test_float16_export_is_half_the_size_and_close(tmp_path) -> None:
    torch.manual_seed(0)
    model = MRDAC(num_kp=6, size=SIZE).eval()
    export_model(model, tmp_path / "f32.safetensors")
    export_model(model, tmp_path / "f16.safetensors", dtype="float16")
    f32, f16 = (tmp_path / "f32.safetensors").stat().st_size, (tmp_path / "f16.safetensors").stat().st_size
    assert f16 < 0.6 * f32
    half = load_exported(tmp_path / "f16.safetensors")
    frame = torch.rand(1, 3, SIZE, SIZE)
    assert torch.allclose(half.detect(frame), model.detect(frame), atol=2e-2)
    with pytest.raises(ConfigError):
        export_model(model, tmp_path / "x.safetensors", dtype="int8")


def test_load_exported_refuses_foreign_files(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"),
              metadata={"avfc": json.dumps({"arch": "other", "config": {}})})
    with pytest.raises(ModelMismatchError, match="architecture"):
        load_exported(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelMismatchError):
        load_exported(tmp_path / "junk.safetensors")


def test_every_preset_is_valid_and_search_settings_are_checked() -> None:
    from avfc.train.configs import PRESETS

    for name in PRESETS:
        assert get_config(name).name == name
    v6 = get_config("cpu-v6")
    assert v6.loss.search_steps > 0 and v6.init_from == "mrdac-cpu-v4"
    assert get_config("cpu-v4").loss.search_steps == 0  # off unless asked for
    for bad in ({"search_size": 96}, {"search_share": 1.5}, {"search_steps": -1}, {"search_lr": 0.0}):
        with pytest.raises(ConfigError):
            LossConfig(**bad)
