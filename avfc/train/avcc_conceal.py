"""Train the joint audio-video model that conceals lost speech from motion (:mod:`avfc.avcc.conceal`).

    python -m avfc.train.avcc_conceal --out /tmp/conceal/conceal.safetensors   # its defaults are the shipped run

The network is the diffusion lips transformer (:class:`avfc.train.avcc_diffusion.DiffusionNet`,
same trunk and motion head) plus four audio heads, the logits of the 700C fields of every token.
It learns two tasks at once, on windows of ``P + B + L`` frames:

* **motion**: denoise the block's lips offsets, noised at a level ``u`` of the cosine schedule
  (mean squared error, model units), from the audio fields left and the context;
* **speech**: recover 700C fields hidden at random ("unknown" embedding row) in a span of the block
  (a whole block with probability ``--p-full-span``, as when a one-second audio unit is lost),
  each field of the span hidden with probability ``cos(pi/2 v)``, ``v`` uniform, as the decoder's
  unmasking schedule leaves them (cross entropy). The block's motion is given clean (``u = 0``,
  what the decoder has when only audio was lost) with probability ``--p-clean``, as nothing
  (``u = 1``, input 0: motion lost too) with ``--p-no-motion``, else noised.

Data: the aligned clips of :mod:`avfc.train.avcc_data` (``/work/shared/data/av``: face and
speech, the stream's keypoints) and the 700C tokens of ``/work/shared/data/speech`` as audio-only
windows (motion unknown); never ``av-eval`` or ``speech-eval``. ``--val-clips`` are held out.
The result is float32 arrays under ``conceal.*`` (int64 ``conceal.meta``); its sha256 goes into
:data:`avfc.avcc.conceal.CONCEAL_ZOO`.
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

from avfc.avcc.conceal import JointConcealer, audio_head_shapes
from avfc.avcc.diffusion import (
    FIELD_NAMES,
    ROLE_ABSENT,
    ROLE_BLOCK,
    ROLE_CONTEXT,
    ROLE_LOOKAHEAD,
    DiffusionMeta,
    alpha_bar,
    field_indexes,
)
from avfc.avcc.motion_pred import FIELD_SIZES
from avfc.errors import ConfigError
from avfc.train.avcc_diffusion import (
    DiffusionNet,
    Windows,
    add_common_arguments,
    add_size_arguments,
    clip_offsets,
    make_windows,
    warmup_cosine_lr,
)

#: the shipped run (avcc-conceal-v1); larger sizes overfit the little data there is (docs/model-card.md)
DEFAULT_META = dict(block=25, context=4, lookahead=2, width=32, layers=2, heads=4, ffn=64, embed=8,
                    time_freqs=16)
_UNKNOWN = torch.tensor(FIELD_SIZES, dtype=torch.long)  # the "unknown" embedding row of each field


class JointNet(DiffusionNet):
    """:class:`DiffusionNet` with the audio heads (training only)."""

    def __init__(self, meta: DiffusionMeta, dropout: float = 0.0) -> None:
        super().__init__(meta, dropout)
        self.audio_heads = nn.ParameterDict()
        for name, shape in audio_head_shapes(meta.width).items():
            par = nn.Parameter(torch.zeros(shape))
            if name.endswith(".weight"):
                nn.init.uniform_(par, -0.1 / math.sqrt(meta.width), 0.1 / math.sqrt(meta.width))
            self.audio_heads[name.replace(".", "__")] = par

    def audio_logits(self, h: torch.Tensor) -> list[torch.Tensor]:
        return [F.linear(h, self.audio_heads[f"audio_head__{n}__weight"], self.audio_heads[f"audio_head__{n}__bias"])
                for n in FIELD_NAMES]

    def export(self, prefix: str = "conceal.") -> dict[str, np.ndarray]:
        out = super().export(prefix)
        for name in audio_head_shapes(self.meta.width):
            t = self.audio_heads[name.replace(".", "__")]
            out[prefix + name] = np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))
        return out

    def to_concealer(self) -> JointConcealer:
        return JointConcealer.from_arrays(self.export())


def audio_only_windows(token_seqs: Sequence[np.ndarray], meta: DiffusionMeta) -> Windows:
    """Windows of speech without video (motion unknown): every B/2 frames of each token sequence."""
    P, B, L, C = meta.context, meta.block, meta.lookahead, meta.channels
    fields, n = [], 0
    for f in token_seqs:
        for b0 in range(0, max(len(f) - 1, 1), B // 2 or 1):
            rows = np.full((P + B + L, 4), -1, np.int64)
            lo, hi = max(b0 - P, 0), min(b0 + B + L, len(f))
            rows[lo - (b0 - P):hi - (b0 - P)] = f[lo:hi]
            fields.append(field_indexes(rows))
            n += 1
    return Windows(ctx=torch.zeros(n, P, C), has_ctx=torch.zeros(n, dtype=torch.bool),
                   fields=torch.tensor(np.array(fields), dtype=torch.long) if n else torch.zeros(0, P + B + L, 4, dtype=torch.long),
                   target=torch.zeros(n, B, C), mask=torch.zeros(n, B))


@dataclass
class TrainConfig:
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 200
    dropout: float = 0.3
    p_clean: float = 0.5
    p_no_motion: float = 0.15
    p_full_span: float = 0.15
    p_audio_only: float = 0.3  # share of the batch from speech-only windows (when there are some)
    motion_weight: float = 1.0
    seed: int = 0
    time_limit_s: float = 900.0
    log_every: int = 100


def batch(w: Windows, idx: torch.Tensor, meta: DiffusionMeta, cfg: TrainConfig, gen: torch.Generator,
          audio_only: bool) -> tuple[torch.Tensor, ...]:
    """Inputs and targets of one batch: ``x_in, roles, fields_in, u, x0, motion_mask, fields_true,
    hidden``."""
    P, B, T = meta.context, meta.block, meta.tokens
    n = len(idx)
    x0 = w.target[idx]
    r = torch.rand(n, generator=gen)
    u = torch.rand(n, generator=gen)
    clean = r < cfg.p_clean
    none = (r >= cfg.p_clean) & (r < cfg.p_clean + cfg.p_no_motion)
    if audio_only:
        none = torch.ones(n, dtype=torch.bool)
        clean = torch.zeros(n, dtype=torch.bool)
    u = torch.where(clean, torch.zeros_like(u), torch.where(none, torch.ones_like(u), u))
    ab = torch.tensor(alpha_bar(u.double().numpy()), dtype=torch.float32)[:, None, None]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(n, B, meta.channels, generator=gen)
    xt = torch.where(none[:, None, None], torch.zeros_like(xt), xt)
    has = w.has_ctx[idx] & ~torch.tensor(audio_only).expand(n)
    x_in = torch.zeros(n, T, meta.channels)
    x_in[:, :P] = w.ctx[idx] * has[:, None, None]
    x_in[:, P:P + B] = xt
    roles = torch.full((n, T), ROLE_BLOCK, dtype=torch.long)
    roles[:, :P] = torch.where(has, ROLE_CONTEXT, ROLE_ABSENT)[:, None]
    roles[:, P + B:] = ROLE_LOOKAHEAD
    # hidden span of the block, and a hiding ratio
    full = torch.rand(n, generator=gen) < cfg.p_full_span
    start = torch.randint(0, B, (n,), generator=gen)
    # span lengths skewed to short gaps (lost packets of tens to hundreds of ms), capped by the block
    length = torch.minimum((torch.rand(n, generator=gen) ** 2 * B).floor().long() + 1, B - start)
    start = torch.where(full, torch.zeros_like(start), start)
    length = torch.where(full, torch.full_like(length, B), length)
    pos = torch.arange(B)[None, :]
    span = (pos >= start[:, None]) & (pos < (start + length)[:, None])  # (n, B)
    ratio = torch.cos(math.pi / 2 * torch.rand(n, generator=gen))
    hide_b = span[:, :, None] & (torch.rand(n, B, 4, generator=gen) < ratio[:, None, None])
    hidden = torch.zeros(n, T, 4, dtype=torch.bool)
    hidden[:, P:P + B] = hide_b
    true = w.fields[idx]
    hidden &= true < _UNKNOWN  # only fields that exist
    fields_in = torch.where(hidden, _UNKNOWN.expand_as(true), true)
    return x_in, roles, fields_in, u, x0, w.mask[idx] * (~none).float()[:, None], true, hidden


def losses(net: JointNet, b: tuple[torch.Tensor, ...], meta: DiffusionMeta) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Motion MSE (frames with motion to denoise) and summed audio cross entropy over the hidden
    fields, and how many fields were hidden."""
    x_in, roles, fields_in, u, x0, mmask, true, hidden = b
    h = net.features(x_in, roles, fields_in, u)
    P, B = meta.context, meta.block
    pred = net._lin(h, "head")[:, P:P + B]
    mm = mmask[:, :, None]
    mse = (((pred - x0) ** 2) * mm).sum() / (mm.sum() * meta.channels).clamp(min=1.0)
    ce = torch.zeros(())
    count = int(hidden.sum())
    for f, lg in enumerate(net.audio_logits(h)):
        sel = hidden[..., f]
        if sel.any():
            ce = ce + F.cross_entropy(lg[sel], true[..., f][sel], reduction="sum")
    return mse, ce, count


