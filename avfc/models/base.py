"""The model interface the codec programs against.

An :class:`AnimationModel` turns frames into a few numbers (keypoints) and draws a
frame from one or more decoded reference frames plus the target's keypoints.

Contract with the codec layer:

* ``detect`` runs on the encoder for every frame, and on *both* sides for every
  decoded reference frame (never on an original the decoder lacks).
* The codec quantizes every keypoint value to the stream's fixed-point grid
  before use, on both sides: rendering only ever sees values ``q / 2**precision``.
* ``prepare_reference`` caches whatever is expensive per reference (features,
  the reference's own keypoints); ``render`` is called once per output frame.
* Frames are float32 tensors ``(B, 3, H, W)`` in ``[0, 1]``; keypoints are
  float32 tensors ``(B, num_kp * kp_dim)``, nominally in ``[-1, 1]``
  (x then y, normalised image coordinates, as ``grid_sample`` uses).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import fuse_conv_bn_eval, parametrize


@dataclass
class Reference:
    """A decoded reference frame in the decoder's buffer."""

    frame_index: int  # display index of the reference frame
    frame: torch.Tensor  # (1, 3, H, W) in [0, 1], the *decoded* picture
    keypoints: torch.Tensor  # (1, C) quantized-grid keypoints of the decoded picture
    state: Any = None  # whatever prepare_reference returned


#: how a delta ``d`` changes a tensor of a model's adaptable set (docs/bitstream.md A.15.2): "add" adds
#: ``d[i]`` to its ``i``-th element; "scale" multiplies its ``c``-th output channel (slice ``[c]`` of its
#: first dimension) by ``1 + d[c]``
ADAPT_KINDS = ("add", "scale")


@dataclass(frozen=True)
class AdaptTerm:
    """One tensor of a model's adaptable set: its dotted name in the model, how a delta changes it
    (:data:`ADAPT_KINDS`) and how many deltas it takes."""

    name: str
    kind: str
    size: int


def adapt_tensor(base: torch.Tensor, kind: str, delta: torch.Tensor) -> torch.Tensor:
    """``base`` changed by ``delta`` as ``kind`` says (differentiable in ``delta``)."""
    delta = delta.to(base.dtype)
    if kind == "add":
        return base + delta.reshape(base.shape)
    if kind == "scale":
        return base * (1.0 + delta).reshape(-1, *([1] * (base.dim() - 1)))
    raise ValueError(f"unknown adaptation kind {kind!r}")


class _Delta(nn.Module):
    """Parametrization of one adaptable tensor: ``adapt_tensor(x, kind, delta[start:start + size])`` with
    ``delta`` shared by every term (what :func:`trainable_adaptation` optimises)."""

    def __init__(self, delta: nn.Parameter, start: int, size: int, kind: str) -> None:
        super().__init__()
        self.delta, self.start, self.size, self.kind = delta, start, size, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adapt_tensor(x, self.kind, self.delta[self.start:self.start + self.size])


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def trainable_adaptation(model: "AnimationModel") -> tuple["AnimationModel", nn.Parameter]:
    """A copy of ``model`` whose adaptable set is drawn from one delta vector (zeros: the model as it is),
    returned with that vector, the only tensor that requires a gradient. For the encoder's fit of
    DECODER_PARAMS; ``model`` (the zoo's shared object) is not changed."""
    terms = model.adaptable()
    fit = copy.deepcopy(model)
    for p in fit.parameters():
        p.requires_grad_(False)
    delta = nn.Parameter(torch.zeros(sum(t.size for t in terms), device=next(iter(fit.buffers()), torch.empty(0)).device))
    start = 0
    for t in terms:
        owner, attr = _owner(fit, t.name)
        parametrize.register_parametrization(owner, attr, _Delta(delta, start, t.size, t.kind), unsafe=True)
        start += t.size
    return fit, delta


def temporal_weights(ref_indices: Sequence[int], target_index: int) -> torch.Tensor:
    """MRDAC weights by temporal distance: ``w = 1 - d / max(d) + 0.5``, normalised.

    With one reference the weight is 1. Distances are absolute, so references
    after the target (bi-directional mode) are weighted the same way.
    """
    d = torch.tensor([abs(target_index - i) for i in ref_indices], dtype=torch.float32)
    if len(ref_indices) == 0:
        raise ValueError("no references")
    dmax = float(d.max())
    w = 1.0 - d / dmax + 0.5 if dmax > 0 else torch.ones_like(d)
    return w / w.sum()


_M = TypeVar("_M", bound=nn.Module)


