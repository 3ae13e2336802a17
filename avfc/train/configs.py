"""Training configurations (pydantic) and the named presets ``cpu-small`` and ``gpu``.

Every invalid value raises :class:`~avfc.errors.ConfigError` (never pydantic's own error).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avfc.errors import ConfigError
from avfc.models.mrdac import MAX_REFS, MRDAC


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {type(self).__name__}: {exc}") from exc


class ModelConfig(_Config):
    """The MRDAC architecture (see :class:`avfc.models.mrdac.MRDAC`)."""

    num_kp: int = Field(10, ge=1, le=64)
    size: int = Field(256, ge=64, le=1024, multiple_of=64)
    max_refs: int = Field(MAX_REFS, ge=1, le=MAX_REFS)
    kp_size: int = Field(64, ge=16, le=256, multiple_of=16)
    motion_size: int | None = None
    kp_channels: list[int] = [16, 32, 64, 128]
    dense_motion_channels: list[int] = [16, 32, 64, 128]
    feature_channels: list[int] = [16, 32, 64]
    decoder_blocks: int = Field(4, ge=0, le=16)
    render_keys: bool = False  # key frames shown as the model's render of them (for coded-reference training)
    picture_warp: Literal["bilinear", "bicubic"] = "bilinear"  # kernel that warps the reference picture

    def build(self) -> MRDAC:
        """An untrained model of this architecture."""
        return MRDAC(**self.model_dump())


class DataConfig(_Config):
    """Where the clips are and how training samples are drawn and augmented."""

    dirs: list[str] = []  # folders searched (recursively) for video files
    cache_dir: str | None = None  # prepared clips (uint8 .npy); None: $AVFC_CACHE or ~/.cache/avfc
    fps: int = Field(25, ge=1, le=120)
    max_frames: int = Field(500, ge=2, le=10_000)  # per clip
    max_ref_distance: int = Field(50, ge=1)  # frames between a target and its references
    scale_jitter: float = Field(0.15, ge=0.0, le=0.5)  # random zoom-in up to 1 + this
    flip: bool = True
    color_jitter: float = Field(0.1, ge=0.0, le=0.5)  # brightness / contrast / saturation
    num_workers: int = Field(0, ge=0, le=32)
    # coded references (avfc.train.data.prepare_coded): "none" trains on clean references; a
    # key-frame codec shows every reference as that codec decodes it at one of ref_qps
    ref_codec: Literal["none", "av1", "hevc"] = "none"
    ref_qps: list[int] = Field([40, 47, 54, 61], min_length=1, max_length=16)
    ref_stride: int = Field(10, ge=1, le=1000)  # every ref_stride-th frame is coded
    same_frame: float = Field(0.0, ge=0.0, le=1.0)  # chance that the target is the reference's own frame
    # the v4 corpus (avfc.train.corpus): a data root with the folders below, prepared once into
    # <cache_dir>/corpus, split by person (people.csv); photos give pairs with synthetic motion
    corpus: str | None = None  # e.g. "../shared/data"; None: train on dirs as before
    corpus_folders: list[str] = ["av", "av2", "face", "face2", "images"]
    photo_ratio: float = Field(0.2, ge=0.0, le=1.0)  # share of photo pairs (0.5 measured worse: docs/experiments/2026-12-07-photo-ratio.md)
    dev_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # share of people held out (development)
    split_seed: int = 0


class LossConfig(_Config):
    """Loss weights and settings; a weight of 0 switches a term off."""

    l1: float = Field(1.0, ge=0.0)
    perceptual: float = Field(1.0, ge=0.0)
    perceptual_scales: list[float] = [1.0, 0.5, 0.25]
    perceptual_layers: list[str] = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    vgg_path: str | None = None  # file or folder; None: $AVFC_WEIGHTS_DIR (avfc.eval.backbones)
    # LPIPS-VGG and DISTS distances as losses (HiFiC trains with LPIPS-VGG); their weights are
    # looked up in vgg_path's folder (or $AVFC_WEIGHTS_DIR), like the evaluation's
    lpips: float = Field(0.0, ge=0.0)
    dists: float = Field(0.0, ge=0.0)
    equivariance: float = Field(10.0, ge=0.0)
    sigma_affine: float = Field(0.05, ge=0.0, le=0.5)
    sigma_tps: float = Field(0.005, ge=0.0, le=0.1)
    separation: float = Field(0.0, ge=0.0)  # keypoint separation (keeps keypoints from collapsing)
    separation_sigma: float = Field(0.15, gt=0.0, le=2.0)
    contrastive: float = Field(0.1, ge=0.0)
    contrastive_temperature: float = Field(0.1, gt=0.0)
    kp_precision: int = Field(7, ge=1, le=16)  # the bitstream's keypoint grid, 1 / 2**precision
    # search-aware training (avfc.train.trainer.searched_keypoints): the target's keypoints of a share of each
    # batch are first moved by search_steps Adam steps of search_lr grid units on the L1 (mouth weighted) of a
    # render at search_size, as the encoder's search moves what it sends; the model then trains on the render of
    # those keypoints. 0 steps: off (every target drawn from the detector's keypoints)
    search_steps: int = Field(0, ge=0, le=64)
    search_lr: float = Field(2.0, gt=0.0, le=64.0)
    search_size: int = Field(64, ge=64, le=1024, multiple_of=64)
    search_share: float = Field(1.0, ge=0.0, le=1.0)


class OptimConfig(_Config):
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = Field(2e-4, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(200, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, gt=0.0)


class TrainConfig(_Config):
    """Everything :func:`avfc.train.train` needs."""

    name: str = "custom"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    steps: int = Field(20_000, ge=1)
    batch_size: int = Field(4, ge=1, le=1024)
    seed: int = 0
    out_dir: str = "runs/mrdac"
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(20, ge=1)
    eval_every: int = Field(250, ge=1)  # L1 of single-reference renders on a fixed batch
    eval_samples: int = Field(8, ge=1, le=256)
    resume: bool = True
    init_from: str | None = None  # start from these weights (exported safetensors or a zoo name)
    init_grow: bool = False  # init_from has fewer decoder blocks: the new ones start as the identity
    freeze: list[Literal["kp_detector", "dense_motion", "encoder", "decoder"]] = []  # parts left as they are
    train_refs: int | None = Field(None, ge=1, le=MAX_REFS)  # steps cycle 1..this many references (None: max_refs)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, le=256)  # torch CPU threads; None: torch's default
    export_dtype: Literal["float32", "float16"] = "float32"

    def to_json(self) -> str:
        """The configuration as JSON (stored beside checkpoints)."""
        return self.model_dump_json(indent=2)


#: named presets; see :func:`get_config`
PRESETS: dict[str, dict[str, Any]] = {
    # About 2 hours on a 2-core laptop CPU at 128 px (see docs/model-card.md for the measured
    # step time): a light perceptual loss (2 scales, 3 layers) dominates the step time.
    "cpu-small": {
        "name": "cpu-small",
        "model": {"size": 128},
        "loss": {"perceptual_scales": [1.0, 0.5], "perceptual_layers": ["relu1_2", "relu2_2", "relu3_3"]},
        "optim": {"lr": 5e-4, "warmup_steps": 100},
        "steps": 3000,
        "batch_size": 4,
        "checkpoint_every": 250,
        "eval_every": 250,
        "threads": 2,
        "device": "cpu",
        "out_dir": "runs/cpu-small",
    },
    # The 2-hour CPU training of mrdac-cpu-v2: cpu-small plus keypoint separation, the codec's
    # keypoint grid (precision 6) and 7000 steps, warm-started from mrdac-cpu-v1.
    "cpu": {
        "name": "cpu",
        "model": {"size": 128},
        "loss": {"perceptual_scales": [1.0, 0.5], "perceptual_layers": ["relu1_2", "relu2_2", "relu3_3"],
                 "separation": 1.0, "kp_precision": 6},
        "optim": {"lr": 3e-4, "warmup_steps": 200},
        "steps": 7000,
        "batch_size": 4,
        "checkpoint_every": 250,
        "eval_every": 250,
        "threads": 2,
        "device": "cpu",
        "init_from": "mrdac-cpu-v1",
        "out_dir": "runs/cpu",
    },
    # Fine-tuning mrdac-cpu-v2 for what the decoder really has: at 256 px, every reference an AV1
    # key picture decoded at QP 40-61 (a few hundred bytes to 1.3 kB), the keypoint detector frozen
    # (so the transmitted keypoints, and the AVCC models fit to them, stay those of v2), one or two
    # references per step, 15 % of targets the reference's own frame (restoring the key picture),
    # and L1 + LPIPS-VGG as the loss (HiFiC's choice) instead of the FOMM VGG pyramid.
    "cpu-coded": {
        "name": "cpu-coded",
        "model": {"size": 256, "render_keys": True},
        "data": {"ref_codec": "av1", "same_frame": 0.15},
        "loss": {"perceptual": 0.0, "lpips": 1.0, "equivariance": 0.0, "kp_precision": 5},
        "optim": {"lr": 1e-4, "warmup_steps": 50},
        "steps": 800,
        "batch_size": 4,
        "train_refs": 2,
        "freeze": ["kp_detector"],
        "checkpoint_every": 100,
        "eval_every": 100,
        "threads": 2,
        "device": "cpu",
        "init_from": "mrdac-cpu-v2",
        "out_dir": "runs/cpu-coded",
    },
    # Model v4 (issue 20; shipped as mrdac-cpu-v4): cpu-coded's fine-tuning from mrdac-cpu-v3 on the v4
    # corpus (av, av2, face, face2, images: about six times the people), 20 % photo pairs with
    # synthetic motion, the development people held out (the evaluation batch is theirs). The shipped run
    # began at 3000 steps and was shortened at steps 400 and 700 (docs/model-card.md); 1300 is where it ended.
    "cpu-v4": {
        "name": "cpu-v4",
        "model": {"size": 256, "render_keys": True, "motion_size": 64},
        "data": {"ref_codec": "av1", "same_frame": 0.15, "corpus": "../shared/data", "photo_ratio": 0.2},
        "loss": {"perceptual": 0.0, "lpips": 1.0, "equivariance": 0.0, "kp_precision": 5},
        "optim": {"lr": 1e-4, "warmup_steps": 50},
        "steps": 1300,
        "batch_size": 4,
        "train_refs": 2,
        "freeze": ["kp_detector"],
        "checkpoint_every": 100,
        "eval_every": 100,
        "threads": 2,
        "device": "cpu",
        "init_from": "mrdac-cpu-v3",
        "out_dir": "runs/cpu-v4",
    },
    # One GPU (or torchrun DDP): 256 px, full multi-scale perceptual loss, many more steps.
    "gpu": {
        "name": "gpu",
        "model": {"size": 256},
        "loss": {"perceptual_scales": [1.0, 0.5, 0.25, 0.125], "separation": 1.0, "kp_precision": 6},
        "data": {"num_workers": 4},
        "optim": {"lr": 2e-4, "warmup_steps": 1000},
        "steps": 100_000,
        "batch_size": 16,
        "checkpoint_every": 2000,
        "eval_every": 1000,
        "device": "cuda",
        "out_dir": "runs/gpu",
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# Model v5 (issue 20, the capacity step; measured, not shipped: docs/experiments/2026-12-07-mrdac-cpu-v5-capacity.md):
# cpu-v4's data and loss, the frame decoder's trunk at S/4 grown from 4 to 8 inverted-residual blocks, the new ones
# starting as the identity (init_grow: step 0 renders exactly as mrdac-cpu-v4), a higher learning rate for them to
# move within a CPU session (900 steps, about an hour at 3.6-4.8 s a step on the 2-core CPU).
PRESETS["cpu-v5"] = _merge(PRESETS["cpu-v4"], {
    "name": "cpu-v5",
    "model": {"decoder_blocks": 8},
    "optim": {"lr": 2e-4},
    "steps": 900,
    "init_from": "mrdac-cpu-v4",
    "init_grow": True,
    "out_dir": "runs/cpu-v5",
})


# Model v6 (issue 20, search-aware training): mrdac-cpu-v4 fine-tuned on the keypoints the encoder's search sends.
# Whole files are drawn from searched keypoints (the default effort searches), the detector's only in live calls
# and at the `detector` effort; so three samples of each batch of four train on the target's keypoints after 6
# Adam steps of 2 grid units on a 64-px render (as the `fast` effort searches), the fourth on the detector's
# (about 6 s a step on the 2-core CPU, 65 min).
PRESETS["cpu-v6"] = _merge(PRESETS["cpu-v4"], {
    "name": "cpu-v6",
    "loss": {"search_steps": 6, "search_lr": 2.0, "search_size": 64, "search_share": 0.75},
    "steps": 650,
    "init_from": "mrdac-cpu-v4",
    "out_dir": "runs/cpu-v6",
})


# Model v7 (issue 20; measured, not shipped: docs/experiments/2026-12-07-mrdac-cpu-v7-dists.md): mrdac-cpu-v6
# fine-tuned with a DISTS term added to v6's loss (L1 + LPIPS-VGG, search-aware), where v6 trailed the held key
# frame and v4 (400 steps, 8-12 s a step on the 2-core CPU: DISTS's VGG doubles the perceptual work; 77 min)
PRESETS["cpu-v7"] = _merge(PRESETS["cpu-v6"], {
    "name": "cpu-v7",
    "loss": {"dists": 1.0},
    "steps": 400,
    "init_from": "mrdac-cpu-v6",
    "out_dir": "runs/cpu-v7",
})


def get_config(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The preset ``name`` with ``overrides`` merged in (nested dicts merge key by key)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError("overrides must be a dict")
    return TrainConfig(**_merge(PRESETS[name], overrides or {}))


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a :class:`TrainConfig` from a JSON file (a ``"preset"`` key starts from a preset),
    with ``overrides`` merged in."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read training config {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"training config {str(path)!r} must hold a JSON object")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError("overrides must be a dict")
    data = _merge(data, overrides or {})
    preset = data.pop("preset", None)
    if preset is not None:
        return get_config(str(preset), data)
    return TrainConfig(**data)
