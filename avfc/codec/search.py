"""Encoder-side search: the motion that makes the decoder draw the source best.

The decoder draws every frame from its decoded references and the transmitted keypoints. The
encoder has the same references (closed loop) *and* the source frame, so instead of sending what
the keypoint detector says it can search for the integers that make the decoder's render closest to
the source, as conventional encoders search motion vectors against their own reconstruction
(analysis by synthesis). Nothing here changes the format or the decoder: any avfc 0.2 reader decodes
the result.

Per motion packet, :class:`MotionSearch`:

1. starts from the detector's keypoints (or from what an earlier rate-control pass found for these
   frames, or from the detector plus the correction found for the frames before);
2. runs a few Adam steps on a correction of the detector's keypoints for the frames the packet codes
   (every frame, or every ``stride``-th with the decoder's interpolation in between; the correction
   is linear between knots, so it cannot jitter) to lower ``D + lambda * R``: ``D`` the distortion of
   the decoder's render against the source (L1 in 8-bit levels, the mouth weighted, summed over the
   frames the decoder draws with that motion: key frames show their picture; plus a flicker term, the
   render's frame-to-frame change against the source's; optionally a perceptual term the caller
   injects, :data:`PerceptualTerm`, e.g. LPIPS from weights by path, and a mouth-motion term),
   ``R`` a differentiable proxy of the motion coder's bits (the slope of
   each value's Laplace table, from the coder's own backward adaptation, times a smoothed
   ``|residual|``). The render is the model's own, through the same references with their
   temporal weights, optionally at a reduced size for speed (the model is fully convolutional and
   keypoints are in normalised coordinates);
3. puts the result back on the grid in a few ways (plain rounding and dead zones around the
   previous coded value), and chooses among those, the detector's keypoints and (with
   ``motion_hold``) the reference's keypoints held still, by the exact cost: the exact bits of the
   packet as the motion coder writes it and the distortion of the render of the integers the decoder
   will really draw (after sparse interpolation). In a later rate-control pass (efforts that choose
   again) what the packet sent before, moved as its references' keypoints moved, is a candidate too,
   and warm steps start at the cold schedule's last step size: they refine, they do not jump away.

The detector's keypoints are always a candidate, so the chosen packet never costs more than they do
under the search's cost. Each choice reports its distortion (:attr:`PacketChoice.distortion`): the
whole-file rate control keeps the pass within the budget that the decoder draws best by it. Effort
presets (:data:`EFFORTS`) set the steps and render sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from avfc.codec.common import frames_to_tensor, references_for
from avfc.config import SEARCH_LAMBDA_5KBPS, SEARCH_PERCEPTUAL_WEIGHT
from avfc.entropy import dequantize, interpolate_track, quantize_track, sparse_positions
from avfc.entropy.motion import next_states
from avfc.entropy.tables import DECAY_Q16, INITIAL_STATE_Q12, SCALE_THRESHOLDS_Q12, STATE_FRAC_BITS
from avfc.errors import ConfigError
from avfc.models.base import AnimationModel, Reference
from avfc.models.zoo import build_model

#: the mouth box as fractions of the coded picture (top, bottom, left, right): the lower middle third,
#: the box the benchmark's mouth-motion metric uses (avfc.eval.mouth.DEFAULT_MOUTH_BOX)
MOUTH_BOX = (2.0 / 3.0, 1.0, 1.0 / 3.0, 2.0 / 3.0)


@dataclass(frozen=True)
class Effort:
    """One effort preset of the encoder.

    ``search``: whether the motion is searched at all; ``hold``: whether the closed-loop hold may run
    (the ``motion_hold`` setting decides whether it does); ``steps``: gradient steps per packet from
    the detector; ``warm_steps``: steps when an earlier rate-control pass already searched the
    packet's frames; ``scale``: the search renders at ``size // scale``; ``choice_scale``: the final
    choice renders at ``size // choice_scale`` (1: exactly the decoder's render); ``lr``: Adam's step
    in grid units; ``rechoose``: whether every rate-control pass renders the candidates again (else a
    pass whose key pictures changed keeps the kind of candidate an earlier pass chose for the packet,
    rebuilt from its own references); ``knot_every``: the search moves the detector's rows by a
    correction that is linear between every ``knot_every``-th coded row (1: every row free), so the
    detector's own motion stays and the correction cannot jitter; ``perceptual_scale``: the search
    renders at ``size // perceptual_scale`` instead when it has a perceptual term (LPIPS on a 64-px
    render guides it poorly: docs/experiments/2026-12-06-search-perceptual.md). ``place_key``: when
    ``avfc.encode`` has the whole input at hand and the stream has one key frame, it is placed at
    :func:`place_key`'s frame instead of frame 0 (``EncoderConfig.first_key``).
    """

    name: str
    search: bool = False
    hold: bool = True
    steps: int = 0
    warm_steps: int = 0
    scale: int = 2
    choice_scale: int = 2
    lr: float = 1.0
    rechoose: bool = True
    knot_every: int = 1
    perceptual_scale: int = 2
    key_speed: Optional[int] = None
    key_near: bool = False
    place_key: bool = False


#: SVT-AV1 speed preset of the ``live`` effort's key pictures: about 10x faster than preset 0 at 256x256 (on one
#: face crop at qp 30-55: -1 to +5 % bytes, 0.2-0.7 dB lower PSNR; docs/results.md, "Live: latency of a call")
LIVE_KEY_SPEED = 4

#: the effort presets, fastest first. ``live``: the detector's keypoints, no second render (real time);
#: ``detector``: the detector with the closed-loop hold (avfc 0.2's encoder, byte for byte); then
#: searches of growing effort (speed and quality measured in docs/results.md).
EFFORTS: dict[str, Effort] = {e.name: e for e in (
    Effort("live", hold=False, key_speed=LIVE_KEY_SPEED, key_near=True),
    Effort("detector"),
    Effort("fast", search=True, steps=9, warm_steps=0, scale=4, choice_scale=2, lr=2.0, rechoose=False,
           knot_every=5, place_key=True),
    Effort("medium", search=True, steps=24, warm_steps=4, scale=4, choice_scale=2, lr=2.0, knot_every=3,
           place_key=True),
    Effort("slow", search=True, steps=40, warm_steps=8, scale=2, choice_scale=1, lr=1.5, knot_every=2,
           place_key=True),
    Effort("placebo", search=True, steps=80, warm_steps=16, scale=1, choice_scale=1, lr=1.0, knot_every=1,
           perceptual_scale=1, place_key=True),
)}

#: the search's lambda at 5 kbps (levels of mean absolute error of 8-bit RGB, summed over the drawn frames,
#: per bit); it scales as 5 / kbps with the rate target (bits are dearer at lower rates)
LAMBDA_5KBPS = SEARCH_LAMBDA_5KBPS

#: extra weight of the mouth box in the distortion (1 + this inside the box, normalised to mean 1)
MOUTH_WEIGHT = 1.0

#: weight of the temporal term (flicker: the render's frame-to-frame change against the source's)
TEMPORAL_WEIGHT = 1.0

#: Adam's step of a warm start (an earlier pass searched the packet's frames) as a share of the effort's ``lr``
WARM_LR_SCALE = 0.25

#: dead zones (grid steps beyond half a step) tried when the searched keypoints are put on the grid
ROUNDINGS = (0.0, 0.3, 0.6)
#: the exact choice renders a packet's frames this many at a time (no gradient: the same distortion as one batch):
#: on an 8-s 512x512 clip at `fast` the encoder's peak memory 1.03 -> 0.90 GB, the same file byte for byte
CHOICE_CHUNK = 5
#: the search differentiates its renders this many frames at a time, the graphs of two such pieces held and not a whole
#: packet's (the same gradient, to float rounding): at `fast` the encoder's peak on a 30-s 256x256 clip in one pass
#: 1.23 -> 0.83 GB, on a 4-s av-eval clip 1.00-1.05 -> 0.76 GB; encode time within this CPU's run-to-run spread
SEARCH_CHUNK = 5

#: the differentiable rate proxy smooths |r| as sqrt(r^2 + RATE_EPS^2)
RATE_EPS = 0.5

#: an optional perceptual distance the search adds to its distortion: ``term(render, source)`` on float
#: ``(B, 3, H, W)`` tensors in [0, 1] gives ``(B,)``, differentiable in ``render`` (lower is closer). The
#: codec ships no such weights: the caller builds it (``avfc.eval.perceptual.search_term`` makes LPIPS or
#: DISTS from weights given by path; the CLI's ``--search-weights``) and injects it
PerceptualTerm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: weight of the perceptual term: 8-bit levels of (weighted) mean absolute error per unit of the term
PERCEPTUAL_WEIGHT = SEARCH_PERCEPTUAL_WEIGHT

#: the perceptual term sees the render and the source resized to this side (None: the render's own size: the
#: search's, ``size // Effort.perceptual_scale``, and the choice's, ``size // Effort.choice_scale``)
PERCEPTUAL_SIZE: Optional[int] = None

#: luma weights (BT.709) of the mouth-motion term, as avfc.eval.mouth's metric
_BT709 = (0.2126, 0.7152, 0.0722)


def place_key(q: np.ndarray, limit: Optional[int] = None) -> int:
    """Where the key frame of a clip drawn from one key frame goes: the frame whose keypoints are closest to all
    the others' (the medoid: the least sum of L1 distances between its row of quantized keypoints and every
    other row of ``q``, ``(N, C)`` integers; the earliest of equals), so that the model draws the clip with the
    least motion from it. Frame 0 is often far from it (a speaker turns, the mouth is open): measured on
    av-eval at equal key picture, the medoid's render is 2.2 dB, 0.047 LPIPS and 0.015 DISTS closer to the
    source than frame 0's on average (docs/results.md).

    ``limit``: the latest frame it may pick (the frames before the key frame wait for it). Exact integer
    arithmetic: the same frame on every machine."""
    q = np.asarray(q, dtype=np.int64)
    if q.ndim != 2:
        raise ConfigError(f"place_key takes keypoint rows (N, C), got shape {q.shape}")
    n = len(q)
    if n <= 1:
        return 0
    total = np.zeros(n, dtype=np.int64)
    for x in q.T:  # per channel, sum_j |x_i - x_j| from the sorted values and their prefix sums
        s = np.sort(x)
        cs = np.concatenate([[0], np.cumsum(s)])
        lo, hi = np.searchsorted(s, x, "left"), np.searchsorted(s, x, "right")
        total += x * lo - cs[lo] + (cs[n] - cs[hi]) - x * (n - hi)
    last = n if limit is None else max(0, min(n, int(limit) + 1))
    return int(np.argmin(total[:last])) if last else 0


def lambda_for_rate(kbps: Optional[float]) -> float:
    """The search's lambda for a whole-file rate target (``LAMBDA_5KBPS`` without one)."""
    return LAMBDA_5KBPS if kbps is None else LAMBDA_5KBPS * 5.0 / float(kbps)