def fold_batch_norms(module: _M) -> _M:
    """A copy of ``module`` for inference, each batch norm that follows a convolution in an ``nn.Sequential``
    folded into it (``torch.nn.utils.fuse_conv_bn_eval``) and replaced by an identity: the same function in
    eval mode, to float rounding, with one layer less per pair. ``module`` is not changed."""
    out = copy.deepcopy(module).eval()
    for seq in out.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(conv, bn)
                if conv.weight.is_contiguous(memory_format=torch.channels_last):
                    fused = fused.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
                seq._modules[a], seq._modules[b] = fused, nn.Identity()
    for t in out.parameters():
        t.requires_grad_(False)
    return out


def tensors_key(*modules: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """What identifies the values of the modules' parameters and buffers: each tensor's identity, storage and
    version (an in-place change, ``load_state_dict``, a move to another device or a copy changes it)."""
    return tuple((id(t), t.data_ptr(), t._version) for m in modules for t in (*m.parameters(), *m.buffers()))


class AnimationModel(nn.Module, ABC):
    """Base class of every model the codec can use. Subclasses are plain nn.Modules."""

    #: architecture name, recorded in the zoo (not in the stream: the stream names the zoo entry)
    arch: str = "abstract"
    #: what a key frame shows: False, its decoded picture; True, the model's render of the decoded
    #: picture from itself (a model trained to clean up coded references, docs/bitstream.md E.2)
    render_keys: bool = False

    def __init__(self, num_kp: int, kp_dim: int = 2, size: int = 256) -> None:
        super().__init__()
        self.num_kp = int(num_kp)
        self.kp_dim = int(kp_dim)
        self.size = int(size)

    @property
    def motion_channels(self) -> int:
        """Numbers transmitted per frame."""
        return self.num_kp * self.kp_dim

    @abstractmethod
    def detect(self, frames: torch.Tensor) -> torch.Tensor:
        """Keypoints ``(B, C)`` of frames ``(B, 3, H, W)`` in [0, 1]."""

    def prepare_reference(self, ref: Reference) -> Any:
        """Per-reference cache (features). Default: nothing."""
        return None

    @abstractmethod
    def render(self, refs: Sequence[Reference], kp_target: torch.Tensor, target_index: int) -> torch.Tensor:
        """Draw the target frame ``(B, 3, H, W)`` from decoded references and its keypoints."""

    def draw(self, refs: Sequence[Reference], kp_target: torch.Tensor,
             target_indices: Sequence[int], folded: bool = False) -> torch.Tensor:
        """:meth:`render` of ``B`` targets at once, each with its own frame index (so its own
        temporal weights), differentiable in ``kp_target`` ``(B, C)`` where the model's render is.

        This is a building block for encoder-side search (avfc.codec.search): it adds nothing a
        decoder uses. The default renders row by row; models override it with one batched pass.
        ``folded``: through the layers :meth:`render` draws with, where a model folds them for inference
        (gradients then reach ``kp_target`` only, not the parameters); the default's rows are renders anyway.
        """
        if kp_target.shape[0] != len(target_indices):
            raise ValueError(f"{kp_target.shape[0]} target rows but {len(target_indices)} target indices")
        return torch.cat([self.render(refs, kp_target[i:i + 1], int(t)) for i, t in enumerate(target_indices)])

    def config_dict(self) -> dict[str, Any]:
        """The constructor arguments, enough to rebuild the architecture (stored in the zoo)."""
        return {"num_kp": self.num_kp, "kp_dim": self.kp_dim, "size": self.size}

    def adaptable(self) -> tuple[AdaptTerm, ...]:
        """The model's adaptable set (set 1 of docs/bitstream.md A.15.2): the tensors a DECODER_PARAMS unit
        changes, in the order of its values. Only tensors that ``render`` alone reads (never the keypoint
        detector nor what ``prepare_reference`` computes), so references are the same with or without it.
        Default: none."""
        return ()

    def adapt_size(self) -> int:
        """Values in the adaptable set (a DECODER_PARAMS unit for this model carries exactly this many)."""
        return sum(t.size for t in self.adaptable())

    def adapted(self, deltas: "np.ndarray | Sequence[float] | torch.Tensor") -> "AnimationModel":
        """A copy of the model with ``deltas`` (one per value of :meth:`adaptable`, in order) applied to its
        adaptable set; the model itself (often the zoo's shared object) is not changed. ValueError on a
        count other than :meth:`adapt_size`."""
        terms = self.adaptable()
        d = torch.as_tensor(np.asarray(deltas, dtype=np.float64), dtype=torch.float32).reshape(-1)
        if d.numel() != sum(t.size for t in terms):
            raise ValueError(f"{d.numel()} deltas for an adaptable set of {sum(t.size for t in terms)} values")
        out = copy.deepcopy(self)
        start = 0
        with torch.no_grad():
            for t in terms:
                owner, attr = _owner(out, t.name)
                x = getattr(owner, attr)
                x.copy_(adapt_tensor(x, t.kind, d[start:start + t.size].to(x.device)))
                start += t.size
        return out
