"""Instance-adaptive decoder parameters (format 2.2, DECODER_PARAMS): the encoder's fit.

The encoder has the source; after a pass has chosen what it sends (key pictures, motion), it fits the
model's adaptable set (:meth:`avfc.models.base.AnimationModel.adaptable`, a few hundred affine terms of
the generator's last layers) to this stream: a few Adam steps on the L1 distance between the decoder's
render and the source over a subset of the frames, drawn exactly as the decoder draws them (the pass's
bytes are decoded with the stream's own :class:`~avfc.codec.decoder.Decoder`, which hands over the
references and keypoints of every frame it draws). The deltas are then put on the unit's grid
(``q * 2^-shift``) and kept only when the render of the quantized model, the one the decoder will have,
is closer to the source on those frames than the zoo's. The next pass sends them in a DECODER_PARAMS unit
(its bytes count in the rate) and makes every closed-loop choice with the adapted model
(:class:`~avfc.codec.encoder.Encoder`, ``decoder_params``). docs/bitstream.md A.15 and E.9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from avfc.bitstream.payloads import MAX_DECODER_PARAM, MAX_DECODER_PARAM_SHIFT
from avfc.codec.common import frames_to_tensor
from avfc.codec.search import _resize, scaled_model
from avfc.errors import ConfigError
from avfc.models.base import AnimationModel, Reference, trainable_adaptation

#: frames of the stream the fit looks at (evenly spread over it)
ADAPT_FRAMES = 16
#: Adam steps of the fit
ADAPT_STEPS = 20
#: the fit draws at ``size // ADAPT_SCALE`` (as the motion search does: the models are fully convolutional);
#: the choice to send them is made at full size, with the decoder's own render
ADAPT_SCALE = 2
#: Adam's learning rate (deltas are affine terms of order 0.01-1)
ADAPT_LR = 0.01
#: the grid of the sent deltas: ``q * 2^-ADAPT_SHIFT``
ADAPT_SHIFT = 7
#: frames drawn per forward pass of the fit
ADAPT_BATCH = 8
#: weight of an L1 penalty on the deltas (in units of the mean absolute error in [0, 1] per unit of delta):
#: small deltas cost fewer bits and stay near the trained model
ADAPT_DECAY = 1e-4


@dataclass(frozen=True)
class DecoderParamSet:
    """The quantized deltas of a model's adaptable set: ``values[i] * 2^-shift``, set 1."""

    shift: int
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.shift <= MAX_DECODER_PARAM_SHIFT:
            raise ConfigError(f"decoder parameter shift {self.shift} is outside 0..{MAX_DECODER_PARAM_SHIFT}")
        if any(abs(int(v)) > MAX_DECODER_PARAM for v in self.values):
            raise ConfigError(f"decoder parameter values exceed {MAX_DECODER_PARAM} in magnitude")

    def deltas(self) -> np.ndarray:
        """The deltas as the decoder computes them (float64; exact, the step is a power of two)."""
        return np.asarray(self.values, dtype=np.float64) * 2.0 ** -self.shift


@dataclass
class AdaptResult:
    """What :func:`fit_decoder_params` found: the set to send (None: the zoo's model draws these frames at
    least as well), and the mean absolute error (8-bit levels) on the fit's frames with and without it."""

    params: Optional[DecoderParamSet]
    frames: int
    error_before: float
    error_after: float


