"""The zoo of shipped weights.

Models are found by *name*, never by position, and every weights file is
checked against the sha256 recorded here before use. A stream header records
the model name and that sha256; the decoder refuses a stream whose pair it does
not have (:class:`~avfc.errors.ModelMismatchError`). Entries are never removed or
changed once released: old streams must keep decoding, so a retrained model is a
new entry with a new name.

Weights are safetensors files inside the package (``avfc/models/weights/``),
named ``<name>-<first 8 hex of sha256>.safetensors``; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional

from safetensors.torch import load_file

from avfc.bitstream import sha256_names
from avfc.errors import ConfigError, ModelMismatchError
from avfc.models.base import AnimationModel
from avfc.models.mrdac import MRDAC
from avfc.models.tiny import TinyWarp


@dataclass(frozen=True)
class ZooEntry:
    """One shipped model: its architecture, constructor arguments and weights file."""

    name: str
    arch: str
    sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: the model whose keypoint detector this one has unchanged (frozen while it was trained): its
    #: keypoints are that model's, so AVCC bundles and concealment models made for it fit this one
    keypoints_of: Optional[str] = None

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.sha256[:8]}.safetensors"


#: architecture name -> constructor
ARCHS: dict[str, Callable[..., AnimationModel]] = {
    TinyWarp.arch: TinyWarp,
    MRDAC.arch: MRDAC,
}

def _mrdac_coded_refs() -> dict[str, Any]:
    """The architecture of mrdac-cpu-v3 and of the models fine-tuned from it (v4, v6): 256 px, dense motion
    at 64x64, key frames shown as the model's render of them (a fresh dict per entry)."""
    return {"num_kp": 10, "kp_dim": 2, "size": 256, "max_refs": 4, "kp_size": 64, "motion_size": 64,
            "kp_channels": [16, 32, 64, 128], "dense_motion_channels": [16, 32, 64, 128],
            "feature_channels": [16, 32, 64], "decoder_blocks": 4, "render_keys": True}


#: released entries are never removed or changed: golden files and users' streams name them
ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            name="tiny-test",
            arch="tiny-warp",
            sha256="eff882c5c1a730c9246da825d2e25c093a4c9964e184f9288181fb3d936b31d7",
            config={"num_kp": 10, "kp_dim": 2, "size": 256, "det_size": 32, "sigma": 0.2,
                    "motion_size": 64},
            description="Seeded, untrained keypoint detector + Gaussian sparse-motion warping. "
                        "For tests and as a fallback; not for quality.",
        ),
        ZooEntry(
            name="mrdac-cpu-v1",
            arch="mrdac",
            sha256="ed31d3ee6bde45259019cbd7e4d27755a28479f8719313e8236e2177226deba4",
            config={"num_kp": 10, "kp_dim": 2, "size": 256, "max_refs": 4, "kp_size": 64, "motion_size": 32,
                    "kp_channels": [16, 32, 64, 128], "dense_motion_channels": [16, 32, 64, 128],
                    "feature_channels": [16, 32, 64], "decoder_blocks": 4},
            description="MRDAC, 0.62 M parameters, float16. Trained 2000 steps at 128 px on a 2-core CPU "
                        "(cpu-small preset, av/ and face/ only); runs at any size that is a multiple of 64. "
                        "See docs/model-card.md.",
        ),
        ZooEntry(
            name="mrdac-cpu-v2",
            arch="mrdac",
            sha256="48bf0883afc91d0603caeaa6820eba3f38140a82cb079354d05ce32f79730525",
            config={"num_kp": 10, "kp_dim": 2, "size": 256, "max_refs": 4, "kp_size": 64, "motion_size": 32,
                    "kp_channels": [16, 32, 64, 128], "dense_motion_channels": [16, 32, 64, 128],
                    "feature_channels": [16, 32, 64], "decoder_blocks": 4},
            description="MRDAC, 0.62 M parameters, float16. mrdac-cpu-v1 trained 7000 more steps at 128 px on a "
                        "2-core CPU with keypoint separation (cpu preset, av/ and face/ only): its keypoints "
                        "spread over the face instead of collapsing. See docs/model-card.md.",
        ),
        ZooEntry(
            name="mrdac-cpu-v3",
            arch="mrdac",
            sha256="9d1c94c83845ef7146c3c54ede96759d5d5e4a63cbc0c897e59cb1b92384f490",
            config=_mrdac_coded_refs(),
            description="mrdac-cpu-v2 fine-tuned 800 steps at 256 px on AV1-decoded references with L1 + LPIPS-VGG "
                        "(cpu-coded preset, 53 min on a 2-core CPU, av/ and face/ only); keypoint detector "
                        "unchanged (frozen), dense motion at 64x64, key frames shown as its render of them. "
                        "See docs/model-card.md.",
            keypoints_of="mrdac-cpu-v2",
        ),
        ZooEntry(
            name="mrdac-cpu-v4",
            arch="mrdac",
            sha256="c2fbbd12a35ac3ca41c695a6591c9244ec6a75f94a85b7626f0b8b089c696c19",
            config=_mrdac_coded_refs(),
            description="mrdac-cpu-v3 fine-tuned 1300 steps at 256 px on about six times the people (cpu-v4 preset: "
                        "av/, av2/, face/, face2/ clips and images/ photos with synthetic motion, 20 % photo "
                        "pairs; about 1.5 h of a 2-core CPU); keypoint detector unchanged (v2's). "
                        "See docs/model-card.md.",
            keypoints_of="mrdac-cpu-v2",
        ),
        ZooEntry(
            name="mrdac-cpu-v6",
            arch="mrdac",
            sha256="19404df5b2bae2ae0c21138687659a838843ef7e246e4b1915c3d6b52feb491b",
            config=_mrdac_coded_refs(),
            description="mrdac-cpu-v4 fine-tuned 650 steps on the keypoints the encoder's search sends (cpu-v6 "
                        "preset: 3 of each batch's 4 targets drawn from keypoints moved by a search like the "
                        "encoder's `fast` effort; v4's corpus and loss; about an hour of a 2-core CPU); keypoint "
                        "detector unchanged (v2's). See docs/model-card.md.",
            keypoints_of="mrdac-cpu-v2",
        ),
    ]
}

