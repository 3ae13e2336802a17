"""Diffusion lips (format 1.3): noise generator, schedule, sampler determinism and block
independence, the numpy network against its torch twin, arrays, a tiny training run, the bundle."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from avfc.avcc.diffusion import (
    MAX_STEPS,
    DiffusionMeta,
    LipsDiffusion,
    alpha_bar,
    gaussian_noise,
    grid_offsets,
    keypoints_from_offsets,
    offsets_to_grid,
    parameter_shapes,
    splitmix64,
)
from avfc.entropy.quant import QMAX
from avfc.errors import EntropyError

META = DiffusionMeta(channels=6, kp_dim=2, block=5, context=2, lookahead=1, width=16, layers=2, heads=2, ffn=24,
                     embed=4, time_freqs=4)


def random_arrays(meta: DiffusionMeta = META, seed: int = 0, scale: float = 0.4, guidance: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"diffusion.meta": meta.as_array()}
    for name, shape in parameter_shapes(meta).items():
        a = rng.normal(0.0, scale, shape)
        if name.endswith(("ln1.weight", "ln2.weight")) or name == "ln_f.weight":
            a = 1.0 + 0.1 * a
        out["diffusion." + name] = a.astype(np.float32)
    out["diffusion.x_scale"] = np.array([1.5], np.float32)
    out["diffusion.guidance"] = np.array([guidance], np.float32)
    return out


def random_model(**kw) -> LipsDiffusion:
    return LipsDiffusion.from_arrays(random_arrays(**kw))


def audio(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.integers(0, 512, n), rng.integers(0, 512, n),
                     rng.integers(0, 16, n), rng.integers(0, 64, n)], axis=1)


# ---------------------------------------------------------------------------- noise
def _spec_noise(seed: int, frame: int, channel: int) -> int:
    """docs/bitstream.md F.10.3, in Python integers: 2**48 times the noise value."""
    mask = (1 << 64) - 1

    def sm(x: int) -> int:
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    k = sm(sm(seed) ^ frame)
    return sum(sm(k ^ (12 * channel + j)) >> 16 for j in range(12)) - 6 * (1 << 48)


def test_splitmix64_known_values() -> None:
    # the first output of the reference SplitMix64 seeded with 0
    assert int(splitmix64(np.array([0], np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_noise_matches_the_integer_spec_exactly() -> None:
    z = gaussian_noise(12345, 999_990, 12, 7)
    for f in (0, 5, 11):
        for c in range(7):
            assert z[f, c] * 2.0**48 == _spec_noise(12345, 999_990 + f, c)
    # pinned values, exact in float64
    assert (gaussian_noise(7, 0, 1, 1) * 2.0**48).astype(np.int64).tolist() == [[-44981375346837]]
    np.testing.assert_array_equal(gaussian_noise(0, 0, 2, 3).round(8),
                                  [[-0.85431084, 2.07397662, -0.65275915], [-1.45982255, -1.38938398, 0.86573169]])


def test_noise_is_counter_based_and_roughly_standard_normal() -> None:
    z = gaussian_noise(3, 100, 50, 20)
    np.testing.assert_array_equal(z[10:20], gaussian_noise(3, 110, 10, 20))  # any split, same values
    np.testing.assert_array_equal(z[:, :5], gaussian_noise(3, 100, 50, 5))
    assert not np.array_equal(z, gaussian_noise(4, 100, 50, 20))
    big = gaussian_noise(0, 0, 5000, 20)
    assert abs(big.mean()) < 0.02 and abs(big.std() - 1.0) < 0.02 and np.abs(big).max() < 6
    with pytest.raises(EntropyError):
        gaussian_noise(1 << 32, 0, 1, 1)


def test_schedule() -> None:
    ab = alpha_bar(np.linspace(0, 1, 11))
    assert ab[0] == pytest.approx(1.0) and ab[-1] < 1e-30 and (np.diff(ab) < 0).all()
    assert float(alpha_bar(0.5)) == pytest.approx(math.cos(0.508 / 1.008 * math.pi / 2) ** 2
                                                  / math.cos(0.008 / 1.008 * math.pi / 2) ** 2)


def test_rounding_and_mean_removal_as_the_regressor() -> None:
    x = np.array([[0.5, -0.5, 1.49, 2.5, -3.2, 0.0]])
    # floor(x + 0.5) = [1, 0, 1, 3, -3, 0]; x axis (0, 2, 4): sum -1 // 3 = -1; y axis: 3 // 3 = 1
    assert offsets_to_grid(x, 2).tolist() == [[2, -1, 2, 2, -2, -1]]
    q = np.array([[10, 20, 30, 40]]), np.array([9, 21, 30, 40])
    assert grid_offsets(*q).tolist() == [[1, 0, 0, 1]]  # x: [1, 0] - 1 // 2; y: [-1, 0] - (-1 // 2)
    assert keypoints_from_offsets(np.array([QMAX, 0]), np.array([[5, -3]])).tolist() == [[QMAX, -3]]


# ---------------------------------------------------------------------------- the model
def test_arrays_round_trip_and_validation() -> None:
    arrays = random_arrays()
    model = LipsDiffusion.from_arrays(arrays)
    back = model.to_arrays()
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    bad = dict(arrays)
    del bad["diffusion.head.bias"]
    with pytest.raises(EntropyError, match="head.bias"):
        LipsDiffusion.from_arrays(bad)
    for key, value in (("diffusion.pos", arrays["diffusion.pos"].astype(np.float64)),
                       ("diffusion.pos", arrays["diffusion.pos"][:-1]),
                       ("diffusion.in.bias", np.full(16, np.nan, np.float32)),
                       ("diffusion.x_scale", np.array([0.0], np.float32)),
                       ("diffusion.meta", np.array([2, *META.as_array()[1:]])),
                       ("diffusion.meta", np.array([1, 6, 2, 5, 6, 1, 16, 2, 2, 24, 4, 4]))):  # context > block
        with pytest.raises(EntropyError):
            LipsDiffusion.from_arrays({**arrays, key: value})


def test_numpy_network_equals_its_torch_twin() -> None:
    torch = pytest.importorskip("torch")
    from avfc.train.avcc_diffusion import DiffusionNet

    net = DiffusionNet(META).double()
    model = random_model()
    with torch.no_grad():
        for name in net.shapes:
            if name in ("x_scale", "guidance"):
                getattr(net, name).fill_(float(model.params[name][0]))
            else:
                net.p(name).copy_(torch.from_numpy(model.params[name]))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, META.tokens, 6))
    roles = rng.integers(0, 4, (3, META.tokens))
    fields = np.stack([rng.integers(0, 513, (3, META.tokens)), rng.integers(0, 513, (3, META.tokens)),
                       rng.integers(0, 17, (3, META.tokens)), rng.integers(0, 65, (3, META.tokens))], axis=-1)
    u = rng.random(3)
    a = model.denoise(x, roles, fields, u)
    with torch.no_grad():
        b = net(torch.from_numpy(x), torch.from_numpy(roles), torch.from_numpy(fields), torch.from_numpy(u)).numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    # the exported arrays load back to the same numpy model
    np.testing.assert_allclose(net.float().to_numpy_model().denoise(x, roles, fields, u), a, atol=1e-4)


def test_sampling_is_deterministic_and_depends_on_seed_steps_and_audio() -> None:
    model = random_model()
    rng = np.random.default_rng(2)
    fields = audio(rng, 23)
    a = model.generate(fields, 23, seed=5, steps=4)
    assert a.shape == (23, 6) and a.dtype == np.int64
    np.testing.assert_array_equal(a, model.generate(fields, 23, seed=5, steps=4))
    np.testing.assert_array_equal(a, random_model().generate(fields.copy(), 23, seed=5, steps=4))
    assert not np.array_equal(a, model.generate(fields, 23, seed=6, steps=4))
    assert not np.array_equal(a, model.generate(fields, 23, seed=5, steps=3))
    assert not np.array_equal(a, model.generate(audio(rng, 23), 23, seed=5, steps=4))
    for axis in range(2):  # each axis' mean is removed (up to the floor division's remainder)
        assert (np.abs(a[:, axis::2].mean(axis=1)) < 1.0).all()
    for steps in (0, MAX_STEPS + 1):
        with pytest.raises(EntropyError):
            model.generate(fields, 23, seed=5, steps=steps)


def test_guidance_runs_the_unconditional_copy() -> None:
    rng = np.random.default_rng(3)
    fields = audio(rng, 12)
    plain = random_model().generate(fields, 12, 1, 3)
    guided = random_model(guidance=2.5).generate(fields, 12, 1, 3)
    assert guided.shape == plain.shape and not np.array_equal(guided, plain)


def test_blocks_are_independent_of_how_the_clip_is_split() -> None:
    """Block k depends on the audio of frames kB-P .. kB+B+L-1, the previous block and (seed, frame):
    sampling block by block, in any grouping, gives what one call gives."""
    model = random_model()
    m = model.meta
    rng = np.random.default_rng(4)
    fields = audio(rng, 37)
    whole = model.generate(fields, 37, seed=9, steps=5)
    ctx, parts = None, []
    for k in range(8):  # 37 frames = 7 blocks of 5 and 2 frames of an 8th
        rows = model.block_rows(fields, k)
        assert rows.shape == (m.tokens, 4)
        off = model.sample_block(k, rows, ctx, 9, 5)
        parts.append(off)
        ctx = model.context_of(off)
    np.testing.assert_array_equal(np.concatenate(parts)[:37], whole)
    # a longer clip changes nothing before the block whose window reaches past frame 37
    longer = model.generate(np.concatenate([fields, audio(rng, 20)]), 57, seed=9, steps=5)
    safe = (37 - m.lookahead) // m.block * m.block
    np.testing.assert_array_equal(longer[:safe], whole[:safe])
    assert not np.array_equal(longer[safe:37], whole[safe:37])
    # unknown audio beyond the end is what a shorter fields array means
    padded = np.concatenate([fields, np.full((10, 4), -1)])
    np.testing.assert_array_equal(model.generate(padded, 37, seed=9, steps=5), whole)


def test_window_inputs_validate() -> None:
    model = random_model()
    m = model.meta
    rows = np.full((m.tokens, 4), -1)
    with pytest.raises(EntropyError):
        model.sample_block(0, rows[:-1], None, 0, 2)
    with pytest.raises(EntropyError):
        model.sample_block(1, rows, np.zeros((m.context + 1, 6), np.int64), 0, 2)
    with pytest.raises(EntropyError):
        model.sample_block(1, rows, np.zeros((m.context, 6)), 0, 2)  # float context
    out = model.sample_block(1, rows, np.zeros((m.context, 6), np.int64), 0, 2)
    assert out.shape == (m.block, 6)


# ---------------------------------------------------------------------------- training
def test_a_tiny_training_run_lowers_the_loss() -> None:
    torch = pytest.importorskip("torch")
    from avfc.train.avcc_diffusion import TrainConfig, fixed_eval_loss, make_windows, train

    class Clip:
        def __init__(self, seed: int) -> None:
            rng = np.random.default_rng(seed)
            self.fields = audio(rng, 40)
            self.ref_q = rng.integers(-30, 30, 6).astype(np.int32)
            # the mouth (channel 1) opens with the energy: something to learn
            q = np.repeat(self.ref_q[None], 40, axis=0).astype(np.int64)
            q[:, 1] += self.fields[:, 2] // 4
            self.q = q.astype(np.int32)
            self.num_frames = 40
            self.name = f"c{seed}"

    torch.set_num_threads(1)
    clips = [Clip(s) for s in range(4)]
    cfg = TrainConfig(steps=60, batch=16, lr=3e-3, warmup=5, dropout=0.0, log_every=1000)
    windows = make_windows(clips, META, 1.0, "blocks")
    net0, _ = train(clips, [], META, TrainConfig(steps=1, batch=16, lr=0.0, log_every=1000), x_scale=1.0,
                    log=lambda s: None)
    net, hist = train(clips, [], META, cfg, x_scale=1.0, log=lambda s: None)
    before, after = fixed_eval_loss(net0, windows), fixed_eval_loss(net, windows)
    assert after < 0.7 * before, (before, after)
    assert hist and hist[-1]["step"] == 59
    model = net.to_numpy_model()
    assert model.generate(clips[0].fields, 40, 0, 4).shape == (40, 6)


# ---------------------------------------------------------------------------- the shipped bundle
def test_shipped_bundle_v3_is_v2_plus_the_diffusion_model() -> None:
    from safetensors.numpy import load_file

    from avfc.avcc.zoo import AVCC_ZOO, default_avcc_for, load_avcc, weights_dir

    e3, e2 = AVCC_ZOO["avcc-mrdac-cpu-v3"], AVCC_ZOO["avcc-mrdac-cpu-v2"]
    path = weights_dir() / e3.filename
    assert hashlib.sha256(path.read_bytes()).hexdigest() == e3.sha256
    assert path.stat().st_size < 2_000_000
    a3, a2 = load_file(str(path)), load_file(str(weights_dir() / e2.filename))
    assert set(a3) - set(a2) == {k for k in a3 if k.startswith("diffusion.")} and set(a2) <= set(a3)
    for k in a2:
        assert a3[k].dtype == a2[k].dtype
        np.testing.assert_array_equal(a3[k], a2[k])
    b3 = load_avcc("avcc-mrdac-cpu-v3")
    assert b3.diffusion is not None and b3.diffusion.num_channels == 20 and e3.diffusion
    assert load_avcc("avcc-mrdac-cpu-v2").diffusion is None and load_avcc("avcc-mrdac-cpu-v1").diffusion is None
    assert (e3.animation_model, e3.kp_precision) == (e2.animation_model, e2.kp_precision)
    # streams that do not use the diffusion keep naming v2 (readable by 1.1 and 1.2 decoders)
    assert default_avcc_for("mrdac-cpu-v2") == "avcc-mrdac-cpu-v2"
    assert default_avcc_for("mrdac-cpu-v2", diffusion=True) == "avcc-mrdac-cpu-v3"
