"""The training loop: AdamW, warm-up + cosine learning rate, gradient clipping, checkpoints,
resume, tqdm progress, optional DDP under ``torchrun``.

Checkpoints (in ``<out_dir>/checkpoint/``): ``model.safetensors`` (the weights),
``optim.pt`` (the optimizer state, written with ``torch.save`` and read back with
``weights_only=True``) and ``state.json`` (the step and the configuration). A finished run
exports ``<out_dir>/<name>.safetensors`` and writes its sha256 beside it; ``log.jsonl`` holds
the losses.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from avfc.errors import ConfigError
from avfc.eval.backbones import vgg16_features
from avfc.models.base import temporal_weights
from avfc.models.mrdac import MRDAC
from avfc.train.configs import LossConfig, OptimConfig, TrainConfig, get_config
from avfc.train.corpus import CorpusSampler, corpus_arrays, prepare_corpus
from avfc.train.data import ClipSampler, clip_paths, load_clip, load_coded, prepare_coded
from avfc.train.export import export_model
from avfc.train.losses import (
    PerceptualLoss,
    RandomTPS,
    contrastive_loss,
    equivariance_loss,
    l1_loss,
    separation_loss,
    quantization_noise,
)


def reference_weights(indices: torch.Tensor) -> torch.Tensor:
    """Temporal weights ``(B, R)`` from frame indices ``(B, 1 + R)`` (target first), row by row
    with :func:`avfc.models.base.temporal_weights` (the same weights the codec uses)."""
    rows = [temporal_weights(row[1:].tolist(), int(row[0])) for row in indices.cpu()]
    return torch.stack(rows).to(indices.device)


def searched_keypoints(search_model: MRDAC, refs: torch.Tensor, kp_refs: torch.Tensor, target: torch.Tensor,
                       kp_target: torch.Tensor, weights: torch.Tensor, *, steps: int, lr: float,
                       precision: int) -> torch.Tensor:
    """The target's keypoints moved as the encoder's search moves what it sends (:mod:`avfc.codec.search`):
    ``steps`` Adam steps of ``lr`` grid units (``1 / 2**precision``, shrinking linearly to a quarter) on the mouth-weighted L1 of
    ``search_model``'s render (the model's current weights at the search's size, eval mode) against the
    target, from ``kp_target``. Shapes: ``refs`` ``(B, R, 3, S, S)``, ``kp_refs`` ``(B, R, K, 2)``,
    ``target`` ``(B, 3, S, S)``, ``kp_target`` ``(B, K, 2)``, ``weights`` ``(B, R)``. Returns ``(B, K, 2)``,
    detached (the model trains on the render of the result, not through the search)."""
    from avfc.codec.search import _resize, mouth_weights

    size = search_model.size
    base = kp_target.detach()
    with torch.no_grad():
        states = [search_model.encode_reference(_resize(refs[:, r], size), kp_refs[:, r].detach())
                  for r in range(refs.shape[1])]
        goal = _resize(target, size)
        w = mouth_weights(size).to(target.device)  # the encoder's weights (MOUTH_WEIGHT in the mouth box)
    delta = torch.zeros_like(base, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr / 2.0 ** precision)
    # as the encoder's search: the step shrinks linearly to a quarter of lr
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - 0.75 * t / max(steps - 1, 1))
    for _ in range(steps):
        pred = search_model.animate(states, base + delta, weights)["prediction"].clamp(0.0, 1.0)
        loss = ((pred - goal).abs() * w).mean(dim=(1, 2, 3)).sum()  # each sample's own search
        (g,) = torch.autograd.grad(loss, [delta])
        delta.grad = g
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return (base + delta).detach()


class TrainStep(nn.Module):
    """Model plus losses; ``forward`` returns every loss term and their weighted ``total``.

    This is the module DDP wraps. Keypoints of all frames get the bitstream's rounding noise
    (the codec renders only from quantized keypoints, reference and target alike).
    """

    def __init__(self, model: MRDAC, loss: LossConfig, perceptual: PerceptualLoss | None = None,
                 distances: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        if loss.perceptual > 0 and perceptual is None:
            raise ConfigError("a perceptual loss weight > 0 needs the VGG16 perceptual loss module")
        distances = dict(distances or {})
        missing = [k for k in ("lpips", "dists") if getattr(loss, k) > 0 and k not in distances]
        if missing:
            raise ConfigError(f"loss weights > 0 for {missing} need those distance modules")
        self.model = model
        self.cfg = loss
        self.perceptual = perceptual
        self.distances = nn.ModuleDict(distances)  # frozen metric networks: (pred, target) -> (B,)
        self._search: list[MRDAC] = []  # the search's copy of the model at loss.search_size (not a submodule)

    def _search_model(self) -> MRDAC:
        """The model's current weights at the search's size, in eval mode, without gradients."""
        if not self._search:
            cfg = dict(self.model.config_dict())
            cfg["size"] = self.cfg.search_size
            cfg["motion_size"] = min(cfg["motion_size"], self.cfg.search_size)
            small = MRDAC(**cfg).eval()
            small.requires_grad_(False)
            self._search.append(small)
        small = self._search[0]
        here = next(self.model.parameters()).device
        small.to(here).load_state_dict(self.model.state_dict(), strict=True)
        return small

    def forward(self, frames: torch.Tensor, indices: torch.Tensor, num_refs: int) -> dict[str, torch.Tensor]:
        """``frames``: ``(B, 1 + R', 3, S, S)`` (target first); the first ``num_refs`` references are used."""
        b, n, c, h, w = frames.shape
        if not 1 <= num_refs < n:
            raise ConfigError(f"num_refs must be in 1..{n - 1}, got {num_refs}")
        model, cfg = self.model, self.cfg
        used = frames[:, : 1 + num_refs]
        kp_clean = model.keypoints(used.reshape(-1, c, h, w)).view(b, 1 + num_refs, model.num_kp, 2)
        kp = quantization_noise(kp_clean, cfg.kp_precision)
        states = [model.encode_reference(used[:, 1 + r], kp[:, 1 + r]) for r in range(num_refs)]
        ref_weights = reference_weights(indices[:, : 1 + num_refs])
        kp_target = kp[:, 0]
        searched = int(round(b * cfg.search_share)) if cfg.search_steps > 0 else 0
        if searched:  # the first samples of the batch are drawn from searched keypoints
            moved = searched_keypoints(self._search_model(), used[:searched, 1:], kp[:searched, 1:],
                                       used[:searched, 0], kp[:searched, 0], ref_weights[:searched],
                                       steps=cfg.search_steps, lr=cfg.search_lr, precision=cfg.kp_precision)
            kp_target = torch.cat([moved, kp[searched:, 0]])
        out = model.animate(states, kp_target, ref_weights)
        pred, target = out["prediction"], used[:, 0]
        losses: dict[str, torch.Tensor] = {"l1": l1_loss(pred, target)}
        if cfg.perceptual > 0 and self.perceptual is not None:
            losses["perceptual"] = self.perceptual(pred, target)
        for name, distance in self.distances.items():
            if getattr(cfg, name) > 0:
                losses[name] = distance(pred, target).mean()
        if cfg.equivariance > 0:
            tps = RandomTPS(b, sigma_affine=cfg.sigma_affine, sigma_tps=cfg.sigma_tps, device=frames.device)
            kp_tr = model.keypoints(tps.transform_frames(target))
            losses["equivariance"] = equivariance_loss(kp_clean[:, 0], kp_tr, tps)
        if cfg.separation > 0:
            losses["separation"] = separation_loss(kp_clean.reshape(-1, model.num_kp, 2), cfg.separation_sigma)
        if cfg.contrastive > 0 and num_refs > 1:
            warped = out["warped"]
            contrastive = sum(
                contrastive_loss(warped[r], warped[r + 1], cfg.contrastive_temperature) for r in range(num_refs - 1)
            )
            assert isinstance(contrastive, torch.Tensor)  # (num_refs > 1: one term at least, so not sum's 0)
            losses["contrastive"] = contrastive / (num_refs - 1)
        weights = {"l1": cfg.l1, "perceptual": cfg.perceptual, "equivariance": cfg.equivariance,
                   "contrastive": cfg.contrastive, "separation": cfg.separation, "lpips": cfg.lpips,
                   "dists": cfg.dists}
        total = sum(weights[k] * v for k, v in losses.items())
        assert isinstance(total, torch.Tensor)  # (l1 at least, so not sum's 0)
        losses["total"] = total
        return losses


def learning_rate(step: int, total: int, cfg: OptimConfig) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_step(step_module: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               num_refs: int, grad_clip: float) -> dict[str, float]:
    """One optimisation step on ``batch``; returns the loss values and the gradient norm."""
    optimizer.zero_grad(set_to_none=True)
    losses = step_module(batch["frames"], batch["indices"], num_refs)
    losses["total"].backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    out = {k: float(v.detach()) for k, v in losses.items()}
    out["grad_norm"] = float(grad_norm)
    return out


@torch.no_grad()
def evaluate(model: MRDAC, batch: dict[str, torch.Tensor], precision: int = 7) -> float:
    """L1 of single-reference renders (eval mode, keypoints rounded to the bitstream's grid
    of ``1 / 2**precision``) on a fixed batch (target first, reference second)."""
    modes = [(m, m.training) for m in model.modules()]  # frozen parts stay in eval mode
    model.eval()
    frames = batch["frames"]
    target, ref = frames[:, 0], frames[:, 1]
    scale = 2.0 ** precision
    kp_t = torch.round(model.keypoints(target) * scale) / scale
    kp_r = torch.round(model.keypoints(ref) * scale) / scale
    pred = model.animate([model.encode_reference(ref, kp_r)], kp_t, target.new_ones(target.shape[0], 1))
    for m, mode in modes:
        m.train(mode)
    return float(l1_loss(pred["prediction"], target))


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    config: TrainConfig) -> None:
    """Write the checkpoint files (each atomically; ``state.json`` last)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(folder / "model.safetensors.tmp"))
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    torch.save(optimizer.state_dict(), folder / "optim.pt.tmp")
    os.replace(folder / "optim.pt.tmp", folder / "optim.pt")
    state = {"step": step, "config": json.loads(config.to_json())}
    (folder / "state.json.tmp").write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(folder / "state.json.tmp", folder / "state.json")


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimizer from ``folder``; return the step to continue from (0: none)."""
    if not (folder / "state.json").is_file():
        return 0
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        optimizer.load_state_dict(torch.load(folder / "optim.pt", map_location="cpu", weights_only=True))
        return int(state["step"])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot resume from checkpoint {str(folder)!r}: {exc}") from exc


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _share_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics). DDP sends them from rank 0 at the start of
    each forward, but each rank's own last forwards update its copy, so after the last step the ranks
    would hold different statistics (the parameters agree: their gradients are averaged)."""
    for buf in model.buffers():
        dist.broadcast(buf.data, src=0)


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _perceptual(cfg: LossConfig) -> PerceptualLoss | None:
    if cfg.perceptual <= 0:
        return None
    return PerceptualLoss(vgg16_features(cfg.vgg_path), cfg.perceptual_scales, cfg.perceptual_layers)


def _distances(cfg: LossConfig) -> dict[str, nn.Module]:
    """The LPIPS-VGG / DISTS modules the loss weights ask for (weights beside ``vgg_path``)."""
    from avfc.eval.perceptual import DISTS, LPIPS

    folder = None if cfg.vgg_path is None else Path(cfg.vgg_path).expanduser()
    if folder is not None and folder.is_file():
        folder = folder.parent
    out: dict[str, nn.Module] = {}
    if cfg.lpips > 0:
        out["lpips"] = LPIPS("vgg", folder)
    if cfg.dists > 0:
        out["dists"] = DISTS(folder)
    return out


def _clips(cfg: TrainConfig, rank: int, world: int) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """The prepared training clips and, with ``data.ref_codec``, their coded references; under
    DDP rank 0 fills the cache before the others read it."""
    if world > 1 and rank != 0:
        dist.barrier()
    d, size = cfg.data, cfg.model.size
    paths = clip_paths(d.dirs, size, d.cache_dir, fps=d.fps, max_frames=d.max_frames)
    clips = [load_clip(p, size) for p in paths]
    coded = None
    if d.ref_codec != "none":
        coded = [load_coded(prepare_coded(p, size, d.ref_codec, d.ref_qps, d.ref_stride), clip, len(d.ref_qps),
                            d.ref_stride)
                 for p, clip in zip(tqdm(paths, desc="coding references", disable=rank != 0), clips)]
    if world > 1 and rank == 0:
        dist.barrier()
    return clips, coded


def _corpus(cfg: TrainConfig, rank: int, world: int) -> dict[str, Any]:
    """The v4 corpus (``data.corpus``): prepared (or reused) once, split by person; the lazily
    read arrays of the training side (clips and photos, with their coded references) and the
    development side's clips for the evaluation batch (the training clips when no one is held
    out). Under DDP rank 0 fills the cache before the others read it."""
    if world > 1 and rank != 0:
        dist.barrier()
    d, size = cfg.data, cfg.model.size
    assert d.corpus is not None
    bar = tqdm(desc="preparing the corpus", unit="file", disable=rank != 0)
    corpus = prepare_corpus(d.corpus, d.cache_dir, [size], folders=d.corpus_folders, fps=d.fps,
                            max_frames=d.max_frames, codec=d.ref_codec, qps=d.ref_qps, stride=d.ref_stride,
                            dev_fraction=d.dev_fraction, split_seed=d.split_seed,
                            progress=lambda rel, worked, sec: bar.update(1))
    bar.close()
    if world > 1 and rank == 0:
        dist.barrier()
    if rank == 0:
        for rel, who in corpus.dropped.items():
            tqdm.write(f"dropped {rel}: shows {', '.join(who)} (an evaluation person)")
        for rel, err in corpus.failed.items():
            tqdm.write(f"skipped {rel}: {err}")
    args = (d.ref_codec, d.ref_qps, d.ref_stride)
    clips, coded = corpus_arrays(corpus, size, "train", "video", *args, min_frames=2)
    photos, photos_coded = corpus_arrays(corpus, size, "train", "photo", *args)
    dev, dev_coded = corpus_arrays(corpus, size, "dev", "video", *args, min_frames=2)
    if not clips:
        raise ConfigError(f"no usable training clips in the corpus under {d.corpus!r}")
    return {"clips": clips, "coded": coded, "photos": photos, "photos_coded": photos_coded,
            "eval_clips": dev or clips, "eval_coded": dev_coded if dev else coded}


def _eval_batch(clips: list[np.ndarray], cfg: TrainConfig,
                coded: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """A fixed batch (seeded, no augmentation) of targets with one (coded, if given) reference each."""
    plain = ClipSampler(clips, 1, max_ref_distance=cfg.data.max_ref_distance, scale_jitter=0.0, flip=False,
                        color_jitter=0.0, coded=coded, coded_stride=cfg.data.ref_stride)
    rng = np.random.default_rng(12345)
    samples = [plain.sample(rng) for _ in range(cfg.eval_samples)]
    return {k: torch.stack([s[k] for s in samples]) for k in ("frames", "indices")}


#: a residual block of the frame decoder's trunk, in a state dict: ``decoder.blocks.<i>.<rest>``
_BLOCK_KEY = re.compile(r"^decoder\.blocks\.(\d+)\.")


def grow_decoder(model: MRDAC, state: dict[str, torch.Tensor]) -> list[int]:
    """Load ``state``, the weights of a model with fewer frame-decoder blocks than ``model`` but
    otherwise the same architecture, and start the blocks it lacks as the identity (the last
    BatchNorm of each, whose output is added to the block's input, scaled to zero), so the grown
    model renders exactly as the smaller one until training moves them. Returns the new blocks'
    indices; raises :class:`ConfigError` when anything else differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ConfigError(f"the source has weights the grown model lacks: {', '.join(unexpected[:4])}")
    new_blocks = sorted({int(m.group(1)) for m in map(_BLOCK_KEY.match, missing) if m})
    other = [k for k in missing if not _BLOCK_KEY.match(k)]
    if other or not new_blocks:
        raise ConfigError("only frame-decoder blocks can be added: "
                          + (f"missing {', '.join(other[:4])}" if other else "nothing to grow"))
    kept = len(model.decoder.blocks) - len(new_blocks)
    if new_blocks != list(range(kept, len(model.decoder.blocks))):
        raise ConfigError(f"the source's decoder blocks do not fit: new blocks {new_blocks}")
    shapes = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if shapes:
        raise ConfigError(f"weights of another shape: {', '.join(shapes[:4])}")
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        for i in new_blocks:
            last = model.get_submodule(f"decoder.blocks.{i}.body.3")  # the BatchNorm after the projection
            assert isinstance(last, nn.BatchNorm2d)
            last.weight.zero_()
            last.bias.zero_()
    return new_blocks


def init_weights(model: MRDAC, source: str, *, grow: bool = False) -> None:
    """Load the weights of ``source`` (an exported safetensors file or a zoo model name) into
    ``model`` (a warm start; the architectures must match, or with ``grow`` differ only by frame-decoder
    blocks that ``model`` adds: :func:`grow_decoder`). Checkpoints of a run still win:
    resuming loads them over this."""
    from avfc.models.zoo import ZOO, load_model  # the zoo imports every architecture

    if source in ZOO:
        state = {k: v.clone() for k, v in load_model(source).state_dict().items()}
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"init_from {source!r} is neither a zoo model nor a weights file")
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    if grow:
        grow_decoder(model, state)
        return
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"init_from {source!r} does not fit the configured model: {exc}") from None


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train(config: TrainConfig | str, *, progress: bool = True) -> Path:
    """Train an MRDAC model as ``config`` says (a :class:`TrainConfig` or a preset name) and
    return the path of the exported safetensors weights.

    Resumes from ``<out_dir>/checkpoint`` when it exists and ``config.resume`` is set. Under
    ``torchrun`` (``WORLD_SIZE > 1``) it trains with DistributedDataParallel; rank 0 writes.
    """
    cfg = get_config(config) if isinstance(config, str) else TrainConfig(**config.model_dump())
    if not cfg.data.dirs and not cfg.data.corpus:
        raise ConfigError("no training data: set data.dirs to folders of talking-face videos (or data.corpus)")
    rank, world, local_rank = _distributed()
    device = _device(cfg, local_rank)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    out_dir = Path(cfg.out_dir).expanduser()
    ckpt_dir = out_dir / "checkpoint"

    corpus = _corpus(cfg, rank, world) if cfg.data.corpus else None
    clips, coded = (corpus["clips"], corpus["coded"]) if corpus else _clips(cfg, rank, world)
    train_refs = cfg.train_refs or cfg.model.max_refs
    if train_refs > cfg.model.max_refs:
        raise ConfigError(f"train_refs {train_refs} exceeds the model's max_refs {cfg.model.max_refs}")

    model = cfg.model.build()
    if cfg.init_from:
        init_weights(model, cfg.init_from, grow=cfg.init_grow)
    model = model.to(device)
    for part in cfg.freeze:
        getattr(model, part).requires_grad_(False)
    step_module: nn.Module = TrainStep(model, cfg.loss, _perceptual(cfg.loss), _distances(cfg.loss)).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                                  betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
    start = load_checkpoint(ckpt_dir, model, optimizer) if cfg.resume else 0
    if world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[local_rank] if device.type == "cuda" else None)

    sampling: dict[str, Any] = {
        "max_ref_distance": cfg.data.max_ref_distance, "scale_jitter": cfg.data.scale_jitter, "flip": cfg.data.flip,
        "color_jitter": cfg.data.color_jitter, "seed": cfg.seed * 1_000_003 + start, "rank": rank, "coded": coded,
        "coded_stride": cfg.data.ref_stride, "same_frame": cfg.data.same_frame}
    data: ClipSampler | CorpusSampler
    if corpus:
        data = CorpusSampler(clips, train_refs, photos=corpus["photos"], photos_coded=corpus["photos_coded"],
                             photo_ratio=cfg.data.photo_ratio, **sampling)
        eval_batch = _to(_eval_batch(corpus["eval_clips"], cfg, corpus["eval_coded"]), device)
    else:
        data = ClipSampler(clips, train_refs, **sampling)
        eval_batch = _to(_eval_batch(clips, cfg, coded), device)
    loader = DataLoader(data, batch_size=cfg.batch_size, num_workers=cfg.data.num_workers,
                        persistent_workers=cfg.data.num_workers > 0)

    log = None
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        log = open(out_dir / "log.jsonl", "a", encoding="utf-8")
        if start == 0:  # where training starts from, and the still-reference baseline
            still = float(l1_loss(eval_batch["frames"][:, 1], eval_batch["frames"][:, 0]))
            record0 = {"step": 0, "eval_l1": evaluate(model, eval_batch, cfg.loss.kp_precision), "still_l1": still}
            log.write(json.dumps(record0) + "\n")
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress or rank != 0, desc=cfg.name)
    model.train()
    for part in cfg.freeze:  # frozen parts keep their batch-norm statistics too
        getattr(model, part).eval()
    t0 = time.perf_counter()
    try:
        for step, batch in zip(range(start, cfg.steps), islice(loader, cfg.steps - start)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg.steps, cfg.optim)
            num_refs = 1 + step % train_refs  # every reference count 1..train_refs in turn
            values = train_step(step_module, optimizer, _to(batch, device), num_refs, cfg.optim.grad_clip)
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.4f}", refs=num_refs)
            done = step + 1
            if rank != 0:
                continue
            record: dict[str, Any] = {}
            if done % cfg.log_every == 0 or done == cfg.steps:
                record.update(values, lr=optimizer.param_groups[0]["lr"], refs=num_refs)
            if done % cfg.eval_every == 0 or done == cfg.steps:
                record["eval_l1"] = evaluate(model, eval_batch, cfg.loss.kp_precision)
            if record and log is not None:
                record.update(step=done, seconds=round(time.perf_counter() - t0, 1))
                log.write(json.dumps(record) + "\n")
                log.flush()
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save_checkpoint(ckpt_dir, model, optimizer, done, cfg)
    finally:
        bar.close()
        if log is not None:
            log.close()
    final = out_dir / f"{cfg.name}.safetensors"
    if world > 1:
        _share_buffers(model)
    if rank == 0:
        digest = export_model(model, final, cfg.export_dtype)
        (out_dir / f"{cfg.name}.sha256").write_text(f"{digest}  {final.name}\n", encoding="utf-8")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return final