#: the model ``avfc encode`` uses when none is named
DEFAULT_MODEL = "mrdac-cpu-v4"


def weights_dir() -> Path:
    """Folder of the shipped weights files inside the installed package."""
    return Path(str(resources.files("avfc.models") / "weights"))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_entry(name: str) -> ZooEntry:
    """The zoo entry called ``name`` (ConfigError listing the known names otherwise)."""
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(ZOO))}") from None


def keypoint_family(name: str) -> str:
    """The model whose keypoints ``name`` transmits: ``name`` itself, or the entry its
    ``keypoints_of`` leads to (unknown names are returned as they are)."""
    seen = {name}
    while (entry := ZOO.get(name)) is not None and entry.keypoints_of is not None:
        name = entry.keypoints_of
        if name in seen:
            raise ConfigError(f"model zoo: keypoints_of loops through {name!r}")
        seen.add(name)
    return name


def build_model(arch: str, config: dict[str, Any]) -> AnimationModel:
    """An untrained model of architecture ``arch`` (for training and tests)."""
    try:
        ctor = ARCHS[arch]
    except KeyError:
        raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}") from None
    return ctor(**config)


@lru_cache(maxsize=8)
def _load_cached(name: str, size: Optional[int]) -> AnimationModel:
    entry = get_entry(name)
    path = weights_dir() / entry.filename
    if not path.is_file():
        raise ModelMismatchError(f"weights file of model {name!r} is missing from the installation: {path}")
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise ModelMismatchError(
            f"weights of model {name!r} are damaged: sha256 {digest} != expected {entry.sha256}")
    config = dict(entry.config)
    if size is not None and "size" in config:
        config["size"] = int(size)  # the architectures are fully convolutional: weights fit any size
    model = build_model(entry.arch, config)
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_model(name: str = DEFAULT_MODEL, size: Optional[int] = None) -> AnimationModel:
    """The shipped model ``name`` for frames of ``size`` (default: the zoo's), weights verified
    against the zoo's sha256, in eval mode.

    The returned module is shared (cached); do not train it in place.
    """
    return _load_cached(name, size)


def model_for_stream(name: str, sha256: str, size: Optional[int] = None) -> AnimationModel:
    """The model a stream header names, refusing a name/hash pair this installation lacks."""
    entry = ZOO.get(name)
    if entry is None:
        raise ModelMismatchError(
            f"the stream was coded with model {name!r} (weights sha256 {sha256}), which this "
            f"installation of avfc does not ship; known models: {', '.join(sorted(ZOO))}")
    if not sha256_names(entry.sha256, sha256):
        raise ModelMismatchError(
            f"the stream names model {name!r} with weights sha256 {sha256}, but this installation's "
            f"{name!r} has sha256 {entry.sha256}")
    return load_model(name, size)