def trace_draws(model: AnimationModel, data: bytes, device: str | torch.device = "cpu"
                ) -> list[tuple[int, list[Reference], torch.Tensor]]:
    """Decode ``data`` (the bytes of a pass) and return, for every frame the decoder would draw with the
    model, ``(frame index, references, keypoints (1, C))`` exactly as it would draw it (key frames of a
    ``render_keys`` model included); nothing is drawn (key pictures are decoded and references prepared).
    ``model``: the stream's model (the zoo's, not adapted)."""
    from avfc.codec.decoder import Decoder

    dec = Decoder(model=model, device=device)
    draws: list[tuple[int, list[Reference], torch.Tensor]] = []
    dec._trace = lambda idx, refs, kp: draws.append((idx, list(refs), kp.detach().clone()))
    dec.push(data)
    dec.close()
    return draws


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices evenly spread over ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [n // 2]


def _render_error(model: AnimationModel, draws: list[tuple[int, list[Reference], torch.Tensor]],
                  frames: np.ndarray) -> float:
    """Mean absolute error in 8-bit levels of the decoder's render (``model.render``) on ``draws``."""
    from avfc.codec.common import tensor_to_frames

    err = 0.0
    with torch.no_grad():
        for idx, refs, kp in draws:
            out = tensor_to_frames(model.render(refs, kp, idx).cpu())[0]
            err += float(np.mean(np.abs(out.astype(np.float64) - frames[idx].astype(np.float64))))
    return err / max(len(draws), 1)


def fit_decoder_params(model: AnimationModel, data: bytes, frames: np.ndarray, *, max_frames: int = ADAPT_FRAMES,
                       steps: int = ADAPT_STEPS, lr: float = ADAPT_LR, shift: int = ADAPT_SHIFT,
                       batch: int = ADAPT_BATCH, decay: float = ADAPT_DECAY, scale: int = ADAPT_SCALE,
                       device: str | torch.device = "cpu") -> AdaptResult:
    """Fit ``model``'s adaptable set to the stream ``data`` coded from ``frames`` (uint8 ``(N, S, S, 3)``, the
    coded-size source). See the module docstring. The zoo's model object is not changed."""
    n = model.adapt_size()
    draws = trace_draws(model, data, device)
    draws = [d for d in draws if d[0] < len(frames)]
    if n == 0 or not draws:
        return AdaptResult(None, len(draws), 0.0, 0.0)
    picked = [draws[i] for i in _pick(len(draws), max_frames)]
    size = max(64, model.size // max(int(scale), 1))
    small = scaled_model(model, size) if size != model.size else model
    small_refs: dict[int, Reference] = {}

    def at_size(refs: list[Reference]) -> list[Reference]:
        if small is model:
            return refs
        out = []
        for r in refs:
            if id(r) not in small_refs:
                s = Reference(r.frame_index, _resize(r.frame, size), r.keypoints)
                s.state = small.prepare_reference(s)
                small_refs[id(r)] = s
            out.append(small_refs[id(r)])
        return out

    fit, delta = trainable_adaptation(small)
    opt = torch.optim.Adam([delta], lr=lr)
    # frames drawn from the same references go through the model together
    groups: dict[tuple[int, ...], list[tuple[int, list[Reference], torch.Tensor]]] = {}
    for d in picked:
        groups.setdefault(tuple(id(r) for r in d[1]), []).append(d)
    batches = []
    for g in groups.values():
        for i in range(0, len(g), batch):
            part = g[i:i + batch]
            target = _resize(frames_to_tensor(np.stack([frames[idx] for idx, _, _ in part])).to(device), size)
            batches.append((at_size(part[0][1]), torch.cat([kp for _, _, kp in part]), [idx for idx, _, _ in part],
                            target))
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            for refs, kp, idxs, target in batches:
                out = fit.draw(refs, kp, idxs)
                loss = (out - target).abs().mean() * (len(idxs) / len(picked))
                loss.backward()
            if decay:
                (decay * delta.abs().sum()).backward()
            opt.step()
    q = np.clip(np.rint(delta.detach().cpu().numpy().astype(np.float64) * 2.0 ** shift),
                -MAX_DECODER_PARAM, MAX_DECODER_PARAM).astype(np.int64)
    params = DecoderParamSet(shift, tuple(int(v) for v in q))
    before = _render_error(model, picked, frames)
    after = _render_error(model.adapted(params.deltas()), picked, frames) if q.any() else before
    return AdaptResult(params if after < before else None, len(picked), before, after)
