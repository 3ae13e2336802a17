"""Train the diffusion lips model (AVCC, format 1.3): a small transformer that denoises lips offsets
from the joint sequence of motion and Codec2 700C audio tokens.

    python -m avfc.train.avcc_diffusion --out /tmp/diffusion/diffusion.safetensors

Data: the aligned clips of :mod:`avfc.train.avcc_data` (``/work/shared/data/av`` by default: face
and speech; never ``av-eval``), keypoints of ``--model`` on the encoder's grid (``--precision``,
``--hysteresis``), the same arguments that fitted the lips regressor of the bundle. Targets are the
integer offsets the decoder produces (:func:`avfc.avcc.diffusion.grid_offsets`): keypoints minus
the key picture's, each axis' mean removed. ``--val-clips`` are held out and scored during training.

Training windows start at any frame (block positions are absolute only at decoding): ``P`` context
frames with their true offsets (or "absent", at the clip's start and with probability
``--p-absent``), ``B`` block frames noised at a uniform level ``u`` of the cosine schedule, ``L``
lookahead frames; the loss is the masked MSE of the predicted clean offsets (model units). With
probability ``--p-uncond`` every audio field is replaced by "unknown" (lost audio; classifier-free
guidance), and single fields of single tokens with ``--p-drop-vq`` (``vq1``, ``vq2``) and
``--p-drop-prosody`` (energy, pitch). A field hidden always (probability 1) is ignored by the model:
all its embedding rows are set to the "unknown" row after training. The network mirrors :meth:`avfc.avcc.diffusion.LipsDiffusion.denoise` parameter for
parameter; the result is float32 arrays under ``diffusion.*`` (int64 ``diffusion.meta``).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avfc.avcc.diffusion import (
    FIELD_NAMES,
    LN_EPS,
    ROLE_ABSENT,
    ROLE_BLOCK,
    ROLE_CONTEXT,
    ROLE_LOOKAHEAD,
    DiffusionMeta,
    LipsDiffusion,
    alpha_bar,
    field_indexes,
    grid_offsets,
    parameter_shapes,
)
from avfc.errors import ConfigError

DEFAULT_META = dict(block=25, context=4, lookahead=2, width=64, layers=3, heads=4, ffn=128, embed=16,
                    time_freqs=16)


# --------------------------------------------------------------------------- network (torch mirror)
class DiffusionNet(nn.Module):
    """The denoiser of :class:`~avfc.avcc.diffusion.LipsDiffusion` in torch (training only)."""

    x_scale: torch.Tensor  # buffers (register_buffer): typed here, as nn.Module's attribute lookup is not
    guidance: torch.Tensor

    def __init__(self, meta: DiffusionMeta, dropout: float = 0.0) -> None:
        super().__init__()
        self.meta = meta
        self.dropout = float(dropout)
        self.shapes = parameter_shapes(meta)
        self.store = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(torch.zeros(s))
                                       for k, s in self.shapes.items() if k not in ("x_scale", "guidance")})
        self.register_buffer("x_scale", torch.ones(1))
        self.register_buffer("guidance", torch.ones(1))
        self.reset_parameters()

    def p(self, name: str) -> torch.Tensor:
        return self.store[name.replace(".", "__")]

    def reset_parameters(self) -> None:
        for name, par in self.store.items():
            name = name.replace("__", ".")
            with torch.no_grad():
                if name.endswith(("ln1.weight", "ln2.weight")) or name == "ln_f.weight":
                    par.fill_(1.0)
                elif name.endswith(".bias"):
                    par.zero_()
                elif name in ("role", "pos") or name.startswith("emb."):
                    par.normal_(0.0, 0.02)
                else:  # linear weights (out, in)
                    bound = 1.0 / math.sqrt(par.shape[1])
                    par.uniform_(-bound, bound)
            if name == "head.weight" or name.endswith(("proj.weight", "ff2.weight")):
                with torch.no_grad():
                    par.mul_(0.1)

    def _lin(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.p(name + ".weight"), self.p(name + ".bias"))

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.dropout, self.training) if self.dropout else x

    def forward(self, x_in: torch.Tensor, roles: torch.Tensor, fields: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self._lin(self.features(x_in, roles, fields, u), "head")

    def features(self, x_in: torch.Tensor, roles: torch.Tensor, fields: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The trunk's normalised output ``(N, T, width)`` (as :meth:`LipsDiffusion.features`)."""
        m = self.meta
        h = self._lin(x_in, "in") + self.p("role")[roles] + self.p("pos")[None, :x_in.shape[1]]
        emb = torch.cat([self.p(f"emb.{n}")[fields[..., i]] for i, n in enumerate(FIELD_NAMES)], dim=-1)
        h = h + self._lin(emb, "audio")
        freqs = 10000.0 ** (-torch.arange(m.time_freqs, dtype=x_in.dtype) / m.time_freqs)
        ang = 1000.0 * u.reshape(-1, 1).to(x_in.dtype) * freqs[None, :]
        t = torch.relu(self._lin(torch.cat([torch.sin(ang), torch.cos(ang)], dim=1), "time1"))
        h = h + self._lin(t, "time2")[:, None, :]
        n, tok, d = h.shape
        hd = d // m.heads
        for i in range(m.layers):
            q = f"layer{i}."
            a = F.layer_norm(h, (d,), self.p(q + "ln1.weight"), self.p(q + "ln1.bias"), LN_EPS)
            qkv = self._lin(a, q + "qkv").reshape(n, tok, 3, m.heads, hd)
            qh, kh, vh = (qkv[:, :, j].transpose(1, 2) for j in range(3))
            att = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(hd), dim=-1)
            o = (att @ vh).transpose(1, 2).reshape(n, tok, d)
            h = h + self._drop(self._lin(o, q + "proj"))
            a = F.layer_norm(h, (d,), self.p(q + "ln2.weight"), self.p(q + "ln2.bias"), LN_EPS)
            h = h + self._drop(self._lin(torch.relu(self._lin(a, q + "ff1")), q + "ff2"))
        return F.layer_norm(h, (d,), self.p("ln_f.weight"), self.p("ln_f.bias"), LN_EPS)

    def export(self, prefix: str = "diffusion.") -> dict[str, np.ndarray]:
        """float32 arrays under ``prefix`` plus the int64 meta (what the bundle stores)."""
        out = {prefix + "meta": self.meta.as_array()}
        for name in self.shapes:
            t = getattr(self, name) if name in ("x_scale", "guidance") else self.p(name)
            out[prefix + name] = np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))
        return out

    def to_numpy_model(self) -> LipsDiffusion:
        return LipsDiffusion.from_arrays(self.export())


