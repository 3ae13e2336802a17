"""Small pieces shared by the encoder and the decoder."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar

import numpy as np
import torch

from avfc import bitstream as bs
from avfc.audio import AudioCodec, make_audio_codec, make_audio_codec_by_name
from avfc.avcc.zoo import AVCC_ZOO, AvccBundle, default_avcc_for, load_avcc
from avfc.config import EncoderConfig
from avfc.entropy import dequantize, quantize
from avfc.errors import ConfigError, ModelMismatchError
from avfc.models.base import AnimationModel, Reference
from avfc.models.zoo import keypoint_family

if TYPE_CHECKING:
    from avfc.media.keyframe import Codec

KEY_CODEC_IDS: dict[Codec, bs.KeyCodec] = {"av1": bs.KeyCodec.AV1, "hevc": bs.KeyCodec.HEVC}
KEY_CODEC_NAMES = {int(v): k for k, v in KEY_CODEC_IDS.items()}

#: motion_coder id of the v1 entropy scheme (docs/bitstream.md, "Motion packet coding")
MOTION_CODER_LAPLACE_V1 = 1

AUDIO_CODER_IDS = {"raw": bs.AudioCoder.RAW, "context": bs.AudioCoder.CONTEXT}
MOTION_SOURCE_IDS = {"transmitted": bs.MotionSource.TRANSMITTED, "predicted": bs.MotionSource.PREDICTED,
                     "speech": bs.MotionSource.FROM_SPEECH}


_Method = TypeVar("_Method", bound=Callable[..., Any])


def check_threads(threads: Optional[int]) -> Optional[int]:
    """A thread limit: None (torch's setting) or a positive int (ConfigError otherwise)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    return threads


def with_threads(method: _Method) -> _Method:
    """Run an Encoder / Decoder method with torch's intra-op threads set to ``self.threads`` (when not None;
    restored after), so that an app embedding it bounds its CPU use without changing the process's setting.
    The setting is OpenMP's, per calling thread: an encoder and a decoder working in two threads of one
    process can each have their own."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        threads = self.threads
        if threads is None:
            return method(self, *args, **kwargs)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return method(self, *args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return run  # type: ignore[return-value]


def check_avcc(bundle: AvccBundle, model: AnimationModel, precision: int) -> None:
    """Refuse a bundle whose motion parts do not fit the model's channels or the keypoint grid."""
    entry = bundle.entry
    if bundle.motion.num_channels != model.motion_channels or bundle.lips.num_channels != model.motion_channels:
        raise ModelMismatchError(f"AVCC bundle {entry.name!r} predicts {bundle.motion.num_channels} motion "
                                 f"channels, the model has {model.motion_channels}")
    if bundle.diffusion is not None and (bundle.diffusion.num_channels != model.motion_channels
                                         or bundle.diffusion.meta.kp_dim != model.kp_dim):
        raise ModelMismatchError(f"AVCC bundle {entry.name!r}'s diffusion model draws {bundle.diffusion.num_channels} "
                                 f"motion channels, the model has {model.motion_channels}")
    if precision != entry.kp_precision:
        raise ModelMismatchError(f"AVCC bundle {entry.name!r} works on the keypoint grid of precision "
                                 f"{entry.kp_precision}, the stream uses {precision}")


def avcc_for_config(config: EncoderConfig, model: AnimationModel) -> Optional[AvccBundle]:
    """The AVCC bundle an encoder configuration needs (None when it uses no AVCC mode)."""
    if not config.uses_avcc:
        return None
    diffusion = config.lips_model == "diffusion"
    name = config.avcc or default_avcc_for(keypoint_family(config.model), diffusion=diffusion)
    if name is None:
        raise ConfigError(f"this installation ships no AVCC bundle trained for model {config.model!r}; name one "
                          f"with avcc= (--avcc); known bundles: "
                          f"{', '.join(f'{e.name} (for {e.animation_model})' for e in AVCC_ZOO.values()) or 'none'}")
    bundle = load_avcc(name)  # ConfigError for an unknown name
    if diffusion and bundle.diffusion is None:
        raise ConfigError(f"AVCC bundle {name!r} has no diffusion lips model (lips_model 'diffusion'); bundles "
                          f"with one: {', '.join(e.name for e in AVCC_ZOO.values() if e.diffusion) or 'none'}")
    try:
        check_avcc(bundle, model, config.kp_precision)
    except ModelMismatchError as exc:
        raise ConfigError(str(exc)) from None
    return bundle


def check_max_refs(config: EncoderConfig, model: AnimationModel) -> None:
    """Refuse ``config.max_refs`` above the references ``model`` renders from (its ``max_refs``
    attribute; MRDAC draws from at most 4, a model without the attribute sets no bound), so that a
    reference buffer the model cannot draw from is refused before any work, not at a later key frame."""
    limit = getattr(model, "max_refs", None)
    if isinstance(limit, int) and config.max_refs > limit:
        raise ConfigError(f"max_refs {config.max_refs} is more than model {config.model!r} renders from: "
                          f"it takes at most {limit} references")


def audio_rows(fields: Sequence[np.ndarray], start: int, end: int) -> np.ndarray:
    """Rows ``start..end-1`` of the per-frame 700C fields (``N`` rows of 4); rows outside ``[0, N)``
    are -1 (unknown), exactly as the AVCC predictors expect."""
    out = np.full((max(end - start, 0), 4), -1, dtype=np.int64)
    lo, hi = max(start, 0), min(end, len(fields))
    if hi > lo:
        out[lo - start:hi - start] = np.asarray(fields[lo:hi], dtype=np.int64)
    return out


def last_two(prev: Optional[np.ndarray], q: np.ndarray) -> np.ndarray:
    """``(2, C)``: the last coded motion frame after packet ``q``, then the one before it (the
    last repeated when only one exists), as the AVCC motion predictor takes them.

    ``prev`` is the same pair from before ``q`` (or None)."""
    rows = q[::-1] if prev is None else np.vstack([q[::-1], prev])
    rows = rows[:2]
    return np.vstack([rows, rows]) if len(rows) == 1 else rows.copy()


def audio_codec_for_config(config: EncoderConfig) -> Optional[AudioCodec]:
    """The audio codec an encoder configuration asks for (None for 'none')."""
    if config.audio == "none":
        return None
    if config.audio == "codec2":
        return make_audio_codec_by_name("codec2", config.codec2_mode)
    return make_audio_codec_by_name("opus", config.opus_bitrate)


def audio_codec_for_header(header: "bs.SequenceHeader") -> Optional[AudioCodec]:
    """The audio codec a stream header names (None when the stream has no audio)."""
    if int(header.audio_codec) == int(bs.AudioCodecId.NONE):
        return None
    return make_audio_codec(int(header.audio_codec), int(header.audio_param))


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    return t.to(torch.float32) / 255.0


def tensor_to_frames(t: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in [0, 1] -> uint8 ``(N, H, W, 3)`` (round half up)."""
    x = (t.detach().clamp(0.0, 1.0) * 255.0 + 0.5).floor().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


@torch.no_grad()
def make_reference(model: AnimationModel, picture: np.ndarray, index: int, precision: int,
                   device: torch.device) -> Reference:
    """A reference from a *decoded* key picture, built identically in encoder and decoder.

    The keypoints are detected on the decoded picture and put on the stream's grid, so the
    renderer only ever sees values ``q / 2**precision`` on both sides.
    """
    t = frames_to_tensor(picture[None]).to(device)
    kp = model.detect(t)
    kpq = quantize(kp.cpu().numpy().astype(np.float64), precision)
    ref = Reference(frame_index=index, frame=t, keypoints=torch.from_numpy(dequantize(kpq, precision)).to(device))
    ref.state = model.prepare_reference(ref)
    return ref


def references_for(refs: list[Reference], index: int, bidirectional: bool) -> list[Reference]:
    """The references frame ``index`` is drawn from: past ones, and future ones in bi-directional mode."""
    return list(refs) if bidirectional else [r for r in refs if r.frame_index <= index]
