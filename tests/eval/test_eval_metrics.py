"""PSNR / SSIM / MS-SSIM: reference values, properties and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfc.errors import ConfigError, MediaError
from avfc.eval.metrics import FrameScores, frame_batches, ms_ssim, psnr, ssim

from ._synth import synthetic_pair

# Reference numbers for synthetic_pair() (2 frames, 177x200, uint8), computed once with
# packages that are NOT project dependencies (installed into a scratch dir):
# * PSNR and SSIM (rgb): scikit-image 0.26.0,
#   peak_signal_noise_ratio(data_range=255) and structural_similarity(gaussian_weights=True,
#   sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1) on /255 floats;
# * MS-SSIM: pytorch-msssim 1.0.0, ms_ssim(data_range=1.0, size_average=False) on float64
#   input with its Gaussian window rebuilt in float64 (its default float32 window moves the
#   values by about 3e-7: 0.9399182579 / 0.9398957845 for rgb);
# * "y": the same tools on BT.709 luma rounded to the 8-bit grid.
REF_PSNR_RGB = (24.601537731729213, 24.60160123621831)
REF_SSIM_RGB = (0.6865950407587507, 0.6865482887778057)
REF_MSSSIM_RGB = (0.9399179841149626, 0.9398955106041461)
REF_PSNR_Y = (27.1126020795257, 27.112383739932184)
REF_SSIM_Y = (0.7652820227521229, 0.7654254171031826)  # scikit-image and pytorch-msssim agree
REF_MSSSIM_Y = (0.9417621718675446, 0.9417834986906084)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_pair()


def test_psnr_matches_scikit_image(pair):
    ref, dist = pair
    np.testing.assert_allclose(psnr(ref, dist).per_frame, REF_PSNR_RGB, rtol=0, atol=1e-10)
    np.testing.assert_allclose(psnr(ref, dist, color="y").per_frame, REF_PSNR_Y, rtol=0, atol=1e-10)


def test_ssim_matches_references(pair):
    ref, dist = pair
    np.testing.assert_allclose(ssim(ref, dist).per_frame, REF_SSIM_RGB, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ssim(ref, dist, color="y").per_frame, REF_SSIM_Y, rtol=0, atol=1e-9)


def test_ms_ssim_matches_pytorch_msssim(pair):
    ref, dist = pair  # 177 rows: odd sizes exercise the padded 2x2 pooling
    np.testing.assert_allclose(ms_ssim(ref, dist).per_frame, REF_MSSSIM_RGB, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ms_ssim(ref, dist, color="y").per_frame, REF_MSSSIM_Y, rtol=0, atol=1e-9)


def test_layouts_and_chunking_agree(pair):
    ref, dist = pair
    base = ms_ssim(ref, dist, batch_size=16).per_frame
    np.testing.assert_allclose(ms_ssim(ref, dist, batch_size=1).per_frame, base, atol=1e-12)
    tr = torch.from_numpy(ref).permute(0, 3, 1, 2)
    td = torch.from_numpy(dist).permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_allclose(ms_ssim(tr, td).per_frame, base, atol=1e-6)  # float32 input rounding
    np.testing.assert_allclose(psnr(tr, td.requires_grad_(True)).per_frame, REF_PSNR_RGB, atol=1e-4)
    single = ssim(ref[1], dist[1])  # (H, W, 3) is one frame
    assert len(single) == 1
    np.testing.assert_allclose(single.per_frame[0], REF_SSIM_RGB[1], atol=1e-9)


def test_identical_frames():
    ref, _ = synthetic_pair(t=1, h=170, w=170)
    assert psnr(ref, ref).per_frame[0] == np.inf
    assert ssim(ref, ref).per_frame[0] == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(ref, ref).per_frame[0] == pytest.approx(1.0, abs=1e-12)


def test_psnr_known_value_and_mean():
    ref = np.full((3, 16, 16, 3), 100, np.uint8)
    dist = ref.copy()
    dist[0] += 10  # MSE = (10/255)^2 -> PSNR = 20 log10(25.5)
    dist[1] += 1
    dist[2] += 1
    dist[2, :, :, 0] -= 1  # one channel exact: MSE over all channels is 2/3 of (1/255)^2
    scores = psnr(ref, dist)
    expected = [20 * np.log10(25.5), 20 * np.log10(255.0), 10 * np.log10(255.0**2 * 1.5)]
    np.testing.assert_allclose(scores.per_frame, expected, atol=1e-10)
    assert scores.mean == pytest.approx(np.mean(expected))


def test_quality_falls_with_noise():
    ref, _ = synthetic_pair(t=1, h=176, w=176)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(ref.shape)
    values = []
    for sigma in (2.0, 8.0, 24.0):
        dist = np.clip(ref + sigma * noise, 0, 255).round().astype(np.uint8)
        values.append((psnr(ref, dist).mean, ssim(ref, dist).mean, ms_ssim(ref, dist).mean))
    for better, worse in zip(values, values[1:]):
        assert all(b > w for b, w in zip(better, worse))


def test_rgb_is_mean_of_channels():
    ref, dist = synthetic_pair(t=1, h=170, w=170)
    per_channel = []
    for c in range(3):
        r1 = np.repeat(ref[..., c : c + 1], 3, axis=-1)  # grey image = that channel in R, G, B
        d1 = np.repeat(dist[..., c : c + 1], 3, axis=-1)
        per_channel.append(ssim(r1, d1).mean)
    assert ssim(ref, dist).mean == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_bad_inputs():
    ref, dist = synthetic_pair(t=2, h=170, w=170)
    with pytest.raises(MediaError, match="differ in size"):
        psnr(ref, dist[:1])
    with pytest.raises(MediaError, match=r"\(T, H, W, 3\)"):
        psnr(ref[..., :2], dist[..., :2])
    with pytest.raises(MediaError, match="uint8 or float"):
        psnr(ref.astype(np.int32), dist.astype(np.int32))
    with pytest.raises(MediaError, match="8-bit"):
        psnr(ref.astype(np.uint16), dist.astype(np.uint16))
    with pytest.raises(MediaError, match=r"\[0, 1\]"):
        psnr(ref.astype(np.float32), dist.astype(np.float32))  # 0..255 floats
    nan = ref.astype(np.float64) / 255
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        ssim(nan, nan)
    with pytest.raises(MediaError, match="160"):
        ms_ssim(ref[:, :160], dist[:, :160])
    with pytest.raises(MediaError, match="11x11"):
        ssim(ref[:, :10, :10], dist[:, :10, :10])
    with pytest.raises(MediaError, match="numpy array or a torch tensor"):
        psnr([[1, 2]], [[1, 2]])
    with pytest.raises(ConfigError, match="color"):
        psnr(ref, dist, color="yuv")
    with pytest.raises(ConfigError, match="batch_size"):
        list(frame_batches(ref, dist, batch_size=0))


def test_frame_scores_mean():
    s = FrameScores(np.array([1.0, 2.0, 6.0]))
    assert s.mean == 3.0 and len(s) == 3