# --------------------------------------------------------------------------- data
@dataclass
class Windows:
    """Training windows as tensors (one row per window)."""

    ctx: torch.Tensor  # (N, P, C) float, model units (0 where absent)
    has_ctx: torch.Tensor  # (N,) bool
    fields: torch.Tensor  # (N, T, 4) long embedding rows
    target: torch.Tensor  # (N, B, C) float, model units
    mask: torch.Tensor  # (N, B) float: 1 for frames inside the clip

    def __len__(self) -> int:
        return int(self.target.shape[0])


def clip_offsets(clip, kp_dim: int = 2) -> np.ndarray:
    """Integer training target of a clip (:func:`grid_offsets` of its keypoints and key keypoints)."""
    return grid_offsets(clip.q, clip.ref_q, kp_dim)


def make_windows(clips: Sequence, meta: DiffusionMeta, x_scale: float, starts: str = "all") -> Windows:
    """Windows of every clip: ``starts`` "all" (frame 0 and every frame from P on) or "blocks"
    (multiples of B, as the decoder places them)."""
    P, B, L, C = meta.context, meta.block, meta.lookahead, meta.channels
    ctx, has, fields, target, mask = [], [], [], [], []
    for clip in clips:
        off = clip_offsets(clip, meta.kp_dim).astype(np.float64) / x_scale
        t_len = len(off)
        if starts == "blocks":
            firsts = list(range(0, t_len, B))
        else:
            firsts = [0] + list(range(max(P, 1), t_len))
        for b0 in firsts:
            rows = np.full((P + B + L, 4), -1, np.int64)
            lo, hi = max(b0 - P, 0), min(b0 + B + L, t_len)
            rows[lo - (b0 - P):hi - (b0 - P)] = clip.fields[lo:hi]
            c = np.zeros((P, C))
            ok = b0 >= P and b0 > 0
            if ok and P:
                c = off[b0 - P:b0]
            tgt = np.zeros((B, C))
            n = min(B, t_len - b0)
            tgt[:n] = off[b0:b0 + n]
            mk = np.zeros(B)
            mk[:n] = 1.0
            ctx.append(c)
            has.append(ok)
            fields.append(field_indexes(rows))
            target.append(tgt)
            mask.append(mk)
    return Windows(ctx=torch.tensor(np.array(ctx), dtype=torch.float32),
                   has_ctx=torch.tensor(np.array(has), dtype=torch.bool),
                   fields=torch.tensor(np.array(fields), dtype=torch.long),
                   target=torch.tensor(np.array(target), dtype=torch.float32),
                   mask=torch.tensor(np.array(mask), dtype=torch.float32))