def _decay_bits() -> np.ndarray:
    """Bits per unit of |residual| of each Laplace table: -log2(theta_j)."""
    theta = np.asarray(DECAY_Q16, dtype=np.float64) / 65536.0
    return -np.log2(theta)


_SLOPE = _decay_bits()


def rate_slopes(rows: np.ndarray, prev: Optional[np.ndarray]) -> np.ndarray:
    """Bits per unit |residual| of every residual of a track of coded rows ``(K, C)``, following the
    motion coder's backward adaptation on the rows themselves (the first residual is row 1 minus row
    0, or row 0 minus ``prev``; an INTRA packet's row 0 is coded absolutely and gets slope 0).

    Returns ``(K, C)``: the slope of the table each residual is coded with."""
    rows = np.asarray(rows, dtype=np.int64)
    k, c = rows.shape
    out = np.zeros((k, c), dtype=np.float64)
    start = 0 if prev is not None else 1
    res = np.diff(np.vstack([prev[None].astype(np.int64), rows]) if prev is not None else rows, axis=0)
    # the coder's k0 choice is the best initial state; start from the typical one of the residuals
    mean = np.mean(np.abs(res)) if res.size else 0.0
    j0 = int(np.searchsorted(np.asarray(INITIAL_STATE_Q12), mean * (1 << STATE_FRAC_BITS)))
    states = np.full(c, INITIAL_STATE_Q12[min(j0, len(INITIAL_STATE_Q12) - 1)], dtype=np.int64)
    thresholds = np.asarray(SCALE_THRESHOLDS_Q12, dtype=np.int64)
    for t, r in enumerate(res):
        out[start + t] = _SLOPE[np.searchsorted(thresholds, states, side="right")]
        states = next_states(states, r)
    return out


