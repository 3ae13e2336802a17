"""Shipped AVCC bundles: the integer parameters of the cross-modal coders, by name and sha256.

A bundle is one safetensors file of integer numpy arrays inside the package
(``avfc/avcc/weights/<name>-<first 8 hex of sha256>.safetensors``), read with
``safetensors.numpy`` (no pickle, no torch, nothing downloaded). Its arrays are grouped by
prefix: ``audio.*`` (:class:`~avfc.avcc.audio_ctx.AudioContextModel`), ``motion.*``
(:class:`~avfc.avcc.motion_pred.SpeechMotionPredictor`), ``lips.*``
(:class:`~avfc.avcc.lips.LipsFromSpeech`) and, from ``avcc-mrdac-cpu-v3`` on, the float32
``diffusion.*`` (:class:`~avfc.avcc.diffusion.LipsDiffusion`, format 1.3). A stream header that uses AVCC names the bundle and
its sha256; entries are never changed once released (a retrained bundle is a new name).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Optional

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from avfc.avcc.audio_ctx import AudioContextModel
from avfc.avcc.diffusion import LipsDiffusion
from avfc.avcc.lips import LipsFromSpeech
from avfc.avcc.motion_pred import SpeechMotionPredictor
from avfc.bitstream import sha256_names
from avfc.errors import AvfcError, ConfigError, ModelMismatchError


@dataclass(frozen=True)
class AvccEntry:
    """One shipped bundle."""

    name: str
    sha256: str
    animation_model: str  # the model whose keypoints the motion parts were trained on
    kp_precision: int  # the keypoint grid they were trained on
    description: str = ""
    diffusion: bool = False  # the bundle has the diffusion lips model (diffusion.*, format 1.3)

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.sha256[:8]}.safetensors"


@dataclass(frozen=True)
class AvccBundle:
    """The loaded parts of a bundle."""

    entry: AvccEntry
    audio: AudioContextModel
    motion: SpeechMotionPredictor
    lips: LipsFromSpeech
    diffusion: Optional[LipsDiffusion] = None  # diffusion lips (format 1.3); None for v1 and v2


#: released entries are never removed or changed
AVCC_ZOO: dict[str, AvccEntry] = {
    e.name: e
    for e in [
        AvccEntry(
            name="avcc-mrdac-cpu-v1",
            sha256="3ee8947dc5eb3b5b614065a42b34e843a34619fe614306c3cfe5a28f185e6f4b",
            animation_model="mrdac-cpu-v1",
            kp_precision=6,
            description="Codec2 700C context model (speech/ + av/ audio), speech-conditioned motion predictor "
                        "and lips-from-speech regressor (mrdac-cpu-v1 keypoints of av/ clips); integer "
                        "arrays, 67 kB. See docs/model-card.md.",
        ),
        AvccEntry(
            name="avcc-mrdac-cpu-v2",
            sha256="9884fef20405b140cb3c0b89278cbc6679bef6809443abc79b4c0afe0ce5cce1",
            animation_model="mrdac-cpu-v2",
            kp_precision=5,
            description="The audio context model of avcc-mrdac-cpu-v1 (same arrays) with the motion predictor "
                        "and lips regressor refitted on mrdac-cpu-v2 keypoints of av/ clips (precision 5, "
                        "dead zone 0.3, as the encoder's defaults); integer arrays. See docs/model-card.md.",
        ),
        AvccEntry(
            name="avcc-mrdac-cpu-v3",
            sha256="fec2a855e2b05e81be76b1f6602a7590b9d52b81b43c023808ee55631bd1ce06",
            animation_model="mrdac-cpu-v2",
            kp_precision=5,
            description="The arrays of avcc-mrdac-cpu-v2 unchanged plus diffusion.*: a transformer denoiser of lips "
                        "offsets over the joint motion and 700C audio tokens (format 1.3 DIFFUSION_LIPS), trained "
                        "on mrdac-cpu-v2 keypoints of av/ clips; float32. See docs/model-card.md.",
            diffusion=True,
        ),
    ]
}

#: the bundle the encoder uses when AVCC is asked for and none is named
DEFAULT_AVCC: Optional[str] = "avcc-mrdac-cpu-v2"


def default_avcc_for(model: str, diffusion: bool = False) -> Optional[str]:
    """The newest shipped bundle trained on the keypoints of ``model`` (None if there is none).

    ``diffusion``: the newest one with the diffusion lips model (format 1.3). Without it, the newest
    one *without* it, so that streams that do not use the diffusion keep naming a bundle that
    readers of format 1.1 and 1.2 have (``avcc-mrdac-cpu-v3`` holds the same other arrays as v2).
    """
    names = [e.name for e in AVCC_ZOO.values() if e.animation_model == model and e.diffusion == diffusion]
    return names[-1] if names else None


def weights_dir() -> Path:
    """Folder of the shipped bundle files inside the installed package."""
    return Path(str(resources.files("avfc.avcc") / "weights"))


def get_avcc_entry(name: str) -> AvccEntry:
    """The entry called ``name`` (ConfigError listing the known names otherwise)."""
    try:
        return AVCC_ZOO[name]
    except KeyError:
        known = ", ".join(sorted(AVCC_ZOO)) or "none"
        raise ConfigError(f"unknown AVCC bundle {name!r}; known bundles: {known}") from None


def bundle_from_arrays(entry: AvccEntry, arrays: dict[str, np.ndarray]) -> AvccBundle:
    """Build the parts of a bundle from its arrays (ModelMismatchError on a malformed bundle)."""
    try:
        diffusion = None
        if "diffusion.meta" in arrays:
            diffusion = LipsDiffusion.from_arrays(arrays, prefix="diffusion.")
        if entry.diffusion and diffusion is None:
            raise ModelMismatchError(f"AVCC bundle {entry.name!r} has no diffusion.* arrays")
        return AvccBundle(entry=entry, audio=AudioContextModel.from_arrays(arrays, prefix="audio."),
                          motion=SpeechMotionPredictor.from_arrays(arrays, prefix="motion."),
                          lips=LipsFromSpeech.from_arrays(arrays, prefix="lips."), diffusion=diffusion)
    except ModelMismatchError:
        raise
    except AvfcError as exc:
        raise ModelMismatchError(f"AVCC bundle {entry.name!r} is malformed: {exc}") from None


def read_shipped(filename: str, sha256: str, what: str) -> dict[str, np.ndarray]:
    """The arrays of a shipped file of :func:`weights_dir`, its bytes checked against ``sha256``
    (ModelMismatchError naming ``what`` when it is missing, damaged or unreadable)."""
    path = weights_dir() / filename
    try:
        raw = path.read_bytes()
    except OSError:
        raise ModelMismatchError(f"{what} is missing from the installation: {path}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise ModelMismatchError(f"{what} is damaged: sha256 {digest} != expected {sha256}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelMismatchError(f"{what} cannot be read: {exc}") from None


@lru_cache(maxsize=4)
def load_avcc(name: str) -> AvccBundle:
    """The shipped bundle ``name``, its file checked against the zoo's sha256."""
    entry = get_avcc_entry(name)
    return bundle_from_arrays(entry, read_shipped(entry.filename, entry.sha256, f"AVCC bundle {name!r}"))


def avcc_for_stream(name: str, sha256: str) -> AvccBundle:
    """The bundle a stream header names, refusing a name/hash pair this installation lacks."""
    entry = AVCC_ZOO.get(name)
    if entry is None:
        raise ModelMismatchError(
            f"the stream was coded with AVCC bundle {name!r} (sha256 {sha256}), which this installation "
            f"of avfc does not ship; known bundles: {', '.join(sorted(AVCC_ZOO)) or 'none'}")
    if not sha256_names(entry.sha256, sha256):
        raise ModelMismatchError(f"the stream names AVCC bundle {name!r} with sha256 {sha256}, but this "
                                 f"installation's has sha256 {entry.sha256}")
    return load_avcc(name)