_UNKNOWN_ROWS = torch.tensor([512, 512, 16, 64], dtype=torch.long)


def batch_inputs(w: Windows, idx: torch.Tensor, meta: DiffusionMeta, u: torch.Tensor, noise: torch.Tensor,
                 absent: torch.Tensor, uncond: torch.Tensor,
                 field_drop: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
    """Noisy model inputs of windows ``idx`` at levels ``u`` (``absent``/``uncond``: per-window drops;
    ``field_drop``: ``(N, T, 4)`` bool, single fields of single tokens made unknown)."""
    P, B = meta.context, meta.block
    x0 = w.target[idx]
    ab = torch.tensor(alpha_bar(u.double().numpy()), dtype=torch.float32)[:, None, None]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    has = w.has_ctx[idx] & ~absent
    x_in = torch.zeros(len(idx), meta.tokens, meta.channels)
    x_in[:, :P] = w.ctx[idx] * has[:, None, None]
    x_in[:, P:P + B] = xt
    roles = torch.full((len(idx), meta.tokens), ROLE_BLOCK, dtype=torch.long)
    roles[:, :P] = torch.where(has, ROLE_CONTEXT, ROLE_ABSENT)[:, None]
    roles[:, P + B:] = ROLE_LOOKAHEAD
    fields = w.fields[idx].clone()
    if field_drop is not None:
        fields = torch.where(field_drop, _UNKNOWN_ROWS.expand_as(fields), fields)
    fields[uncond] = _UNKNOWN_ROWS
    return x_in, roles, fields, x0


def masked_loss(net: DiffusionNet, w: Windows, idx: torch.Tensor, u: torch.Tensor, noise: torch.Tensor,
                absent: torch.Tensor, uncond: torch.Tensor, field_drop: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared error of the predicted clean offsets over the frames inside the clips."""
    meta = net.meta
    x_in, roles, fields, x0 = batch_inputs(w, idx, meta, u, noise, absent, uncond, field_drop)
    pred = net(x_in, roles, fields, u)[:, meta.context:meta.context + meta.block]
    mask = w.mask[idx][:, :, None]
    return (((pred - x0) ** 2) * mask).sum() / (mask.sum() * meta.channels).clamp(min=1.0)


def fixed_eval_loss(net: DiffusionNet, w: Windows, levels: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                    seed: int = 1234) -> float:
    """Loss on every window at fixed levels and fixed noise (a comparable validation number)."""
    if len(w) == 0:
        return float("nan")
    gen = torch.Generator().manual_seed(seed)
    net.eval()
    total = 0.0
    with torch.no_grad():
        idx = torch.arange(len(w))
        none = torch.zeros(len(w), dtype=torch.bool)
        for lv in levels:
            noise = torch.randn(len(w), net.meta.block, net.meta.channels, generator=gen)
            total += float(masked_loss(net, w, idx, torch.full((len(w),), lv), noise, none, none))
    net.train()
    return total / len(levels)


# --------------------------------------------------------------------------- training
def warmup_cosine_lr(step: int, lr: float, warmup: int, steps: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(steps - warmup, 1)
    return lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


@dataclass
class TrainConfig:
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 200
    dropout: float = 0.1
    p_absent: float = 0.1
    p_uncond: float = 0.1
    p_drop_vq: float = 0.0  # per token: vq1 / vq2 made unknown (against memorising clips by their spectra)
    p_drop_prosody: float = 0.0  # per token: energy / pitch made unknown
    seed: int = 0
    time_limit_s: float = 1500.0
    log_every: int = 250


def train(clips: Sequence, val_clips: Sequence, meta: DiffusionMeta, cfg: TrainConfig,
          x_scale: Optional[float] = None, guidance: float = 1.0, log=print) -> tuple[DiffusionNet, list[dict]]:
    """Train a :class:`DiffusionNet`; returns it (eval mode) and the logged history."""
    if not clips:
        raise ConfigError("no training clips")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if x_scale is None:
        allo = np.concatenate([clip_offsets(c, meta.kp_dim) for c in clips]).astype(np.float64)
        x_scale = float(max(allo.std(), 0.25))
    net = DiffusionNet(meta, cfg.dropout)
    net.x_scale.fill_(x_scale)
    net.guidance.fill_(guidance)
    tw = make_windows(clips, meta, x_scale, "all")
    vw = make_windows(val_clips, meta, x_scale, "blocks") if val_clips else None
    tw_blocks = make_windows(clips, meta, x_scale, "blocks")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    history: list[dict] = []
    t0 = time.time()
    ema = None
    log(f"{len(tw)} training windows, {0 if vw is None else len(vw)} validation windows, x_scale {x_scale:.3f}, "
        f"{sum(p.numel() for p in net.parameters())} parameters")
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)
        idx = torch.randint(len(tw), (cfg.batch,), generator=gen)
        u = torch.rand(cfg.batch, generator=gen)
        noise = torch.randn(cfg.batch, meta.block, meta.channels, generator=gen)
        absent = torch.rand(cfg.batch, generator=gen) < cfg.p_absent
        uncond = torch.rand(cfg.batch, generator=gen) < cfg.p_uncond
        drop_p = torch.tensor([cfg.p_drop_vq, cfg.p_drop_vq, cfg.p_drop_prosody, cfg.p_drop_prosody])
        field_drop = torch.rand(cfg.batch, meta.tokens, 4, generator=gen) < drop_p
        loss = masked_loss(net, tw, idx, u, noise, absent, uncond, field_drop)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        last = step == cfg.steps - 1 or time.time() - t0 > cfg.time_limit_s
        if step % cfg.log_every == 0 or last:
            rec = {"step": step, "loss": ema, "train_fixed": fixed_eval_loss(net, tw_blocks),
                   "val_fixed": fixed_eval_loss(net, vw) if vw is not None else float("nan"),
                   "seconds": time.time() - t0}
            history.append(rec)
            log(f"step {step:6d}  loss {ema:.4f}  fixed-level loss: train {rec['train_fixed']:.4f}  "
                f"val {rec['val_fixed']:.4f}  ({rec['seconds']:.0f} s)")
        if last:
            if step < cfg.steps - 1:
                log(f"time limit reached at step {step}")
            break
    net.eval()
    with torch.no_grad():
        for name, p_drop in (("vq1", cfg.p_drop_vq), ("vq2", cfg.p_drop_vq), ("energy", cfg.p_drop_prosody),
                             ("pitch", cfg.p_drop_prosody)):
            if p_drop >= 1.0:  # the field was always hidden: every row takes the "unknown" row the model saw
                emb = net.p(f"emb.{name}")
                emb.copy_(emb[-1:].expand_as(emb))
    return net, history


def sample_report(model: LipsDiffusion, clips: Sequence, mouth: Sequence[int], seed: int, steps: int) -> dict:
    """Sampled offsets of whole clips against the truth: L1 on the mouth channels and the
    correlation of the first mouth channel (per clip, averaged), against zero offsets (held key)."""
    l1, l1_still, corr = [], [], []
    for clip in clips:
        truth = clip_offsets(clip, model.meta.kp_dim)
        gen = model.generate(clip.fields, len(truth), seed, steps)
        l1.append(np.abs(gen[:, mouth] - truth[:, mouth]).mean())
        l1_still.append(np.abs(truth[:, mouth]).mean())
        a, b = gen[:, mouth[0]].astype(float), truth[:, mouth[0]].astype(float)
        corr.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0)
    return {"mouth_l1": float(np.mean(l1)), "mouth_l1_still": float(np.mean(l1_still)),
            "mouth_corr": float(np.mean(corr))}


# --------------------------------------------------------------------------- CLI
def add_common_arguments(ap: argparse.ArgumentParser, prefix: str, steps: int, dropout: float) -> None:
    """The options the AVCC transformer trainers share: output, data, keypoint grid, validation clips,
    optimiser, seed and threads."""
    ap.add_argument("--out", required=True, type=Path, help=f"output .safetensors ({prefix}.* arrays)")
    ap.add_argument("--data", nargs="+", default=["/work/shared/data/av"],
                    help="training folders of talking-face clips with speech (never av-eval)")
    ap.add_argument("--model", default="mrdac-cpu-v2", help="zoo model whose keypoints the streams carry")
    ap.add_argument("--precision", type=int, default=5, help="keypoint grid of the streams (kp_precision)")
    ap.add_argument("--hysteresis", type=float, default=0.3, help="the encoder's keypoint dead zone")
    ap.add_argument("--val-clips", default="grid_lrwp9a,retalk_4",
                    help="comma-separated clip names held out for validation ('' for none)")
    ap.add_argument("--steps", type=int, default=steps, help="optimiser steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=dropout)
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def add_size_arguments(ap: argparse.ArgumentParser, defaults: dict) -> None:
    """One ``--NAME`` option per model size of ``defaults`` (a DEFAULT_META)."""
    for k, v in defaults.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=int, default=v, help=f"model size: {k}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: load the clips, train, write the safetensors, report."""
    from safetensors.numpy import save_file

    from avfc.train.avcc_data import load_clips, split_clips

    ap = argparse.ArgumentParser(prog="python -m avfc.train.avcc_diffusion", description=__doc__.split("\n")[0])
    add_common_arguments(ap, "diffusion", steps=1500, dropout=0.1)
    ap.add_argument("--p-absent", type=float, default=0.1, help="probability of hiding the context")
    ap.add_argument("--p-uncond", type=float, default=0.1, help="probability of hiding the audio")
    ap.add_argument("--p-drop-vq", type=float, default=1.0,
                    help="per token, probability of hiding vq1 / vq2 (1, the default: the model ignores them; "
                         "with them it memorises the training clips)")
    ap.add_argument("--p-drop-prosody", type=float, default=0.0,
                    help="per token, probability of hiding energy / pitch")
    ap.add_argument("--guidance", type=float, default=1.5,
                    help="classifier-free guidance scale stored in the model (1: none, one network pass per step; "
                         "1.5, the default, chosen on the validation clips: two passes)")
    ap.add_argument("--time-limit", type=float, default=25.0, help="stop after this many minutes")
    ap.add_argument("--mouth", default="3,2", help="mouth channels for the final sample report (the first is "
                                                  "correlated)")
    ap.add_argument("--sample-steps", type=int, default=16, help="DDIM steps of the final sample report")
    add_size_arguments(ap, DEFAULT_META)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = load_clips(args.data, args.model, precision=args.precision, hysteresis=args.hysteresis)
    train_clips, val_clips = split_clips(clips, args.val_clips)
    meta = DiffusionMeta(channels=int(clips[0].q.shape[1]), kp_dim=2,
                         **{k: getattr(args, k) for k in DEFAULT_META})
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, dropout=args.dropout, p_absent=args.p_absent,
                      p_uncond=args.p_uncond, p_drop_vq=args.p_drop_vq,
                      p_drop_prosody=args.p_drop_prosody, seed=args.seed, time_limit_s=args.time_limit * 60)
    print(f"train: {len(train_clips)} clips, {sum(c.num_frames for c in train_clips)} frames; "
          f"validation: {[c.name for c in val_clips]}", flush=True)
    net, _ = train(train_clips, val_clips, meta, cfg, guidance=args.guidance, log=lambda s: print(s, flush=True))
    arrays = net.export()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(args.out))
    model = LipsDiffusion.from_arrays(arrays)
    mouth = [int(c) for c in args.mouth.split(",")]
    for name, cl in (("validation", val_clips), ("training", train_clips)):
        if cl:
            rep = sample_report(model, cl, mouth, seed=0, steps=args.sample_steps)
            print(f"{name} clips, sampled ({args.sample_steps} steps, seed 0): mouth L1 {rep['mouth_l1']:.3f} "
                  f"(held key {rep['mouth_l1_still']:.3f}), channel {mouth[0]} corr {rep['mouth_corr']:.3f}")
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {len(arrays)} arrays, {size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