def interpolation_matrix(num_frames: int, stride: int) -> np.ndarray:
    """``(T, K)``: the decoder's sparse interpolation (:func:`avfc.entropy.interpolate_track`) as a
    linear map from the ``K`` coded rows to the ``T`` frames, before its rounding."""
    pos = sparse_positions(num_frames, stride)
    m = np.zeros((num_frames, len(pos)), dtype=np.float64)
    for k, a in enumerate(pos):
        m[a, k] = 1.0
        if k + 1 < len(pos):
            b = pos[k + 1]
            for j in range(a + 1, b):
                f = (j - a) / (b - a)
                m[j, k], m[j, k + 1] = 1.0 - f, f
    return m


def _ref_shift(then: Optional[np.ndarray], now: np.ndarray, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """How far the references' keypoints moved (``now - then``, grid units) for values of ``shape`` found or sent
    against ``then``; None when there is nothing to move by (no references then or now)."""
    if then is None or then.shape != shape or now.shape != shape:
        return None
    return now - then


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def mouth_weights(size: int, mouth_weight: float = MOUTH_WEIGHT) -> torch.Tensor:
    """``(1, 1, size, size)`` weights of the search's distortion: 1, plus ``mouth_weight`` inside
    :data:`MOUTH_BOX`, normalised to mean 1."""
    w = torch.ones(1, 1, size, size)
    t, b, lft, r = MOUTH_BOX
    w[..., int(t * size):int(b * size), int(lft * size):int(r * size)] += mouth_weight
    return w / w.mean()


def _mouth_energy_gap(out: torch.Tensor, src: torch.Tensor, nxt: Sequence[int]) -> torch.Tensor:
    """Sum over the frame pairs ``(i - 1, i)`` for ``i`` in ``nxt`` of |E_render - E_source|, E the mean
    |luma change| inside the mouth box (luma in [0, 1])."""
    size = out.shape[-1]
    t, b, lft, r = MOUTH_BOX
    rows, cols = slice(int(t * size), int(b * size)), slice(int(lft * size), int(r * size))
    luma = torch.tensor(_BT709, dtype=out.dtype, device=out.device).view(1, 3, 1, 1)
    i = torch.tensor(list(nxt), dtype=torch.long, device=out.device)

    def energy(x: torch.Tensor) -> torch.Tensor:
        y = (x[:, :, rows, cols] * luma).sum(dim=1)
        return (y[i] - y[i - 1]).abs().mean(dim=(1, 2))

    return (energy(out) - energy(src)).abs().sum()


def scaled_model(model: AnimationModel, size: int, device: Optional[torch.device] = None) -> AnimationModel:
    """The same weights at another frame size (the architectures are fully convolutional), on
    ``device`` (default: the model's)."""
    here = next(iter(model.parameters()), torch.empty(0)).device
    device = here if device is None else torch.device(device)
    if size == model.size and device == here:
        return model
    cfg = dict(model.config_dict())
    cfg["size"] = int(size)
    small = build_model(model.arch, cfg)
    small.load_state_dict(model.state_dict(), strict=True)
    small.eval()
    for p in small.parameters():
        p.requires_grad_(False)
    return small.to(device)


class _Adam:
    """Adam on one tensor with the step shrinking linearly to a quarter of ``lr`` over ``steps`` steps:
    ``torch.optim.Adam`` (betas 0.9 / 0.999, eps 1e-8) under ``LambdaLR(1 - 0.75 t / (steps - 1))``, the same
    single-tensor arithmetic in the same order (tests/codec/test_search.py compares the two bit for bit).

    Written out because constructing any ``torch.optim`` optimizer first imports ``torch._dynamo`` (about 1 s on the
    2-core CPU, once per process), and a whole ``avfc encode`` of a 4.8-s clip takes about 19 s; the search updates
    one small tensor.
    """

    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, param: torch.Tensor, lr: float, steps: int) -> None:
        self.param, self.lr, self.steps = param, float(lr), int(steps)
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.t = 0

    def step(self, grad: torch.Tensor) -> None:
        lr = self.lr * (1.0 - 0.75 * self.t / max(self.steps - 1, 1))
        self.t += 1
        with torch.no_grad():
            self.exp_avg.lerp_(grad, 1 - self.BETA1)
            self.exp_avg_sq.mul_(self.BETA2).addcmul_(grad, grad, value=1 - self.BETA2)
            bias_correction1 = 1 - self.BETA1 ** float(self.t)
            bias_correction2 = 1 - self.BETA2 ** float(self.t)
            denom = (self.exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(self.EPS)
            self.param.addcdiv_(self.exp_avg, denom, value=-(lr / bias_correction1))


@dataclass
class PacketChoice:
    """What :meth:`MotionSearch.choose` chose for one packet, and its costs."""

    q: np.ndarray  # (T, C) int32 rows to send (for sparse packets the coded positions matter)
    kind: str  # "detector", "hold" or "search"
    cost: float  # D + lambda * R of the choice
    detector_cost: float  # the same for the detector's keypoints
    bits: int
    #: D of the choice alone (the hold's without its margin): how close the decoder draws the packet's frames
    #: to the source; nan when nothing was rendered (a reused or bound choice)
    distortion: float = float("nan")


class MotionSearch:
    """The motion search of one stream, shared by the rate control's passes (it remembers what it
    found per frame, so a later pass with other key pictures starts from there).

    Args:
        model: the stream's animation model (the decoder's).
        effort: an :class:`Effort` that searches.
        precision: the keypoint grid's fractional bits.
        lam: lambda, in levels (mean absolute error of 8-bit RGB, summed over frames) per bit.
        mouth_weight: extra weight of the mouth box in the distortion.
        temporal_weight: weight of the flicker term in the distortion.
        device: where the search renders (default: the model's device; a GPU when one is given).
            The chosen integers are the same kind of data either way; the choice itself may differ
            in the last bits of a float between devices.
        keep_found: remember what was found for every frame (the rate control's passes over one
            file need it); False forgets frames before the packet being searched, so that a
            streaming encoder's state stays bounded.
        perceptual: an optional :data:`PerceptualTerm` added to the distortion, ``perceptual_weight``
            levels per unit, on the render and the source resized to ``perceptual_size`` (None: the
            render's size). None (default): the search is exactly the one without it.
        mouth_motion_weight: weight of a mouth-motion term: per pair of consecutive drawn frames,
            |mean |luma change| of the render - that of the source| inside the mouth box, in levels
            (the energy the benchmark's ``mouth_motion_corr`` correlates). 0: off.
    """

    def __init__(self, model: AnimationModel, effort: Effort, precision: int, lam: float,
                 mouth_weight: float = MOUTH_WEIGHT, temporal_weight: float = TEMPORAL_WEIGHT,
                 device: Optional[str | torch.device] = None, keep_found: bool = False,
                 perceptual: Optional[PerceptualTerm] = None, perceptual_weight: float = PERCEPTUAL_WEIGHT,
                 perceptual_size: Optional[int] = PERCEPTUAL_SIZE, mouth_motion_weight: float = 0.0) -> None:
        if not effort.search:
            raise ConfigError(f"effort {effort.name!r} does not search")
        if perceptual is not None and not callable(perceptual):
            raise ConfigError(f"the search's perceptual term must be callable, got {type(perceptual).__name__}")
        if not (np.isfinite(perceptual_weight) and perceptual_weight >= 0.0):
            raise ConfigError(f"the perceptual term's weight must be finite and >= 0, got {perceptual_weight}")
        if perceptual_size is not None and not 32 <= int(perceptual_size) <= 1024:
            raise ConfigError(f"perceptual_size must be 32..1024 pixels, got {perceptual_size}")
        if not (np.isfinite(mouth_motion_weight) and mouth_motion_weight >= 0.0):
            raise ConfigError(f"mouth_motion_weight must be finite and >= 0, got {mouth_motion_weight}")
        self.model = model
        self.effort = effort
        self.precision = int(precision)
        self.lam = float(lam)
        self.mouth_weight = float(mouth_weight)
        self.temporal_weight = float(temporal_weight)
        self.perceptual = perceptual if perceptual is not None and perceptual_weight > 0.0 else None
        self.perceptual_weight = float(perceptual_weight)
        self.perceptual_size = None if perceptual_size is None else int(perceptual_size)
        self.mouth_motion_weight = float(mouth_motion_weight)
        here = next(iter(model.parameters()), torch.empty(0)).device
        self.device = here if device is None else torch.device(device)
        self.keep_found = bool(keep_found)
        self._models: dict[int, AnimationModel] = {}
        self._small_refs: dict[tuple[int, int], tuple[Reference, Reference]] = {}
        self._weights: dict[int, torch.Tensor] = {}
        #: continuous keypoints (grid units) last found per frame index, and the keypoints (grid units) of the
        #: references the frame was drawn from then: a later pass whose key pictures differ (the rate control's)
        #: has references whose detected keypoints moved, and starts from what was found moved with them
        self.found: dict[int, np.ndarray] = {}
        self._found_refs: dict[int, np.ndarray] = {}
        self._offset: Optional[np.ndarray] = None  # last correction over the detector, for the next packet
        # packet -> (kind, rounding, rows sent, their references' keypoints per frame)
        self._chosen: dict[tuple[int, int, int, bool], tuple[str, float, np.ndarray, np.ndarray]] = {}
        self.packets = 0
        self.choices: dict[str, int] = {}

    # ------------------------------------------------------------------ pieces
    def _model(self, scale: int) -> AnimationModel:
        size = max(64, self.model.size // scale)
        if size not in self._models:
            self._models[size] = scaled_model(self.model, size, self.device)
        return self._models[size]

    @torch.no_grad()
    def _ref(self, ref: Reference, model: AnimationModel) -> Reference:
        """``ref`` at ``model``'s size (its state prepared), cached while the ref object lives."""
        if model is self.model:
            if ref.state is None:
                ref.state = model.prepare_reference(ref)
            return ref
        key = (id(ref), model.size)
        hit = self._small_refs.get(key)
        if hit is not None and hit[0] is ref:
            return hit[1]
        small = Reference(ref.frame_index, _resize(ref.frame.to(self.device), model.size),
                          ref.keypoints.to(self.device))
        small.state = model.prepare_reference(small)
        self._small_refs[key] = (ref, small)
        return small

    def _ref_keypoints(self, refs: list[Reference], index: int, bidirectional: bool) -> np.ndarray:
        """The mean keypoints (grid units) of the references frame ``index`` is drawn from."""
        rs = references_for(refs, index, bidirectional)
        if not rs:
            return np.zeros(0)
        kp = np.stack([r.keypoints.detach().cpu().numpy().astype(np.float64).reshape(-1) for r in rs])
        return kp.mean(axis=0) * 2.0 ** self.precision

    def _warm(self, index: int, ref_kp: np.ndarray) -> np.ndarray:
        """What was found for frame ``index``, moved as its references' keypoints moved since (the model draws
        the motion of the sent keypoints relative to the references'; a re-coded key picture's detected
        keypoints move with its coding noise, and keypoints found against the old ones would misdraw)."""
        x = self.found[index]
        shift = _ref_shift(self._found_refs.get(index), ref_kp, x.shape)
        return x if shift is None else x + shift

    def _pixel_weights(self, size: int) -> torch.Tensor:
        if size not in self._weights:
            self._weights[size] = mouth_weights(size, self.mouth_weight).to(self.device)
        return self._weights[size]

    def _groups(self, refs: list[Reference], indices: Sequence[int], bidirectional: bool
                ) -> list[tuple[list[Reference], list[int]]]:
        """Drawn frames grouped by the references the decoder draws them from (positions in ``indices``)."""
        groups: dict[tuple[int, ...], tuple[list[Reference], list[int]]] = {}
        for pos, idx in enumerate(indices):
            rs = references_for(refs, idx, bidirectional)
            groups.setdefault(tuple(id(r) for r in rs), (rs, []))[1].append(pos)
        return list(groups.values())

    def _perceptual_source(self, src_full: torch.Tensor, size: int) -> Optional[torch.Tensor]:
        """The source as the perceptual term sees it (None without one): resized from the coded size."""
        if self.perceptual is None:
            return None
        return _resize(src_full, self.perceptual_size or size)

    @staticmethod
    def _parts(groups, n: int, chunk: int) -> list[tuple[int, list[int]]]:
        """The drawn frames' positions ``0..n-1`` cut into runs drawn from one reference group, each run into
        pieces of at most ``chunk`` positions (0: whole runs): ``(group, positions)`` in position order."""
        owner = [0] * n
        for g, (_, pos) in enumerate(groups):
            for p in pos:
                owner[p] = g
        parts: list[tuple[int, list[int]]] = []
        for p in range(n):
            if parts and owner[p] == parts[-1][0] and p == parts[-1][1][-1] + 1 and (
                    chunk <= 0 or len(parts[-1][1]) < chunk):
                parts[-1][1].append(p)
            else:
                parts.append((owner[p], [p]))
        return parts

    def _draw_part(self, model: AnimationModel, groups, indices: Sequence[int], kp: torch.Tensor,
                   part: tuple[int, list[int]]) -> torch.Tensor:
        """The render, clamped to [0, 1], of the positions of one of :meth:`_parts` from keypoints ``kp`` (its rows)."""
        small = [self._ref(r, model) for r in groups[part[0]][0]]
        return model.draw(small, kp, [indices[p] for p in part[1]], folded=True).clamp(0.0, 1.0)

    def _terms(self, out: torch.Tensor, src: torch.Tensor, src_p: Optional[torch.Tensor],
               indices: Sequence[int], own: int = 0) -> torch.Tensor:
        """The distortion of renders ``out`` of consecutive drawn frames (frame numbers ``indices``) against
        ``src`` (and ``src_p``, the source at the perceptual term's size): the per-frame terms of rows ``own``
        and after, the terms of every pair of consecutive frames among the rows (a row before ``own`` is the
        end of the previous piece: only its pair with the next counts here)."""
        w = self._pixel_weights(out.shape[-1])
        total = ((out[own:] - src[own:]).abs() * w).mean(dim=(1, 2, 3)).sum() * 255.0
        nxt: torch.Tensor | list[int]  # the frames that follow their predecessor: a tensor, then a list
        if self.temporal_weight and len(indices) > 1:
            nxt = torch.tensor([i for i in range(1, len(indices)) if indices[i] == indices[i - 1] + 1],
                               dtype=torch.long)
            if len(nxt):
                change = (out[nxt] - out[nxt - 1]) - (src[nxt] - src[nxt - 1])
                total = total + self.temporal_weight * change.abs().mean(dim=(1, 2, 3)).sum() * 255.0
        if self.perceptual is not None and src_p is not None:
            total = total + self.perceptual_weight * self.perceptual(_resize(out[own:], src_p.shape[-1]),
                                                                     src_p[own:]).sum()
        if self.mouth_motion_weight and len(indices) > 1:
            nxt = [i for i in range(1, len(indices)) if indices[i] == indices[i - 1] + 1]
            if nxt:
                total = total + self.mouth_motion_weight * _mouth_energy_gap(out, src, nxt) * 255.0
        return total

    def _distortion(self, model: AnimationModel, groups, indices: Sequence[int], kp: torch.Tensor,
                    src: torch.Tensor, src_p: Optional[torch.Tensor] = None, chunk: int = 0) -> torch.Tensor:
        """Sum over the drawn frames of the weighted mean |render - source|, plus ``temporal_weight``
        times the mean |change of the render - change of the source| between consecutive drawn
        frames (flicker), all in 8-bit levels; plus the perceptual term of the render against
        ``src_p`` (the source at the term's size) and the mouth-motion term, when the search has them.
        ``chunk``: render at most this many frames at once (0: each run of frames drawn from one reference group
        at once)."""
        parts = self._parts(groups, len(indices), chunk)
        outs = [self._draw_part(model, groups, indices, kp[part[1]], part) for part in parts]
        return self._terms(torch.cat(outs) if len(outs) > 1 else outs[0], src, src_p, indices)

    def _distortion_grad(self, model: AnimationModel, groups, indices: Sequence[int], kp: torch.Tensor,
                         src: torch.Tensor, src_p: Optional[torch.Tensor], chunk: int) -> torch.Tensor:
        """The gradient of :meth:`_distortion` in ``kp`` (detached rows ``(N, C)``), rendering ``chunk`` frames
        at a time: a piece's render is differentiated once the next piece is drawn (the flicker and mouth
        terms join the two), so the graphs of at most two pieces are held, not the packet's."""
        grad = torch.zeros_like(kp)

        def finish(piece: tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
            """The piece's render has all its gradient: carry it back to the piece's rows."""
            pos, rows, out, leaf = piece
            out.backward(leaf.grad)
            assert rows.grad is not None
            grad[pos] = rows.grad

        held = None  # the previous piece: its positions, rows, render (with its graph) and the render's leaf
        for part in self._parts(groups, len(indices), chunk):
            pos = part[1]
            rows = kp[pos].requires_grad_(True)  # (indexing by a list copies)
            out = self._draw_part(model, groups, indices, rows, part)
            leaf = out.detach().requires_grad_(True)
            if held is not None and held[0][-1] == pos[0] - 1:
                block, own = torch.cat([held[3][-1:], leaf]), 1
                span = [pos[0] - 1] + pos
            else:
                block, own, span = leaf, 0, pos
            self._terms(block, src[span], None if src_p is None else src_p[span],
                        [indices[p] for p in span], own).backward()
            if held is not None:
                finish(held)
            held = (pos, rows, out, leaf)
        if held is not None:
            finish(held)
        return grad

    # ------------------------------------------------------------------ the search
    def choose(self, first: int, det: np.ndarray, frames: Sequence[np.ndarray], refs: list[Reference],
               *, bidirectional: bool, keys: set[int], stride: int, prev: Optional[np.ndarray],
               bits: Callable[[np.ndarray], int], held: Optional[np.ndarray] = None,
               bound: bool = False, hold_margin: float = 0.0) -> PacketChoice:
        """The rows to send for the packet of frames ``first..first+T-1``.

        Args:
            det: the detector's quantized keypoints ``(T, C)``.
            frames: the packet's source frames at the coded size.
            refs: the decoder's reference buffer when it draws this packet (the encoder's copy).
            bidirectional: whether frames are drawn from references after them too.
            keys: frame indices that are key frames (they show their picture, whatever the motion).
            stride: the packet codes every ``stride``-th row (and its last); the decoder interpolates.
            prev: the last coded row of the previous packet when this packet is predicted from it
                (None for an INTRA packet).
            bits: the exact size in bits of a packet of rows ``(T, C)``, as the motion coder writes it.
            held: the rows of the reference's keypoints held still (a candidate), if the hold may run.
            hold_margin: the hold's distortion counts ``1 / (1 + hold_margin)`` of itself (the
                encoder's ``motion_hold_margin``: larger values hold more packets).
            bound: search nothing and render nothing: send the detector's rows (or the hold's, if it
                costs more bits). The rate control's first pass codes the coarsest key pictures and
                wants the motion's bytes, not a choice; searching against those pictures would start
                the later passes from a poor place.
        """
        eff = self.effort
        det = np.asarray(det, dtype=np.int32)
        live = {id(r) for r in refs}  # references that left the buffer are dropped with their copies
        self._small_refs = {k: v for k, v in self._small_refs.items() if k[0] in live}
        if not self.keep_found:
            self.found = {i: x for i, x in self.found.items() if i >= first}
            self._found_refs = {i: x for i, x in self._found_refs.items() if i >= first}
            self._chosen = {k: v for k, v in self._chosen.items() if k[0] >= first}
        n, c = det.shape
        scale = 2.0 ** self.precision
        pos = sparse_positions(n, stride)
        drawn = [i for i in range(n) if first + i not in keys]

        def exact(q: np.ndarray, d: float) -> tuple[float, int]:
            b = bits(q)
            return d + self.lam * b, b

        # (kind, track) before the search, (kind, rounding, track) after it
        cands: list[tuple[str, np.ndarray]] | list[tuple[str, float, np.ndarray]]
        if not drawn:  # every frame is a key frame: only bits count
            cands = [("detector", det)] + ([("hold", held)] if held is not None else [])
            costs = [exact(q, 0.0) for _, q in cands]
            i = int(np.argmin([cst for cst, _ in costs]))
            return self._done(cands[i][1], cands[i][0], costs[i][0], costs[0][0], costs[i][1], 0.0)

        if bound:  # no search against the first pass's (coarsest) key pictures: the next pass searches
            cands = [("detector", det)] + ([("hold", held)] if held is not None else [])
            nbits = [bits(q) for _, q in cands]
            i = int(np.argmax(nbits))
            return self._done(cands[i][1], cands[i][0], float("nan"), float("nan"), nbits[i])

        indices = [first + i for i in drawn]
        src_full = frames_to_tensor(np.stack([frames[i] for i in drawn])).to(self.device)
        groups = self._groups(refs, indices, bidirectional)

        d: float  # the exact choice's distortion
        # --- continuous search on the coded rows ------------------------------------------------
        known = [first + p in self.found for p in pos]
        ref_kp = {first + i: self._ref_keypoints(refs, first + i, bidirectional) for i in range(n)}
        if all(known):
            x0 = np.stack([self._warm(first + p, ref_kp[first + p]) for p in pos])
            steps = eff.warm_steps
        else:
            off = self._offset if self._offset is not None else np.zeros(c)
            x0 = np.stack([self._warm(first + p, ref_kp[first + p]) if first + p in self.found else det[p] + off
                           for p in pos])
            steps = eff.steps
        interp_full = interpolation_matrix(n, stride)
        interp = torch.from_numpy(interp_full[drawn]).float().to(self.device)
        # the search moves the detector's rows by a correction that is linear between knots (every
        # knot_every-th coded row): the detector's own motion stays, the correction cannot jitter
        knots = interpolation_matrix(len(pos), max(eff.knot_every, 1))
        base = torch.tensor(det[pos], dtype=torch.float32, device=self.device)
        kpos = sparse_positions(len(pos), max(eff.knot_every, 1))
        o = torch.tensor((x0 - det[pos])[kpos], dtype=torch.float32, device=self.device, requires_grad=True)
        knots_t = torch.from_numpy(knots).float().to(self.device)
        x = base + knots_t @ o
        if steps:
            model = self._model(eff.scale if self.perceptual is None else eff.perceptual_scale)
            src = _resize(src_full, model.size)
            src_p = self._perceptual_source(src_full, model.size)
            # a warm start refines what was found: it starts at the cold schedule's last step, not its first (Adam's
            # first steps move every knot by about lr, which from a found optimum is a jump away from it)
            # the step shrinks linearly to a quarter of lr: long strides first, then fine adjustment
            opt = _Adam(o, eff.lr * (WARM_LR_SCALE if all(known) else 1.0), steps)
            prev_t = None if prev is None else torch.tensor(prev, dtype=torch.float32, device=self.device)
            for step in range(steps):
                x = base + knots_t @ o
                if step % 4 == 0:  # the tables the coder would pick for the current rounded track
                    slopes = torch.from_numpy(rate_slopes(np.rint(x.detach().cpu().numpy()), prev)).float()
                kp = (interp @ x) / scale
                g_kp = self._distortion_grad(model, groups, indices, kp.detach(), src, src_p, SEARCH_CHUNK)
                rows = x if prev_t is None else torch.cat([prev_t[None], x])
                res = rows[1:] - rows[:-1]
                sl = slopes[1:] if prev_t is None else slopes
                r = (sl.to(self.device) * torch.sqrt(res * res + RATE_EPS ** 2)).sum()
                (g,) = torch.autograd.grad([kp, r], [o], [g_kp, torch.tensor(self.lam, device=self.device)])
                opt.step(g)
        xf = (base + knots_t @ o).detach().cpu().numpy().astype(np.float64)
        full = interp_full @ xf
        for i in range(n):
            self.found[first + i] = full[i]
            self._found_refs[first + i] = ref_kp[first + i]
        self._offset = full[-1] - det[-1]

        # --- exact choice -------------------------------------------------------------------------
        cands = [("detector", -1.0, det)]
        if held is not None:
            cands.append(("hold", -1.0, np.asarray(held, dtype=np.int32)))
        seen = [q[pos].tobytes() for _, _, q in cands]
        for h in ROUNDINGS:
            coded = quantize_track(xf / scale, self.precision, h, prev)
            if coded.tobytes() in seen:
                continue
            seen.append(coded.tobytes())
            q = interpolate_track(coded, n, stride) if stride > 1 else coded
            cands.append(("search", h, q.astype(np.int32)))
        key = (first, n, stride, held is not None)
        ref_rows = np.stack([ref_kp[first + i] for i in range(n)]) if n else np.zeros((0, c))
        if key in self._chosen and eff.rechoose:
            # what an earlier pass sent, moved as its references' keypoints moved: a candidate, so that a pass whose
            # references did not change never chooses worse than the pass before (the warm steps may stray)
            kind_then, _, q_then, refs_then = self._chosen[key]  # (a hold or the detector is a candidate anyway)
            shift = _ref_shift(refs_then, ref_rows, q_then.shape)
            if kind_then == "search" and shift is not None:
                moved = q_then[pos] + np.rint(shift[pos]).astype(np.int64)
                q = interpolate_track(moved, n, stride) if stride > 1 else moved
                q = q.astype(np.int32)
                if q[pos].tobytes() not in seen:
                    seen.append(q[pos].tobytes())
                    cands.append(("search", -2.0, q))
        if not eff.rechoose and not steps and key in self._chosen:
            kind, h = self._chosen[key][:2]
            for cand in cands:
                if cand[0] == kind and (kind != "search" or cand[1] == h):
                    return self._done(cand[2], kind, float("nan"), float("nan"), bits(cand[2]))
        model = self._model(eff.choice_scale)
        src = _resize(src_full, model.size)
        src_p = self._perceptual_source(src_full, model.size)
        costs, dists = [], []
        with torch.no_grad():
            for kind, _, q in cands:
                drawn_q = interpolate_track(q[pos], n, stride) if stride > 1 else q
                kp = torch.from_numpy(dequantize(drawn_q[drawn], self.precision)).to(self.device)
                d = float(self._distortion(model, groups, indices, kp, src, src_p, chunk=CHOICE_CHUNK))
                dists.append(d)
                costs.append(exact(q, d / (1.0 + hold_margin) if kind == "hold" else d))
        order = [cst for cst, _ in costs]
        i = int(np.argmin(order))  # ties keep the earlier: the detector, then the hold
        self._chosen[key] = (cands[i][0], cands[i][1], np.asarray(cands[i][2]), ref_rows)
        return self._done(cands[i][2], cands[i][0], costs[i][0], costs[0][0], costs[i][1], dists[i])

    def _done(self, q: np.ndarray, kind: str, cost: float, det_cost: float, nbits: int,
              distortion: float = float("nan")) -> PacketChoice:
        self.packets += 1
        self.choices[kind] = self.choices.get(kind, 0) + 1
        return PacketChoice(q=np.asarray(q, dtype=np.int32), kind=kind, cost=cost, detector_cost=det_cost,
                            bits=nbits, distortion=distortion)
