"""The motion search's perceptual term built from weights by path (avfc.eval.perceptual.search_term) and
its CLI option (`avfc encode --search-weights DIR`). Random weights of the right layout: no real weights
needed."""

from __future__ import annotations

import pytest
import torch

from avfc.cli import main
from avfc.errors import ConfigError
from avfc.eval.perceptual import DISTS, LPIPS, search_term

from ._synth import alex_state, vgg_state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("search_weights")
    torch.save(alex_state(), d / "alexnet_features.pth")
    torch.save(vgg_state(), d / "vgg16_features.pth")
    g = torch.Generator().manual_seed(5)
    chans = (64, 192, 384, 256, 256)
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(chans)},
               d / "lpips_v0.1_alex.pth")
    torch.save({"alpha": torch.rand(1, 1475, 1, 1, generator=g), "beta": torch.rand(1, 1475, 1, 1, generator=g)},
               d / "dists_alpha_beta.pt")
    return d


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from synthetic import write_clip

    return write_clip(tmp_path_factory.mktemp("clip") / "talk.mp4", n=20)


def test_search_term_builds_a_differentiable_distance(weights):
    term = search_term(weights, "lpips-alex")
    assert isinstance(term, LPIPS)
    assert isinstance(search_term(weights, "dists"), DISTS)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y = torch.rand(2, 3, 64, 64)
    d = term(x, y)
    assert d.shape == (2,)
    (g,) = torch.autograd.grad(d.sum(), [x])
    assert g.abs().sum() > 0


def test_bad_search_weights_are_config_errors(weights, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        search_term(tmp_path / "nowhere")
    (tmp_path / "file.pth").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a directory"):
        search_term(tmp_path / "file.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not found"):
        search_term(tmp_path / "empty")
    with pytest.raises(ConfigError, match="search metric"):
        search_term(weights, "ssim")


def test_cli_refuses_bad_search_weights_before_any_work(clip, weights, tmp_path, capsys):
    out = tmp_path / "o.avfc"
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test",
                 "--search-weights", str(tmp_path / "nowhere"), "-q"]) == 2
    assert "search weights" in capsys.readouterr().err
    assert not out.exists()
    # a term with an effort that does not search changes nothing: refused too
    assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--effort", "detector",
                 "--search-weights", str(weights), "-q"]) == 2
    assert "needs an effort that searches" in capsys.readouterr().err
    assert not out.exists()


def test_cli_encodes_with_a_perceptual_term_and_the_file_decodes(clip, weights, tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}.avfc"
        assert main(["encode", str(clip), "-o", str(out), "--size", "64", "--model", "tiny-test", "--effort", "fast",
                     "--audio", "none", "--key-qp", "35", "--packet-frames", "10", "--threads", "1",
                     "--search-weights", str(weights), "--search-perceptual-weight", "300", "-q"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]  # same input, weights and threads: the same file
    mp4 = tmp_path / "o.mp4"
    assert main(["decode", str(tmp_path / "o0.avfc"), "-o", str(mp4), "-q"]) == 0
    assert mp4.stat().st_size > 0
