"""MRDAC: a fast multi-reference animation model (keypoints, dense motion, warp, fuse, decode).

After Konuko et al., "Multi-Reference Generative Face Video Compression with Contrastive
Learning" (MMSP 2024), redesigned for real-time CPU decoding: features at ``S/4``, motion at
``S/4`` through a narrow hourglass, inverted residual blocks and PixelShuffle upsampling in the
decoder, no attention. Per reference the expensive encoder runs once (``prepare_reference``);
per frame only the dense motion of each reference and one decoder pass run.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from avfc.errors import ConfigError
from avfc.models.base import AdaptTerm, AnimationModel, Reference, fold_batch_norms, tensors_key, temporal_weights
from avfc.models.generator import WARP_MODES, FeatureEncoder, FrameDecoder, fuse, warp
from avfc.models.keypoints import KeypointDetector
from avfc.models.motion import DenseMotion

#: the most references one ``render`` call accepts (the codec's bounded reference buffer)
MAX_REFS = 4


@dataclass
class ReferenceState:
    """What ``prepare_reference`` caches for one reference (all batch-first tensors)."""

    pyramid: list[torch.Tensor]  # [picture (B,3,S,S), (B,c1,S/2,S/2), (B,c2,S/4,S/4)]
    small: torch.Tensor  # the picture at motion resolution, (B, 3, m, m)
    kp: torch.Tensor  # the reference's keypoints, (B, K, 2)
    gaussians: torch.Tensor  # their heatmaps at motion resolution, (B, K, m, m)


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{name} must be in {lo}..{hi}, got {v}")
    return v


def _chans(value: Sequence[int], n: int, name: str) -> tuple[int, ...]:
    try:
        chans = tuple(operator.index(c) for c in value)
    except TypeError:
        raise ConfigError(f"{name} must be a list of {n} integers, got {value!r}") from None
    if len(chans) != n or min(chans) < 1:
        raise ConfigError(f"{name} must be {n} positive widths, got {list(value)}")
    return chans


class MRDAC(AnimationModel):
    """Multi-reference deep animation codec model (see the module docstring).

    ``size`` is the frame side ``S`` (a multiple of 64); keypoints are detected at
    ``kp_size`` and dense motion is computed at ``motion_size`` (default ``S/4``, which must be
    divisible by 16). Works with 1 to ``max_refs`` (at most 4) references; with one it is a
    single-reference (DAC-style) model. ``render_keys``: the decoder shows each key frame as the
    model's render of it (:attr:`AnimationModel.render_keys`). ``picture_warp``: the kernel that
    warps the reference picture itself (the pyramid's full-size level, which the decoder's last
    layer blends into the output), ``"bilinear"`` or ``"bicubic"`` (sharper; clipped to [0, 1]);
    the feature levels are always warped bilinearly. Call ``eval()`` before ``detect``/``render``.
    """

    arch = "mrdac"

    def __init__(self, num_kp: int = 10, kp_dim: int = 2, size: int = 256, *, max_refs: int = MAX_REFS,
                 kp_size: int = 64, motion_size: int | None = None,
                 kp_channels: Sequence[int] = (16, 32, 64, 128),
                 dense_motion_channels: Sequence[int] = (16, 32, 64, 128),
                 feature_channels: Sequence[int] = (16, 32, 64), decoder_blocks: int = 4,
                 render_keys: bool = False, picture_warp: str = "bilinear") -> None:
        if kp_dim != 2:
            raise ConfigError(f"MRDAC keypoints are (x, y): kp_dim must be 2, got {kp_dim}")
        num_kp, max_refs = _int(num_kp, "num_kp", 1, 64), _int(max_refs, "max_refs", 1, MAX_REFS)
        size, kp_size = _int(size, "size", 64, 4096), _int(kp_size, "kp_size", 16, 1024)
        motion_size = size // 4 if motion_size is None else _int(motion_size, "motion_size", 16, size)
        if size % 64:
            raise ConfigError(f"size must be a multiple of 64, got {size}")
        if motion_size % 16 or size % motion_size:
            raise ConfigError(f"motion_size must be a multiple of 16 dividing size, got {motion_size}")
        if kp_size % 16:
            raise ConfigError(f"kp_size must be a multiple of 16, got {kp_size}")
        super().__init__(num_kp=num_kp, kp_dim=kp_dim, size=size)
        self.max_refs = max_refs
        self.kp_size = kp_size
        self.motion_size = motion_size
        self.kp_channels = _chans(kp_channels, 4, "kp_channels")
        self.dense_motion_channels = _chans(dense_motion_channels, 4, "dense_motion_channels")
        self.feature_channels = _chans(feature_channels, 3, "feature_channels")
        self.decoder_blocks = _int(decoder_blocks, "decoder_blocks", 0, 16)
        if not isinstance(render_keys, bool):
            raise ConfigError(f"render_keys must be true or false, got {render_keys!r}")
        self.render_keys = render_keys
        if picture_warp not in WARP_MODES:
            raise ConfigError(f"picture_warp must be one of {', '.join(WARP_MODES)}, got {picture_warp!r}")
        self.picture_warp = picture_warp
        c0, c1, c2 = self.feature_channels
        self.kp_detector = KeypointDetector(self.num_kp, self.kp_size, self.kp_channels,
                                            out_channels=self.kp_channels[0])
        self.dense_motion = DenseMotion(self.num_kp, self.motion_size, self.dense_motion_channels,
                                        out_channels=self.dense_motion_channels[0])
        self.encoder = FeatureEncoder((c1, c2))
        self.decoder = FrameDecoder((c0, c1, c2), self.decoder_blocks)
        # oneDNN convolutions run about 25% faster on CPU in NHWC; the state dict is unchanged
        # (Module.to takes memory_format=, documented, but torch's stubs list no overload with it)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # ---- differentiable building blocks (training uses these) ----

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(B, K, 2)`` of frames ``(B, 3, S, S)``."""
        return self.kp_detector(frames.contiguous(memory_format=torch.channels_last))

    def encode_reference(self, frame: torch.Tensor, kp: torch.Tensor) -> ReferenceState:
        """Encode a reference picture ``(B, 3, S, S)`` with its keypoints ``(B, K, 2)``."""
        frame = frame.contiguous(memory_format=torch.channels_last)
        small = F.interpolate(frame, size=(self.motion_size, self.motion_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return ReferenceState(self.encoder(frame), small, kp, self.dense_motion.gaussians(kp))

    def animate(self, states: Sequence[ReferenceState], kp_target: torch.Tensor,
                weights: torch.Tensor, folded: bool = False) -> dict[str, Any]:
        """Draw targets from references.

        ``kp_target``: ``(B, K, 2)``; ``weights``: ``(B, R)`` per-reference weights (rows sum to
        1). Returns ``prediction`` ``(B, 3, S, S)``, ``warped`` (per reference the deepest
        features warped to the target, before occlusion; for the contrastive loss) and
        ``occlusion`` (per reference, ``(B, 1, m, m)``). ``folded``: through :meth:`inference_modules`
        (no gradient reaches the parameters; eval mode only).
        """
        b = kp_target.shape[0]
        dense_motion, decoder = self.inference_modules() if folded else (self.dense_motion, self.decoder)
        levels: list[list[torch.Tensor]] = [[], [], []]
        occlusions = []
        for st in states:
            flow, occ = dense_motion(_rows(st.small, b), _rows(st.kp, b), kp_target, _rows(st.gaussians, b))
            occlusions.append(occ)
            picture = warp(_rows(st.pyramid[0], b), flow, self.picture_warp)
            levels[0].append(picture.clamp(0.0, 1.0) if self.picture_warp != "bilinear" else picture)
            for lvl, feat in enumerate(st.pyramid[1:], start=1):
                levels[lvl].append(warp(_rows(feat, b), flow))
        fused, vis = zip(*(fuse(level, occlusions, weights) for level in levels))
        return {"prediction": decoder(fused, vis), "warped": levels[2], "occlusion": occlusions}

    def inference_modules(self) -> tuple[DenseMotion, FrameDecoder]:
        """The dense motion and the frame decoder with their batch norms folded into the convolutions before them
        (:func:`~avfc.models.base.fold_batch_norms`): what :meth:`render` draws with. The same render to float
        rounding (at most 0.03 of an 8-bit level on ``mrdac-cpu-v4``), 8-19 % faster per frame on the 2-core CPU
        (1 and 2 threads). Built on first use and again whenever a parameter or buffer changed (not part of the state dict)."""
        if self.training:
            raise ConfigError("inference_modules is for eval mode (batch norms in training use batch statistics)")
        key = tensors_key(self.dense_motion, self.decoder)
        cached = self.__dict__.get("_inference")  # not a registered submodule: no state dict, parameters or .to()
        if cached is None or cached[0] != key:
            cached = (key, fold_batch_norms(self.dense_motion), fold_batch_norms(self.decoder))
            self.__dict__["_inference"] = cached
        return cached[1], cached[2]

    # ---- the codec's interface ----

    @torch.no_grad()
    def detect(self, frames: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(B, 2K)`` (``x0, y0, x1, y1, ...`` in ``[-1, 1]``) of frames in [0, 1]."""
        self._check_frames(frames, "frames")
        return self.keypoints(frames).reshape(frames.shape[0], -1)

    @torch.no_grad()
    def prepare_reference(self, ref: Reference) -> ReferenceState:
        """Encode a decoded reference once; its keypoints are taken from ``ref.keypoints``."""
        self._check_frames(ref.frame, "reference frame")
        return self.encode_reference(ref.frame, self._kp(ref.keypoints, ref.frame.shape[0], "reference keypoints"))

    @torch.no_grad()
    def render(self, refs: Sequence[Reference], kp_target: torch.Tensor, target_index: int) -> torch.Tensor:
        """Draw the target frame ``(B, 3, S, S)`` from 1..``max_refs`` decoded references.

        References are weighted by :func:`avfc.models.base.temporal_weights` of their frame
        indices and ``target_index``; ``ref.state`` is used when set (else it is computed).
        Reference batches of 1 are broadcast to the ``B`` rows of ``kp_target``.
        """
        if not 1 <= len(refs) <= self.max_refs:
            raise ConfigError(f"render takes 1..{self.max_refs} references, got {len(refs)}")
        if not isinstance(kp_target, torch.Tensor) or kp_target.dim() != 2:
            raise ConfigError("target keypoints must be a (B, C) tensor")
        try:
            indices = [operator.index(i) for i in [*(r.frame_index for r in refs), target_index]]
        except TypeError:
            raise ConfigError("frame indices must be integers") from None
        b = kp_target.shape[0]
        kp = self._kp(kp_target, b, "target keypoints")
        states = []
        for ref in refs:
            st = ref.state if isinstance(ref.state, ReferenceState) else self.prepare_reference(ref)
            if st.kp.shape[0] not in (1, b):
                raise ConfigError(f"reference batch {st.kp.shape[0]} does not match {b} targets")
            states.append(st)
        w = temporal_weights(indices[:-1], indices[-1])
        return self.animate(states, kp, w.to(kp.dtype).unsqueeze(0).expand(b, -1),
                            folded=not self.training)["prediction"]

    def draw(self, refs: Sequence[Reference], kp_target: torch.Tensor,
             target_indices: Sequence[int], folded: bool = False) -> torch.Tensor:
        """:meth:`render` of ``B`` targets in one batch, each weighted by its own temporal distance,
        differentiable in ``kp_target`` (``ref.state`` must be set; encoder-side search only). ``folded``:
        through :meth:`inference_modules`, as :meth:`render` (eval mode; no gradient reaches the parameters:
        the search's, not the decoder-parameter fit's)."""
        if not 1 <= len(refs) <= self.max_refs:
            raise ConfigError(f"draw takes 1..{self.max_refs} references, got {len(refs)}")
        b = kp_target.shape[0]
        if len(target_indices) != b:
            raise ConfigError(f"{b} target rows but {len(target_indices)} target indices")
        states = [r.state if isinstance(r.state, ReferenceState) else self.prepare_reference(r) for r in refs]
        ref_idx = [int(r.frame_index) for r in refs]
        w = torch.stack([temporal_weights(ref_idx, int(t)) for t in target_indices]).to(kp_target.device)
        kp = kp_target.to(torch.float32).reshape(b, self.num_kp, 2)
        return self.animate(states, kp, w, folded=folded)["prediction"]

    def adaptable(self) -> tuple[AdaptTerm, ...]:
        """Set 1 (docs/bitstream.md A.15.2): the affine terms of the frame decoder's last layers: the batch
        norm ending the last block at ``S/2`` (scale and bias), the bias of the upsampling to ``S``, the
        per-channel scale and the bias of the last hidden layer and of the output layer (RGB logits and
        blend). ``c1 + c1 + 4 c0 + c0 + c0 + 4 + 4`` values: 168 with the zoo's widths."""
        c0, c1, _ = self.feature_channels
        return (
            AdaptTerm("decoder.mix1.2.body.3.weight", "add", c1),
            AdaptTerm("decoder.mix1.2.body.3.bias", "add", c1),
            AdaptTerm("decoder.up0.0.bias", "add", 4 * c0),
            AdaptTerm("decoder.mix0.0.weight", "scale", c0),
            AdaptTerm("decoder.mix0.0.bias", "add", c0),
            AdaptTerm("decoder.out.weight", "scale", 4),
            AdaptTerm("decoder.out.bias", "add", 4),
        )

    def config_dict(self) -> dict[str, Any]:
        """Every constructor argument (enough to rebuild the architecture)."""
        return {
            **super().config_dict(),
            "max_refs": self.max_refs,
            "kp_size": self.kp_size,
            "motion_size": self.motion_size,
            "kp_channels": list(self.kp_channels),
            "dense_motion_channels": list(self.dense_motion_channels),
            "feature_channels": list(self.feature_channels),
            "decoder_blocks": self.decoder_blocks,
            **({"render_keys": True} if self.render_keys else {}),  # absent in older entries and files
            **({"picture_warp": self.picture_warp} if self.picture_warp != "bilinear" else {}),
        }

    # ---- input checks ----

    def _check_frames(self, frames: Any, what: str) -> None:
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[0] < 1:
            raise ConfigError(f"{what} must be a (B, 3, H, W) tensor")
        if tuple(frames.shape[1:]) != (3, self.size, self.size):
            raise ConfigError(f"{what} must be (B, 3, {self.size}, {self.size}), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise ConfigError(f"{what} must be float in [0, 1], got {frames.dtype}")

    def _kp(self, kp: Any, batch: int, what: str) -> torch.Tensor:
        if not isinstance(kp, torch.Tensor) or tuple(kp.shape) != (batch, self.motion_channels):
            shape = tuple(kp.shape) if isinstance(kp, torch.Tensor) else type(kp).__name__
            raise ConfigError(f"{what} must be ({batch}, {self.motion_channels}), got {shape}")
        return kp.to(torch.float32).reshape(batch, self.num_kp, 2)


def _rows(x: torch.Tensor, b: int) -> torch.Tensor:
    """Broadcast a batch-of-one tensor to ``b`` rows."""
    return x if x.shape[0] == b else x.expand(b, *x.shape[1:])
