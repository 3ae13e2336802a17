"""VGG16 / AlexNet feature stacks: torchvision layout, weight loading and path resolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from safetensors.torch import save_file

from avfc.errors import ConfigError
from avfc.eval.backbones import WEIGHTS_ENV, alexnet_features, find_weights, load_state_dict_file, vgg16_features

from ._synth import ALEX_CONVS, ALEX_POOLS, VGG_CONVS, VGG_POOLS, alex_state, vgg_state


def test_alexnet_layout_and_loading(tmp_path):
    sd = alex_state()
    sd["classifier.1.weight"] = torch.zeros(4, 4)  # a full torchvision dict: extra keys ignored
    torch.save(sd, tmp_path / "alexnet_features.pth")
    net = alexnet_features(tmp_path)
    assert isinstance(net, nn.Sequential) and len(net) == 13
    for i, module in enumerate(net):
        if i in ALEX_CONVS:
            assert isinstance(module, nn.Conv2d) and tuple(module.weight.shape) == ALEX_CONVS[i]
            assert torch.equal(module.weight, sd[f"features.{i}.weight"])
        elif i in ALEX_POOLS:
            assert isinstance(module, nn.MaxPool2d) and module.kernel_size == 3 and module.stride == 2
        else:
            assert isinstance(module, nn.ReLU)
    assert net[0].stride == (4, 4) and net[0].padding == (2, 2)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert net(torch.rand(1, 3, 224, 224)).shape == (1, 256, 6, 6)  # torchvision's feature map size


def test_vgg16_layout_bare_keys_and_safetensors(tmp_path):
    sd = vgg_state()
    save_file({k[len("features."):]: v for k, v in sd.items()}, str(tmp_path / "vgg16_features.safetensors"))
    net = vgg16_features(tmp_path)  # falls back to the .safetensors of the same stem
    assert len(net) == 31
    for i, module in enumerate(net):
        if i in VGG_CONVS:
            assert isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.padding == (1, 1)
            assert torch.equal(module.weight, sd[f"features.{i}.weight"])
        elif i in VGG_POOLS:
            assert isinstance(module, nn.MaxPool2d)
        else:
            assert isinstance(module, nn.ReLU)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_gradient_reaches_input(tmp_path):
    torch.save(alex_state(), tmp_path / "alexnet_features.pth")
    net = alexnet_features(tmp_path / "alexnet_features.pth")  # a file path works too
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_resolution_order(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.save(alex_state(seed=1), tmp_path / "a" / "alexnet_features.pth")
    torch.save(alex_state(seed=2), tmp_path / "b" / "alexnet_features.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "b"))
    assert find_weights("alexnet_features.pth") == tmp_path / "b" / "alexnet_features.pth"
    assert find_weights("alexnet_features.pth", tmp_path / "a") == tmp_path / "a" / "alexnet_features.pth"
    w_env = alexnet_features()[0].weight
    w_arg = alexnet_features(tmp_path / "a")[0].weight
    assert torch.equal(w_env, alex_state(seed=2)["features.0.weight"])
    assert torch.equal(w_arg, alex_state(seed=1)["features.0.weight"])


def test_missing_weights_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(ConfigError, match="torchvision.*lpips.*DISTS_pytorch"):
        vgg16_features()
    with pytest.raises(ConfigError, match="not found"):
        vgg16_features(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        vgg16_features(tmp_path / "nope")


def test_malformed_weights(tmp_path):
    sd = alex_state()
    sd["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(ConfigError, match="shape"):
        alexnet_features(tmp_path / "shape.pth")
    sd = alex_state()
    del sd["features.10.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="lack 1"):
        alexnet_features(tmp_path / "missing.pth")
    sd = alex_state()
    sd["features.0.bias"][0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(ConfigError, match="non-finite"):
        alexnet_features(tmp_path / "nan.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="state dict"):
        load_state_dict_file(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="cannot read"):
        load_state_dict_file(tmp_path / "junk.pth")


def test_refuses_pickled_objects(tmp_path):
    # weights_only=True: a file that needs arbitrary unpickling is rejected, not executed
    torch.save({"features.0.weight": torch.zeros(1), "obj": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ConfigError, match="cannot read"):
        load_state_dict_file(tmp_path / "evil.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_real_weights_load(weights_dir):
    vgg, alex = vgg16_features(weights_dir), alexnet_features(weights_dir)
    assert sum(p.numel() for p in vgg.parameters()) == 14_714_688  # torchvision vgg16 features
    assert sum(p.numel() for p in alex.parameters()) == 2_469_696  # torchvision alexnet features
