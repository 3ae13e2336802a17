"""ImageNet backbones for perceptual metrics and losses, built without torchvision.

:func:`vgg16_features` and :func:`alexnet_features` return an ``nn.Sequential`` with
exactly the module layout of torchvision's ``vgg16().features`` (``features.0`` ..
``features.30``) and ``alexnet().features`` (``features.0`` .. ``features.12``), so a
torchvision state dict loads into them unchanged and slice indices quoted by other
projects (LPIPS, DISTS) mean the same layers here.

Weights are never downloaded. A weights file is found, in this order:

1. the ``path`` argument: a weights file, or a directory holding the standard file name;
2. the directory named by the environment variable ``AVFC_WEIGHTS_DIR``;
3. otherwise :class:`~avfc.errors.ConfigError` says where to get the files.

Standard file names (as in ``/work/shared/weights`` of the development machines):
``vgg16_features.pth``, ``alexnet_features.pth``, ``lpips_v0.1_alex.pth``,
``lpips_v0.1_vgg.pth``, ``dists_alpha_beta.pt``. ``.safetensors`` files with the same
stem are accepted too. ``.pth``/``.pt`` files are read with
``torch.load(..., weights_only=True)`` (no pickle code runs).

One deliberate difference from torchvision: the ReLUs are not in-place, so that
callers may keep intermediate activations (LPIPS and DISTS do) without surprises.
It changes no numbers and no state-dict key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from avfc.errors import ConfigError

__all__ = [
    "WEIGHTS_ENV",
    "find_weights",
    "load_state_dict_file",
    "vgg16_features",
    "alexnet_features",
]

#: environment variable naming the directory that holds the metric weights
WEIGHTS_ENV = "AVFC_WEIGHTS_DIR"

_WHERE_TO_GET = (
    "avfc never downloads weights. Get them from: torchvision's pretrained ImageNet "
    "weights (vgg16 / alexnet: save model.features.state_dict() with keys "
    "'features.N.weight'), the `lpips` package (lpips/weights/v0.1/alex.pth, vgg.pth) "
    "and the `DISTS_pytorch` package (weights.pt, alpha and beta); then pass their "
    f"directory as an argument or set {WEIGHTS_ENV}."
)

# torchvision vgg16 "D" configuration: numbers are 3x3 conv widths, "M" a 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


def find_weights(filename: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Locate a weights file by the module's resolution rule.

    Args:
        filename: standard file name, e.g. ``"vgg16_features.pth"``.
        path: a file (used as is), or a directory searched for ``filename`` (or the
            same stem with ``.safetensors``). ``None``: use ``$AVFC_WEIGHTS_DIR``.

    Returns:
        The path of an existing file.

    Raises:
        ConfigError: nothing given and the variable unset, or the file is missing.
    """
    if path is None:
        env = os.environ.get(WEIGHTS_ENV)
        if not env:
            raise ConfigError(f"no weights given for {filename!r} and {WEIGHTS_ENV} is not set. {_WHERE_TO_GET}")
        base = Path(env)
    else:
        base = Path(path)
    if base.is_file():
        return base
    if not base.is_dir():
        raise ConfigError(f"weights path {str(base)!r} does not exist. {_WHERE_TO_GET}")
    for candidate in (base / filename, base / (Path(filename).stem + ".safetensors")):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{filename!r} not found in {str(base)!r}. {_WHERE_TO_GET}")


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` state dict from ``.safetensors`` or a torch file.

    Torch files are read with ``weights_only=True``. Anything that is not a mapping of
    strings to tensors raises :class:`ConfigError`.
    """
    p = Path(path)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(p), device="cpu")
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types on a bad file
        raise ConfigError(f"cannot read weights file {str(p)!r}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise ConfigError(f"weights file {str(p)!r} does not hold a state dict (got {type(obj).__name__})")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ConfigError(f"weights file {str(p)!r} holds a non-tensor entry {key!r}")
        out[key] = value
    return out


def _build_vgg16() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_ch, int(item), kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=False))
            in_ch = int(item)
    return nn.Sequential(*layers)


def _build_alexnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _load_features(model: nn.Sequential, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``features.N.*`` (or bare ``N.*``) tensors into ``model``, checking every shape.

    Other keys (a full torchvision dict's ``classifier.*``) are ignored; a missing or
    mis-shaped convolution tensor, or a non-finite value, raises :class:`ConfigError`.
    """
    expected = model.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix("features.")
        if name in expected:
            picked[name] = value
    missing = sorted(set(expected) - set(picked))
    if missing:
        raise ConfigError(f"weights {source!r} lack {len(missing)} backbone tensors, e.g. 'features.{missing[0]}'")
    for name, value in picked.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ConfigError(
                f"weights {source!r}: 'features.{name}' has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
        if not torch.isfinite(value).all():
            raise ConfigError(f"weights {source!r}: 'features.{name}' holds non-finite values")
    model.load_state_dict({k: v.to(torch.float32) for k, v in picked.items()}, strict=True)


def _pretrained(model: nn.Sequential, filename: str, path: str | os.PathLike[str] | None) -> nn.Sequential:
    file = find_weights(filename, path)
    _load_features(model, load_state_dict_file(file), str(file))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def vgg16_features(path: str | os.PathLike[str] | None = None) -> nn.Sequential:
    """torchvision's ``vgg16().features`` (31 modules, indices 0..30) with ImageNet weights.

    Args:
        path: weights file or directory (see module docs); ``None`` uses ``$AVFC_WEIGHTS_DIR``.

    Returns:
        The network in eval mode with frozen parameters (``requires_grad=False``;
        gradients still flow to the *input*, as a perceptual loss needs). It expects
        ImageNet-normalised input.

    Raises:
        ConfigError: weights not found, unreadable, or not VGG16-shaped.
    """
    return _pretrained(_build_vgg16(), "vgg16_features.pth", path)


def alexnet_features(path: str | os.PathLike[str] | None = None) -> nn.Sequential:
    """torchvision's ``alexnet().features`` (13 modules, indices 0..12) with ImageNet weights.

    Same conventions as :func:`vgg16_features`.
    """
    return _pretrained(_build_alexnet(), "alexnet_features.pth", path)