def evaluate(net: JointNet, w: Windows, meta: DiffusionMeta, cfg: TrainConfig, seed: int = 99) -> dict:
    """Fixed-seed validation: motion MSE and audio cross entropy per hidden field, and the accuracy
    of each field (clean motion, whole blocks hidden at ratio 1, as a lost unit)."""
    if len(w) == 0:
        return {}
    gen = torch.Generator().manual_seed(seed)
    net.eval()
    with torch.no_grad():
        idx = torch.arange(len(w))
        b = batch(w, idx, meta, cfg, gen, False)
        mse, ce, count = losses(net, b, meta)
        # a lost unit: all fields of the whole block hidden, motion clean / absent
        out = {"mse": float(mse), "ce": float(ce) / max(count, 1)}
        for label, use_motion in (("motion", True), ("nomotion", False)):
            x_in, roles, fields_in, u, x0, mmask, true, hidden = b
            P, B = meta.context, meta.block
            x_in = x_in.clone()
            x_in[:, P:P + B] = w.target[idx] if use_motion else 0.0
            u = torch.zeros(len(idx)) if use_motion else torch.ones(len(idx))
            hid = torch.zeros_like(hidden)
            hid[:, P:P + B] = (true[:, P:P + B] < _UNKNOWN)
            f_in = torch.where(hid, _UNKNOWN.expand_as(true), true)
            lg = net.audio_logits(net.features(x_in, roles, f_in, u))
            for f, name in enumerate(FIELD_NAMES):
                sel = hid[..., f]
                out[f"{label}_ce_{name}"] = float(F.cross_entropy(lg[f][sel], true[..., f][sel]))
                out[f"{label}_acc_{name}"] = float((lg[f][sel].argmax(-1) == true[..., f][sel]).float().mean())
    net.train()
    return out


def train(clips: Sequence, val_clips: Sequence, speech: Sequence[np.ndarray], meta: DiffusionMeta, cfg: TrainConfig,
          log=print) -> tuple[JointNet, list[dict]]:
    """Train a :class:`JointNet`; returns it (eval mode) and the logged history."""
    if not clips:
        raise ConfigError("no training clips")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    allo = np.concatenate([clip_offsets(c, meta.kp_dim) for c in clips]).astype(np.float64)
    x_scale = float(max(allo.std(), 0.25))
    net = JointNet(meta, cfg.dropout)
    net.x_scale.fill_(x_scale)
    tw = make_windows(clips, meta, x_scale, "all")
    vw = make_windows(val_clips, meta, x_scale, "blocks") if val_clips else None
    sw = audio_only_windows(speech, meta)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    n_audio = int(round(cfg.batch * cfg.p_audio_only)) if len(sw) else 0
    log(f"{len(tw)} audio-visual windows, {len(sw)} speech-only windows, {0 if vw is None else len(vw)} validation "
        f"windows, x_scale {x_scale:.3f}, {sum(p.numel() for p in net.parameters())} parameters")
    history: list[dict] = []
    t0 = time.time()
    ema: Optional[tuple[float, ...]] = None
    best: Optional[tuple[float, int, dict]] = None  # (validation loss, step, parameters): early stopping
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(step, cfg.lr, cfg.warmup, cfg.steps)
        b = batch(tw, torch.randint(len(tw), (cfg.batch - n_audio,), generator=gen), meta, cfg, gen, False)
        mse, ce, count = losses(net, b, meta)
        if n_audio:
            b2 = batch(sw, torch.randint(len(sw), (n_audio,), generator=gen), meta, cfg, gen, True)
            _, ce2, count2 = losses(net, b2, meta)
            ce, count = ce + ce2, count + count2
        loss = cfg.motion_weight * mse + ce / max(count, 1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        lv = (float(mse.detach()), float(ce.detach()) / max(count, 1))
        ema = lv if ema is None else tuple(0.98 * a + 0.02 * c for a, c in zip(ema, lv))
        last = step == cfg.steps - 1 or time.time() - t0 > cfg.time_limit_s
        if step % cfg.log_every == 0 or last:
            rec = {"step": step, "mse": ema[0], "ce": ema[1], "seconds": time.time() - t0}
            if vw is not None:
                rec.update({"val_" + k: v for k, v in evaluate(net, vw, meta, cfg).items()})
            history.append(rec)
            if vw is not None and (best is None or rec["val_ce"] < best[0]):
                best = (rec["val_ce"], step, {k: v.detach().clone() for k, v in net.state_dict().items()})
            val = (f"  val mse {rec['val_mse']:.3f} ce {rec['val_ce']:.3f}  lost-unit acc (motion / none) "
                   + " ".join(f"{n} {rec['val_motion_acc_' + n]:.2f}/{rec['val_nomotion_acc_' + n]:.2f}"
                              for n in FIELD_NAMES)) if vw is not None else ""
            log(f"step {step:6d}  mse {ema[0]:.3f}  ce {ema[1]:.3f}{val}  ({rec['seconds']:.0f} s)")
        if last:
            if step < cfg.steps - 1:
                log(f"time limit reached at step {step}")
            break
    if best is not None:
        net.load_state_dict(best[2])
        log(f"kept the parameters of step {best[1]} (lowest validation cross entropy, {best[0]:.3f})")
    net.eval()
    return net, history


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: load the data, train, write the safetensors."""
    from safetensors.numpy import save_file

    from avfc.avcc.tokens import fields_array
    from avfc.train.audio_ctx import file_tokens, media_files
    from avfc.train.avcc_data import load_clips, split_clips

    ap = argparse.ArgumentParser(prog="python -m avfc.train.avcc_conceal", description=__doc__.split("\n")[0])
    add_common_arguments(ap, "conceal", steps=1500, dropout=0.3)
    ap.add_argument("--speech", nargs="*", default=["/work/shared/data/speech"],
                    help="folders of speech without video, as audio-only windows (never speech-eval)")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--time-limit", type=float, default=15.0, help="stop after this many minutes")
    add_size_arguments(ap, DEFAULT_META)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = load_clips(args.data, args.model, precision=args.precision, hysteresis=args.hysteresis)
    train_clips, val_clips = split_clips(clips, args.val_clips)
    speech = [fields_array(file_tokens(p)) for p in media_files([Path(f) for f in args.speech])] if args.speech else []
    meta = DiffusionMeta(channels=int(clips[0].q.shape[1]), kp_dim=2, **{k: getattr(args, k) for k in DEFAULT_META})
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, dropout=args.dropout, seed=args.seed,
                      weight_decay=args.weight_decay,
                      time_limit_s=args.time_limit * 60)
    print(f"train: {len(train_clips)} clips, {sum(c.num_frames for c in train_clips)} frames, "
          f"{sum(len(s) for s in speech)} speech-only frames; validation: {[c.name for c in val_clips]}", flush=True)
    net, _ = train(train_clips, val_clips, speech, meta, cfg, log=lambda s: print(s, flush=True))
    arrays = net.export()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(args.out))
    JointConcealer.from_arrays(arrays)
    print(f"wrote {args.out}: {len(arrays)} arrays, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
