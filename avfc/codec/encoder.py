"""The streaming encoder: frames and audio in, .avfc units out.

The encoder works closed loop. Every key frame is intra coded, *decoded again*
and only the decoded picture enters the reference buffer and the keypoint
detector, exactly as in the decoder. The per-frame motion (the target frames'
keypoints) is quantized to the stream's integer grid; everything the entropy
coder sees is an integer.
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from avfc import bitstream as bs
from avfc.audio import AudioCodec
from avfc.avcc.tokens import fields_array
from avfc.avcc.motion_pred import encode_predicted_motion
from avfc.codec.adapt import DecoderParamSet
from avfc.codec.common import (
    AUDIO_CODER_IDS,
    KEY_CODEC_IDS,
    MOTION_SOURCE_IDS,
    MOTION_CODER_LAPLACE_V1,
    audio_codec_for_config,
    audio_rows,
    avcc_for_config,
    frames_to_tensor,
    last_two,
    make_reference,
    references_for,
    tensor_to_frames,
    with_threads,
)
from avfc.codec.rate import STREAM_KEY_SECONDS, StreamRate
from avfc.codec.search import (EFFORTS, PERCEPTUAL_WEIGHT, MotionSearch, PacketChoice, PerceptualTerm, lambda_for_rate,
                                place_key)
from avfc.config import MAX_FIRST_KEY, EncoderConfig
from avfc.entropy import dequantize, encode_motion, interpolate_track, quantize_track, sparse_positions
from avfc.errors import ConfigError, MediaError
from avfc.media import DEFAULT_QP, CropBox, IntraCache, as_array, decode_intra, encode_intra, encode_intra_to_size
from avfc.models.base import AnimationModel, Reference
from avfc.models.zoo import get_entry, load_model


#: the one-pass rate control's prior of the motion bytes of one frame after a packet's first, when the encoder
#: has seen a single frame before its first key picture (about 14 bits a frame at 5 kbps: docs/results.md)
PRIOR_RESIDUAL_BYTES = 2.0

#: format 2.3, predicted motion: the longest the encoder holds the frames from a REFRESH on while the audio of the
#: frames before it is late; past it that audio counts as lost (the decoder conceals the motion it would have
#: predicted, and the late audio is dropped), so the frames held stay bounded when a caller's audio stops
MAX_AUDIO_WAIT_SECONDS = 2.0
#: the search's choices kept for inspection (Encoder.search_log); every packet is counted in packets_by_choice
SEARCH_LOG_PACKETS = 1000
KEY_STATS_KEPT = 1024  # the last key frames' QPs and sizes kept in EncoderStats


@dataclass
class EncoderStats:
    """Bytes written per unit type, and the key frames' QPs.

    Bounded for streams of any length: ``keys`` counts every key frame and ``key_picture_total`` sums
    their pictures; ``key_qps`` and ``key_picture_bytes`` hold the last ``KEY_STATS_KEPT`` (1024) of them
    (every one for a file of up to 1024 key frames, about 3 hours at the default 10-s interval)."""

    bytes_by_type: dict[str, int] = field(default_factory=dict)
    units_by_type: dict[str, int] = field(default_factory=dict)
    key_qps: deque[int] = field(default_factory=lambda: deque(maxlen=KEY_STATS_KEPT))
    key_picture_bytes: deque[int] = field(  # intra pictures alone, no unit fields
        default_factory=lambda: deque(maxlen=KEY_STATS_KEPT))
    keys: int = 0
    key_picture_total: int = 0
    frames: int = 0
    audio_frames: int = 0

    def add(self, kind: str, nbytes: int) -> None:
        self.bytes_by_type[kind] = self.bytes_by_type.get(kind, 0) + nbytes
        self.units_by_type[kind] = self.units_by_type.get(kind, 0) + 1

    def add_key(self, qp: int, picture_bytes: int) -> None:
        self.keys += 1
        self.key_picture_total += picture_bytes
        self.key_qps.append(qp)
        self.key_picture_bytes.append(picture_bytes)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_type.values())


class Encoder:
    """Push frames (RGB uint8 at the coded size) and audio (float32 mono), pull bytes.

    >>> enc = Encoder(EncoderConfig(audio="none"))           # doctest: +SKIP
    >>> enc.push_frames(frames); data = enc.read()           # doctest: +SKIP
    >>> enc.close(); data += enc.read()                      # doctest: +SKIP

    Units are emitted as soon as they are complete: a key frame when its frame
    arrives, a motion packet every ``config.packet_frames`` frames, an audio packet
    for every packet's worth of audio. In bi-directional mode the frames between two
    key frames are held back until the second key frame is coded. With REFRESH units
    (``config.refresh_interval``) audio units are cut at each refresh, and the audio from
    the one holding the refresh frame's time on waits until that REFRESH is written, so
    that a receiver joining there gets all of it (docs/bitstream.md A.14.2).

    Args:
        config: the encoder configuration.
        source_size: (width, height) of the source before cropping (recorded in the header).
        crop: the crop box in source pixels (recorded in the header); default the whole frame.
        frame_count: number of frames if known (0: unknown, given at the end of the stream).
        key_bytes: byte budget of each key frame's intra picture (overrides ``config.key_qp``).
            Without it, a ``config.bitrate_kbps`` and no ``config.key_qp`` make the encoder control its
            rate in one pass (:class:`~avfc.codec.rate.StreamRate`; a key frame every
            :data:`~avfc.codec.rate.STREAM_KEY_SECONDS` when neither ``config.key_interval`` nor
            ``config.refresh_interval`` is set; refreshes are key frames): the target
            may change while encoding (:meth:`set_bitrate`).
        model: an already loaded model (default: ``config.model`` from the zoo).
        search: the motion search to use when ``config.effort`` searches (default: a new one); the
            file-level rate control shares one across its passes, so that a later pass starts from
            what an earlier one found. With ``decoder_params`` it must search through the adapted model.
        decoder_params: instance-adaptive decoder parameters (format 2.2; :mod:`avfc.codec.adapt`): sent in a
            DECODER_PARAMS unit before the first key frame and after every REFRESH, and every closed-loop
            choice (hold, search, adaptive key policy) renders with the model they adapt, as the decoder will.
        perceptual: a perceptual term for a new search (:func:`make_search`), if ``search`` is None.
        key_cache: key pictures already coded (:class:`~avfc.media.IntraCache`): the file-level rate control
            shares one across its passes, which code the same picture again at many of the same qps. The
            bytes are those of an encode; only the time differs.
    """

    def __init__(self, config: EncoderConfig, *, source_size: Optional[tuple[int, int]] = None,
                 crop: Optional[CropBox] = None, frame_count: int = 0,
                 key_bytes: Optional[int] = None, model: Optional[AnimationModel] = None,
                 search: Optional[MotionSearch] = None, decoder_params: Optional[DecoderParamSet] = None,
                 perceptual: Optional[PerceptualTerm] = None, key_cache: Optional[IntraCache] = None) -> None:
        self.config = config
        #: key pictures coded before (the rate control's passes share one: a pass re-codes the pass before's
        #: picture at many of the same qps)
        self.key_cache = key_cache
        #: keypoints of every motion_stride-th frame are sent (the config's, 1 when it leaves it open)
        self.motion_stride = config.motion_stride or 1
        self.entry = get_entry(config.model)
        self.model = model if model is not None else load_model(config.model, config.size)
        from avfc.codec.common import check_max_refs

        check_max_refs(config, self.model)  # before any work, not at a later key frame
        self.decoder_params = decoder_params
        if decoder_params is not None:
            if config.format_major != 2:
                raise ConfigError("decoder parameters (DECODER_PARAMS) need format_major 2 (format 2.2)")
            if len(decoder_params.values) != self.model.adapt_size():
                raise ConfigError(f"{len(decoder_params.values)} decoder parameters for model {config.model!r}, "
                                  f"whose adaptable set has {self.model.adapt_size()}")
            self.model = self.model.adapted(decoder_params.deltas())  # a copy: the zoo's model is shared
        size = config.size
        sw, sh = source_size if source_size is not None else (size, size)
        self.crop = crop if crop is not None else CropBox(0, 0, sw, sh)
        self.audio_codec: Optional[AudioCodec] = audio_codec_for_config(config)
        self.key_bytes = key_bytes
        self.key_qp = config.key_qp if config.key_qp is not None else DEFAULT_QP[config.key_codec]
        #: frames between REFRESH units (format 2.1), 0: none
        self.refresh_frames = config.refresh_frames()
        #: one-pass rate control: with a bitrate and neither key_bytes nor key_qp given
        self.rate: Optional[StreamRate] = None
        #: the key interval in frames the policy uses (config.key_interval; with one-pass rate control and
        #: none set, STREAM_KEY_SECONDS)
        self.key_interval = config.key_interval
        if config.bitrate_kbps is not None and key_bytes is None and config.key_qp is None:
            self._start_rate(config.bitrate_kbps)
        self._frame_count = frame_count
        ac = self.audio_codec
        self.avcc = avcc_for_config(config, self.model)
        avcc_fields: dict[str, Any] = {} if self.avcc is None else dict(
            avcc_name=self.avcc.entry.name, avcc_sha256=self.avcc.entry.sha256,
            audio_coder=AUDIO_CODER_IDS[config.audio_coder], motion_source=MOTION_SOURCE_IDS[config.motion_source])
        if config.lips_model == "diffusion":  # format 1.3: the decoder draws the lips with the diffusion model
            avcc_fields.update(avcc_flags=bs.AVCC_FLAG_DIFFUSION_LIPS, diffusion_steps=config.diffusion_steps,
                               diffusion_seed=config.diffusion_seed)
        self.header = bs.SequenceHeader(
            model_name=config.model,
            weights_sha256=self.entry.sha256,
            width=size, height=size,
            fps_num=config.fps, fps_den=1,
            frame_count=frame_count,
            source_width=sw, source_height=sh,
            crop_x=self.crop.x, crop_y=self.crop.y, crop_w=self.crop.w, crop_h=self.crop.h,
            key_codec=KEY_CODEC_IDS[config.key_codec],
            audio_codec=bs.AudioCodecId(ac.codec_id) if ac else bs.AudioCodecId.NONE,
            audio_sample_rate=ac.sample_rate if ac else 0,
            audio_param=ac.param if ac else 0,
            audio_frame_samples=ac.frame_samples if ac else 0,
            kp_count=self.model.num_kp, kp_dim=self.model.kp_dim,
            kp_precision=config.kp_precision,
            motion_coder=bs.MotionCoder(MOTION_CODER_LAPLACE_V1),
            # a first key frame after frame 0 draws the frames before it: they need the bi-directional rule
            reference_mode=bs.ReferenceMode(int(config.reference_mode == "bidirectional" or bool(config.first_key))),
            max_refs=config.max_refs,
            flags=bs.HEADER_FLAG_SPARSE_MOTION if self.motion_stride > 1 else 0,
            **avcc_fields,
        )
        self._buf = io.BytesIO()
        #: frames between two REFRESH units (format 2.1; 0: none, a 2.0 stream)
        self._writer = bs.StreamWriter(self._buf, config.format_major, refresh=self.refresh_frames > 0,
                                       decoder_params=decoder_params is not None)
        self.stats = EncoderStats()
        self._spend("header", self._writer.write_header(self.header))
        self._pending_q: list[np.ndarray] = []
        self._packet_start = 0
        self._packets = 0
        self._prev_q: Optional[np.ndarray] = None  # last coded frames (up to 2 rows) of the previous packet
        self._motion_queue: list[tuple[int, np.ndarray]] = []  # predicted mode: packets waiting for audio
        self._frame = 0
        self._last_analysed: Optional[np.ndarray] = None  # keypoints of the last frame analysed here
        # one stateful audio encoder for the whole stream: packets do not restart the codec
        self._audio_enc = self.audio_codec.stream_encoder() if self.audio_codec else None
        self._tokens: list = []
        self._fields: list[np.ndarray] = []  # 700C fields (4,) of the audio frames written (AVCC) ...
        self._fields_start = 0  # ... from this audio frame on (older rows are no predictor's history any more)
        self._audio_frame = 0
        self._audio_samples = 0
        self._audio_flushed = False  # the audio encoder's last tokens taken (close)
        self._closed = False
        self._closing = False
        #: format 2.3: REFRESH units in an AVCC stream, where every cross-modal history restarts at a REFRESH
        #: (the predicted motion reads no audio before it; docs/bitstream.md A.14.7). Audio units are placed
        #: around REFRESH units in every stream that has them (2.1, 2.2 and 2.3; _write_audio, A.14.2)
        self._restart = self.refresh_frames > 0 and self.avcc is not None
        self._refreshed = 0  # frame of the last REFRESH written
        #: predicted motion (2.3): frames from a REFRESH on, held until the audio of the frames before it is
        #: written, so that the motion packet before the REFRESH is coded with it and written before it
        self._deferred: list[tuple[np.ndarray, np.ndarray]] = []
        self._audio_lost_to = 0  # audio frames before this one came too late (MAX_AUDIO_WAIT_SECONDS): dropped
        # decoded key frames (closed loop): kept so that callers can inspect what the decoder will see
        self.decoded_keys: dict[int, np.ndarray] = {}
        self._ref_indices: list[int] = []  # the decoder's reference buffer, as frame indices
        self._refs: list[Reference] = []  # ... and its content (adaptive policy only)
        self._last_key = 0
        self._base_psnr: Optional[float] = None
        #: the stream's only key frame when it is not frame 0: the frames before it wait for it and are drawn from it
        self._first_key = int(config.first_key or 0)
        #: frames are drawn from every reference in the buffer, later ones included (the header's reference mode)
        self._bidirectional = config.reference_mode == "bidirectional" or self._first_key > 0
        self._waiting: list[np.ndarray] = []  # motion of frames held back (bi-directional mode, first_key)
        # motion_hold: the frames of the waiting / pending motion rows (to measure the two choices)
        self.effort = EFFORTS[config.effort]
        #: bi-directional mode with key frames placed (the effort places them, config.place_keys): the frames of
        #: each key_interval window are held until it is complete, and its key frame is place_key's frame of it
        #: (windows of at most MAX_FIRST_KEY frames: what the encoder holds stays bounded)
        self._windowed = (config.reference_mode == "bidirectional" and config.key_policy == "fixed"
                          and 0 < config.key_interval <= MAX_FIRST_KEY and config.place_keys
                          and self.effort.place_key and config.motion_source == "transmitted")
        self._window: list[tuple[np.ndarray, np.ndarray]] = []  # (frame, keypoints) of the window being held
        self._planned_key = -1  # the key frame of the window being coded, and the window's length
        self._planned_span = 0
        self._motion_frames = 0  # frames whose motion has been written (the rate control's measure of motion)
        self._motion_prior = 0.0  # expected motion bytes per frame before any is written
        # speech: no motion is sent; live: no second render
        self._hold = config.motion_hold and config.motion_source != "speech" and self.effort.hold
        #: the encoder-side motion search (None: the detector's keypoints are sent, or held)
        self.search: Optional[MotionSearch] = None
        if self.effort.search and config.motion_source != "speech":
            self.search = search if search is not None else make_search(config, self.model, perceptual=perceptual)
        elif perceptual is not None:
            check_perceptual(config, perceptual)  # a term this encoder cannot use: ConfigError
        self._keep_frames = self._hold or self.search is not None  # frames kept for the closed-loop choices
        #: the search sends, per packet, its candidate with the most bits instead of choosing (the rate
        #: control's first pass, which measures an upper bound of the motion's bytes)
        self.search_bound = False
        #: per packet, what the search chose ("detector", "hold", "search") and its cost against the detector's
        #: the search's choices of the last SEARCH_LOG_PACKETS motion packets (counts of all: packets_by_choice)
        self.search_log: deque[PacketChoice] = deque(maxlen=SEARCH_LOG_PACKETS)
        #: the sum of the search's distortions (PacketChoice.distortion) over every packet: how close the decoder
        #: draws this encoding's frames, in the search's own measure; nan when some packet's choice was not rendered
        #: (a reused or bound choice) or when nothing is searched. The whole-file rate control compares its passes by it.
        self.search_distortion = 0.0 if self.search is not None else float("nan")
        self._choices: dict[str, int] = {}
        self._waiting_frames: list[np.ndarray] = []
        self._pending_frames: list[np.ndarray] = []
        self.held_packets = 0  # motion_hold: packets sent as the reference's keypoints held still
        self.device = next(iter(self.model.parameters()), torch.empty(0)).device

    # ------------------------------------------------------------------ video
    def _start_rate(self, kbps: float) -> None:
        self.rate = StreamRate(kbps, self.config.fps)
        if self.key_interval == 0 and self.refresh_frames == 0:  # refreshes code key frames already
            self.key_interval = max(1, round(STREAM_KEY_SECONDS * self.config.fps))

    def set_bitrate(self, kbps: float) -> None:
        """A new rate target in kbit/s (every byte counts), from the next frame pushed on: the one-pass rate
        control sizes the next key pictures to it and the motion search weighs bits by it. For a live
        call's congestion control. Starts one-pass rate control if the encoder had none (then a key frame
        every :data:`~avfc.codec.rate.STREAM_KEY_SECONDS` when ``config.key_interval`` is 0, counting
        from the next key frame); a ConfigError with ``key_bytes`` (the whole-file passes' fixed budget)."""
        if self.key_bytes is not None:
            raise ConfigError("set_bitrate: this encoder codes its key pictures to a fixed key_bytes")
        if self.rate is None:
            self._start_rate(kbps)
            assert self.rate is not None
        self.rate.set_kbps(kbps)
        if self.search is not None and self.config.search_lambda is None:
            self.search.lam = lambda_for_rate(kbps)

    def _spend(self, kind: str, nbytes: int, picture: int = 0) -> None:
        """Count a written unit of ``nbytes`` (``picture`` of them a key picture) in the stats and the rate."""
        self.stats.add(kind, nbytes)
        if self.rate is not None:
            self.rate.spend(nbytes - picture)
            if picture:
                self.rate.spend(picture, key=True)

    def _next_key_distance(self, index: int) -> int:
        """Frames from key frame ``index`` to the next one the policy will code (at most, for the adaptive
        policy), or to the end of the stream when it is known and nearer."""
        if self._windowed:  # the key frame placed in its window stands for the window's frames
            return max(self._planned_span, 1)
        dists = []
        if self.refresh_frames:
            dists.append(self.refresh_frames - index % self.refresh_frames)
        if self.key_interval:
            fixed = self.config.key_policy == "fixed"
            dists.append(self.key_interval - index % self.key_interval if fixed else self.key_interval)
        if self._frame_count:  # (a first key frame after frame 0 draws the frames before it too)
            dists.append(max(self._frame_count - (0 if index == self._first_key else index), 1))
        if not dists:  # no key frame ahead that the encoder knows of, and no end
            dists.append(max(1, round(STREAM_KEY_SECONDS * self.config.fps)))
        return max(min(dists), 1)

    def _rate_prior(self, keypoints: np.ndarray) -> None:
        """Before the first key picture: the expected bytes per frame of motion (these frames' keypoints as
        one packet would code them) and audio (the codec's nominal rate), with units' framing."""
        assert self.rate is not None
        fps = self.config.fps
        per_frame = 0.0
        if len(keypoints) and self.config.motion_source != "speech":
            # one packet of P frames: its first row coded whole, then P - 1 residual rows; with fewer than P
            # frames at hand (a live sender pushes one at a time) the residual rows cost what the ones at hand
            # do, and PRIOR_RESIDUAL_BYTES each when only one frame is (not the whole row again for every frame)
            p = self.config.packet_frames
            n = min(len(keypoints), p)

            def coded(m: int) -> int:
                rows = keypoints[:m][sparse_positions(m, self.motion_stride)] if self.motion_stride > 1 else keypoints[:m]
                return len(encode_motion(np.asarray(rows, np.int32), None))

            first = coded(1)
            residual = (coded(n) - first) / (n - 1) if n > 1 else PRIOR_RESIDUAL_BYTES
            self._motion_prior = (first + (p - 1) * residual + 8) / p
            per_frame += self._motion_prior
        if self.audio_codec is not None:
            per_frame += self.audio_codec.param / 8 / fps + 8 / self.config.packet_frames
        self.rate.other_prior = per_frame

    def _want_key(self, index: int, frame: np.ndarray, q: np.ndarray) -> bool:
        """The reference policy: is frame ``index`` coded as a key frame?"""
        cfg = self.config
        if self._windowed:
            return index == self._planned_key
        if index <= self._first_key:  # frame 0, or the first_key the frames before it wait for
            return index == self._first_key
        dist = index - self._last_key
        if cfg.key_policy == "fixed":
            return self.key_interval > 0 and index % self.key_interval == 0
        if self.key_interval > 0 and dist >= self.key_interval:
            return True
        # adaptive: render the frame exactly as the decoder will and measure it (closed loop)
        psnr = self._render_psnr(index, frame, q)
        if self._base_psnr is None:
            self._base_psnr = psnr
            return False
        return dist >= cfg.key_min_distance and psnr < self._base_psnr - cfg.key_drop_db

    def _refresh(self, index: int) -> None:
        """Random access (format 2.1) at frame ``index``: end the motion packet, write the REFRESH unit,
        and empty the reference buffer and the motion prediction, as the decoder does there; the caller
        then codes frame ``index`` as a key frame (docs/bitstream.md A.14, E.8)."""
        self._release()
        self._flush_motion()
        self._emit_motion(final=True)
        self._spend("refresh", self._writer.write_refresh(index))
        self._refreshed = index
        self._ref_indices = []
        self._refs = []
        self._prev_q = None  # the next motion packet is INTRA

    @torch.no_grad()
    def _render_psnr(self, index: int, frame: np.ndarray, q: np.ndarray) -> float:
        kp = torch.from_numpy(dequantize(q[None], self.config.kp_precision)).to(self.device)
        refs = references_for(self._refs, index, bidirectional=False)
        out = tensor_to_frames(self.model.render(refs, kp, index).cpu())[0]
        mse = float(np.mean((out.astype(np.float64) - frame.astype(np.float64)) ** 2))
        return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))

    def _write(self, kind: str, payload: bs.Payload, picture: int = 0) -> None:
        self._spend(kind, self._writer.write(payload), picture)

    def _code_key(self, index: int, frame: np.ndarray) -> None:
        codec = self.config.key_codec
        budget = self.key_bytes
        if self.rate is not None:
            owed = unseen = 0.0
            if self._bidirectional:  # the motion of frames pushed before this key frame is written after it
                done = self._motion_frames
                per_frame = self.stats.bytes_by_type.get("motion", 0) / done if done >= self.config.fps \
                    else self._motion_prior
                owed = max(self.rate.frame - done, 0) * per_frame
                unseen = per_frame if self.rate.measured and done == 0 else 0.0
            budget = self.rate.key_budget(self._next_key_distance(index), owed=owed, unseen=unseen,
                                          counted=self._planned_span if self._windowed else 0)
        if budget is not None:
            # when not even the coarsest qp fits, the coarsest: the rate control sees the excess
            near = self.stats.key_qps[-1] if self.effort.key_near and self.stats.key_qps else None
            data, qp = encode_intra_to_size(frame, codec, budget, or_coarsest=True, speed=self.effort.key_speed,
                                            near_qp=near, cache=self.key_cache)
        else:
            qp = self.key_qp
            encode = encode_intra if self.key_cache is None else self.key_cache.encode
            data = encode(frame, codec, qp, speed=self.effort.key_speed)
        decoded = decode_intra(data, codec, self.config.size, self.config.size)
        self.decoded_keys[index] = decoded
        self.stats.add_key(qp, len(data))
        self._write("key_frame", bs.KeyFrame(frame_index=index, quality=qp, data=data), picture=len(data))
        self._last_key = index
        self._base_psnr = None
        self._ref_indices = (self._ref_indices + [index])[-self.config.max_refs:]
        if self.config.key_policy == "adaptive" or self._keep_frames:  # the encoder's copy of the decoder's buffer
            ref = make_reference(self.model, decoded, index, self.config.kp_precision, self.device)
            self._refs = (self._refs + [ref])[-self.config.max_refs:]
        if self.config.side_info:
            flags = (bs.SIDE_INFO_FLAG_BASE_PICTURE | bs.SIDE_INFO_FLAG_NETWORK_PRESENT
                     | bs.SIDE_INFO_FLAG_KP_PREDICTION)
            self._write("side_info", bs.SideInfo(
                info_id=0, counter=(self.stats.keys - 1) & 0xFFFF, flags=flags,
                kp_precision=self.config.kp_precision, kp_count=self.model.num_kp,
                kp_dim=self.model.kp_dim, applies_from_frame=index, refs=tuple(self._ref_indices)))

    @property
    def threads(self) -> Optional[int]:
        """torch intra-op threads the encoder works with (``config.threads``; None: the process's setting)."""
        return self.config.threads

    @with_threads
    def push_frames(self, frames: np.ndarray | torch.Tensor, keypoints: Optional[np.ndarray] = None) -> None:
        """Code frames ``(N, S, S, 3)`` uint8 RGB at the coded size ``S`` (a numpy array or a torch
        tensor on any device).

        ``keypoints``: the frames' already-quantized keypoints ``(N, C)`` int, if the caller
        ran the analysis itself (the file-level encoder does, for rate control).
        """
        if self._closed:
            raise ConfigError("encoder is closed")
        frames = np.asarray(as_array(frames, "frames"))
        if frames.ndim == 3:
            frames = frames[None]
        s = self.config.size
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (s, s, 3):
            raise MediaError(f"frames must be uint8 (N, {s}, {s}, 3), got {frames.dtype} {frames.shape}")
        if keypoints is None:
            if self.config.motion_source == "speech":  # no motion is sent: nothing to analyse
                keypoints = np.zeros((len(frames), self.model.motion_channels), np.int32)
            else:
                keypoints = analyse(self.model, frames, self.config.kp_precision, self.config.kp_hysteresis,
                                    prev=self._last_analysed)
        if keypoints.shape != (len(frames), self.model.motion_channels):
            raise ConfigError(f"keypoints must be ({len(frames)}, {self.model.motion_channels})")
        if len(keypoints):  # the dead zone of the next analysis starts from the last coded frame
            self._last_analysed = np.asarray(keypoints[-1], dtype=np.int32)
        if self.rate is not None and self.rate.other_prior is None:
            self._rate_prior(keypoints)
        for frame, q in zip(frames, keypoints):
            q = np.asarray(q, dtype=np.int32)
            if self._windowed:  # held until the window is complete (its frames earn their bytes now); a copy: the
                self._window.append((frame.copy(), q))  # caller may reuse its buffer
                if self.rate is not None:
                    self.rate.frames(1)
                if len(self._window) >= self.key_interval:
                    self._code_window()
            elif self._deferred or self._must_wait(self._frame):
                self._deferred.append((frame, q))
                if len(self._deferred) > max(self.config.packet_frames,
                                             round(MAX_AUDIO_WAIT_SECONDS * self.config.fps)):
                    self._give_up_audio()
            else:
                self._push_one(frame, q)
        self._flush_audio(final=False)

    def _give_up_audio(self) -> None:
        """The audio before the held refresh is too late: code the frames held up to the next refresh as if it
        was lost. The motion packets before the refresh are coded with the audio written (the rest unknown)
        and written; the decoder, which never gets that audio, conceals them; audio for those frames that comes
        later is dropped, so that no decoder ever reads it. (A packet is never coded before its audio is
        written unless that audio is dropped so.)"""
        self._audio_lost_to = self._frame  # the refresh's frame
        n = min(len(self._tokens), self._audio_lost_to - self._audio_frame)
        if n > 0:  # what has come of it (less than a packet) is written
            self._write_audio_packet(n)
        self._resume()  # up to the next refresh, which waits for its audio again

    def _drop_audio(self, n: int) -> None:
        """Drop the next ``n`` audio tokens (late ones, of frames before :attr:`_audio_lost_to`): counted, never
        written."""
        if n <= 0:
            return
        del self._tokens[:n]
        if self.avcc is not None:
            self._fields.extend(np.full((n, 4), -1, np.int64))  # unknown rows: no packet from here on reads them
        self._audio_frame += n

    def _must_wait(self, index: int) -> bool:
        """Format 2.3, predicted motion: frame ``index`` starts a refresh whose motion packet before it still
        waits for its audio (the REFRESH and everything after it are held until that audio is written, at most
        :data:`MAX_AUDIO_WAIT_SECONDS`)."""
        return (self._restart and self.config.motion_source == "predicted" and index > 0
                and index % self.refresh_frames == 0 and self._audio_frame < index and not self._closing
                and self._audio_lost_to < index)

    def _resume(self) -> bool:
        """Code the held frames that no longer wait (:meth:`_must_wait`); True when some were."""
        done = False
        while self._deferred and not self._must_wait(self._frame):
            frame, q = self._deferred.pop(0)
            self._push_one(frame, q)
            done = True
        return done

    def _code_window(self) -> None:
        """Code the held window's frames, its key frame at :func:`~avfc.codec.search.place_key`'s frame of them."""
        if not self._window:
            return
        window, self._window = self._window, []
        self._planned_key = self._frame + place_key(np.stack([q for _, q in window]))
        self._planned_span = len(window)
        for frame, q in window:
            self._push_one(frame, q)

    def _push_one(self, frame: np.ndarray, q: np.ndarray) -> None:
        """Code the next frame (its keypoints ``q``)."""
        index = self._frame
        self._frame += 1
        refresh = self.refresh_frames > 0 and index > 0 and index % self.refresh_frames == 0
        if refresh:
            self._refresh(index)
        key = refresh or self._want_key(index, frame, q)
        if self.decoder_params is not None and (index == 0 or refresh):  # format 2.2: before its key frame
            self._write("decoder_params", bs.DecoderParams(
                frame_index=index, shift=self.decoder_params.shift, values=self.decoder_params.values))
        if key:
            self._code_key(index, frame)
        self._waiting.append(q)
        if self._keep_frames:
            self._waiting_frames.append(frame)
        # low delay: motion goes out at once; bi-directional: frames wait for the next key frame (with a first_key,
        # only the frames before it do)
        if key or not (self.config.reference_mode == "bidirectional" or index < self._first_key):
            self._release()
        if self.rate is not None and not self._windowed:  # (windowed: counted when the window took the frame)
            self.rate.frames(1)

    def _release(self) -> None:
        """Move the waiting frames' motion into packets (emitted as they fill)."""
        if self.config.motion_source == "speech":  # the decoder draws the motion from the audio
            self._packet_start += len(self._waiting)
            self._waiting = []
            return
        frames = self._waiting_frames if self._keep_frames else [None] * len(self._waiting)
        for q, frame in zip(self._waiting, frames):
            self._pending_q.append(q)
            if self._keep_frames:
                assert frame is not None  # frames are kept exactly when _keep_frames
                self._pending_frames.append(frame)
            if len(self._pending_q) >= self.config.packet_frames:
                self._flush_motion()
        self._waiting = []
        self._waiting_frames = []

    def _flush_motion(self) -> None:
        if not self._pending_q:
            return
        q = np.stack(self._pending_q)
        if self.search is not None:
            q = self._search_packet(self._packet_start, q, self._pending_frames)
            self._pending_frames = []
        elif self._hold:
            q = self._hold_or_move(self._packet_start, q, self._pending_frames)
            self._pending_frames = []
        self._motion_queue.append((self._packet_start, q))
        self._packet_start += len(q)
        self._pending_q = []
        self._emit_motion(final=False)

    def _emit_motion(self, final: bool) -> None:
        """Write the queued motion packets that can be coded now.

        Predicted motion needs the audio of its frames: a packet waits until the audio units
        covering its last frame are written (or, at the end, until every audio unit is), so
        that the decoder has exactly the audio the encoder's predictor saw.
        """
        predicted = self.config.motion_source == "predicted"
        while self._motion_queue:
            first, q = self._motion_queue[0]
            if predicted and not final and self._audio_frame < first + len(q):
                return
            self._motion_queue.pop(0)
            intra = self._prev_q is None or self._packets % self.config.intra_period == 0
            if predicted:
                assert self.avcc is not None
                # rows are dropped only once no packet can need them (_trim), so the offset changes nothing
                off = self._fields_start
                start = first - self.avcc.motion.history
                audio = audio_rows(self._fields, start - off, first + len(q) - off)
                if self._restart:  # 2.3: the audio before the packet's refresh is not read (unknown rows)
                    audio[:max(0, first // self.refresh_frames * self.refresh_frames - start)] = -1
                data = encode_predicted_motion(q, self.avcc.motion, audio, None if intra else self._prev_q)
                self._write("motion", bs.MotionPred(first_frame=first, num_frames=len(q),
                                                    flags=bs.MOTION_FLAG_INTRA if intra else 0, data=data))
            elif self.motion_stride > 1:
                # sparse (1.2): code every stride-th frame and the last; the decoder interpolates the
                # rest, and so does the encoder, so that the next packet predicts from what was decoded
                stride = self.motion_stride
                coded = q[sparse_positions(len(q), stride)]
                data = encode_motion(coded, None if intra or self._prev_q is None else self._prev_q[0])
                self._write("motion", bs.MotionSparse(first_frame=first, num_frames=len(q), stride=stride,
                                                      flags=bs.MOTION_FLAG_INTRA if intra else 0, data=data))
                q = interpolate_track(coded, len(q), stride)
            else:
                data = encode_motion(q, None if intra or self._prev_q is None else self._prev_q[0])
                self._write("motion", bs.Motion(first_frame=first, num_frames=len(q),
                                                flags=bs.MOTION_FLAG_INTRA if intra else 0, data=data))
            self._prev_q = last_two(self._prev_q, q)
            self._packets += 1
            self._motion_frames += len(q)
        self._trim()

    def _trim(self) -> None:
        """Forget what no later unit can need, so that the encoder's state stays bounded however long the
        stream: decoded key pictures other than the references' and those of frames not yet in a written
        motion packet, and the AVCC predictor's audio history before the next packet's window."""
        pending = self._motion_queue[0][0] if self._motion_queue else self._packet_start
        refs = set(self._ref_indices)
        for k in [k for k in self.decoded_keys if k < pending and k not in refs]:
            del self.decoded_keys[k]
        if self.avcc is not None:
            keep = max(pending - self.avcc.motion.history, 0)
            if keep - self._fields_start >= 256:  # trimmed in steps, not per packet
                del self._fields[:keep - self._fields_start]
                self._fields_start = keep

    def _held_rows(self, first: int, q: np.ndarray) -> np.ndarray:
        """Per frame of the packet, the keypoints of the latest reference at or before it (the hold)."""
        p = self.config.kp_precision
        held = np.empty_like(q)
        for i in range(len(q)):
            past = [r for r in self._refs if r.frame_index <= first + i]
            ref = past[-1] if past else self._refs[0]
            held[i] = np.rint(ref.keypoints[0].cpu().numpy().astype(np.float64) * 2.0 ** p).astype(q.dtype)
        return held

    def _next_prev(self) -> Optional[np.ndarray]:
        """The row the next packet is predicted from (as :meth:`_emit_motion` will code it), or None
        when it will be INTRA."""
        if (self._packets + len(self._motion_queue)) % self.config.intra_period == 0:
            return None
        if self._motion_queue:  # predicted motion waiting for its audio: the last row queued
            last = self._motion_queue[-1][1]
            if self.motion_stride > 1:
                last = last[sparse_positions(len(last), self.motion_stride)]
            return np.asarray(last[-1], dtype=np.int64)
        return None if self._prev_q is None else np.asarray(self._prev_q[0], dtype=np.int64)

    def _packet_bits(self, q: np.ndarray, prev: Optional[np.ndarray]) -> int:
        """Exact bits of the motion coder's data for packet rows ``q`` (sparse: its coded rows).
        Predicted motion (AVCC) is counted with the plain coder (its predictor needs audio that may
        not have arrived yet)."""
        if self.motion_stride > 1:
            q = q[sparse_positions(len(q), self.motion_stride)]
        return 8 * len(encode_motion(q, prev))

    def _search_packet(self, first: int, q: np.ndarray, frames: list[np.ndarray]) -> np.ndarray:
        """The searched rows of a packet (see :mod:`avfc.codec.search`)."""
        assert self.search is not None
        prev = self._next_prev()
        choice = self.search.choose(
            first, q, frames, self._refs, bidirectional=self._bidirectional,
            keys={i for i in range(first, first + len(q)) if i in self.decoded_keys},
            stride=self.motion_stride, prev=prev, bits=lambda rows: self._packet_bits(rows, prev),
            held=self._held_rows(first, q) if self._hold else None, bound=self.search_bound,
            hold_margin=self.config.motion_hold_margin)
        self.search_log.append(choice)
        self.search_distortion += choice.distortion
        self._choices[choice.kind] = self._choices.get(choice.kind, 0) + 1
        if choice.kind == "hold":
            self.held_packets += 1
        return choice.q

    @torch.no_grad()
    def _hold_or_move(self, first: int, q: np.ndarray, frames: list[np.ndarray]) -> np.ndarray:
        """motion_hold: the packet's rows, or the latest reference's keypoints held, whichever the
        decoder reconstructs closer to the source (MSE over the packet's frames; ties hold, as the
        hold costs fewer bits; ``motion_hold_margin`` m holds while the hold's error is at most
        1 + m times the motion's). Both are rendered exactly as the decoder will (closed loop)."""
        p = self.config.kp_precision
        held = self._held_rows(first, q)
        if np.array_equal(held, q):
            return q
        err = {"move": 0.0, "hold": 0.0}
        for i, frame in enumerate(frames):
            idx = first + i
            if idx in self.decoded_keys:
                continue  # a key frame shows its picture whatever the motion
            refs = references_for(self._refs, idx, self._bidirectional)
            target = frame.astype(np.float64)
            for name, rows in (("move", q), ("hold", held)):
                kp = torch.from_numpy(dequantize(rows[i:i + 1], p)).to(self.device)
                out = tensor_to_frames(self.model.render(refs, kp, idx).cpu())[0]
                err[name] += float(np.mean((out.astype(np.float64) - target) ** 2))
        if err["hold"] <= err["move"] * (1.0 + self.config.motion_hold_margin):
            self.held_packets += 1
            return held
        return q

    def packets_by_choice(self) -> dict[str, int]:
        """Motion packets written so far by what was sent: "search", "detector" or "hold" (with a
        search), else "hold" and "detector" (the analysed keypoints)."""
        if self.search is not None:
            return dict(self._choices)
        total = self.stats.units_by_type.get("motion", 0)
        return {k: v for k, v in (("detector", total - self.held_packets), ("hold", self.held_packets)) if v}

    # ------------------------------------------------------------------ audio
    @with_threads
    def push_audio(self, pcm: np.ndarray | torch.Tensor) -> None:
        """Add mono float samples in [-1, 1] at the codec's sample rate (a numpy array or a torch tensor on
        any device; ignored when audio is 'none')."""
        if self._closed:
            raise ConfigError("encoder is closed")
        if self._audio_enc is None:
            return
        pcm = np.asarray(as_array(pcm, "pcm"), dtype=np.float32).reshape(-1)
        self._audio_samples += len(pcm)
        self._tokens.extend(self._audio_enc.push(pcm))
        self._flush_audio(final=False)

    def _audio_packet_frames(self) -> int:
        """Audio frames per packet: the same duration as a motion packet (at least one frame)."""
        ac = self.audio_codec
        assert ac is not None
        seconds = self.config.packet_frames / self.config.fps
        return max(1, round(seconds * ac.sample_rate / ac.frame_samples))

    def _flush_audio(self, final: bool) -> None:
        ac = self.audio_codec
        if ac is None or self._audio_enc is None:
            return
        if final and not self._audio_flushed:
            self._tokens.extend(self._audio_enc.flush())
            self._audio_flushed = True
        while True:
            self._write_audio(final)
            if not self._deferred or not self._resume():
                break
        self._emit_motion(final=False)

    def _write_audio(self, final: bool) -> None:
        """Write the audio packets that can be written now."""
        ac = self.audio_codec
        assert ac is not None
        per_packet = self._audio_packet_frames()
        if self._audio_frame < self._audio_lost_to:  # late audio of frames given up on: dropped
            self._drop_audio(min(len(self._tokens), self._audio_lost_to - self._audio_frame))
        while len(self._tokens) >= per_packet or (final and self._tokens):
            if (self.config.motion_source == "speech" and not final
                    and self._audio_frame + per_packet > self._frame):
                break  # motion from speech: audio never runs ahead of the key frames it animates
            n = per_packet
            if self.refresh_frames:  # an audio unit never crosses a refresh, and follows the REFRESH it is after
                a = self._audio_frame
                f = self._refresh_of_audio(a)
                if f > 0 and self._refreshed < f and not (self._closing and self._frame + len(self._deferred) <= f):
                    break  # the REFRESH of frame f, at or before audio frame a, is not written yet
                n = min(n, self._audio_cut(f + self.refresh_frames) - a)
                if len(self._tokens) < n and not final:
                    break
            self._write_audio_packet(n)

    def _audio_cut(self, index: int) -> int:
        """The audio frame that holds the time of video frame ``index``: where audio units are cut at a
        refresh of that frame, the first audio frame a decoder that joins there decodes (docs/bitstream.md
        E.8: sample ``floor(index * sample_rate / fps)``). In the AVCC modes (25 fps, 40-ms frames) it is
        ``index``."""
        ac = self.audio_codec
        assert ac is not None
        return index * ac.sample_rate // (self.config.fps * ac.frame_samples)

    def _refresh_of_audio(self, a: int) -> int:
        """The frame of the last refresh whose :meth:`_audio_cut` is at or before audio frame ``a`` (0: none):
        the REFRESH that an audio unit carrying frame ``a`` must follow."""
        ac = self.audio_codec
        assert ac is not None
        # the last video frame whose time falls in audio frames 0..a
        last = ((a + 1) * self.config.fps * ac.frame_samples - 1) // ac.sample_rate
        return last // self.refresh_frames * self.refresh_frames

    def _write_audio_packet(self, n: int) -> None:
        """Write the next ``n`` audio tokens as one audio unit."""
        ac = self.audio_codec
        assert ac is not None
        tokens, self._tokens = self._tokens[:n], self._tokens[n:]
        if self.avcc is not None:
            self._fields.extend(fields_array(tokens))  # appended, not re-copied per packet
        if self.config.audio_coder == "context":
            assert self.avcc is not None
            self._write("audio", bs.AudioCtx(first_frame=self._audio_frame, num_frames=len(tokens),
                                             data=self.avcc.audio.encode(tokens)))
        else:
            self._write("audio", bs.Audio(first_frame=self._audio_frame, num_frames=len(tokens),
                                          data=ac.pack(tokens)))
        self._audio_frame += len(tokens)

    # ------------------------------------------------------------------ output
    def read(self) -> bytes:
        """The bytes of every unit completed since the last call."""
        data = self._buf.getvalue()
        self._buf.seek(0)
        self._buf.truncate()
        return data

    @with_threads
    def close(self) -> None:
        """Write the remaining motion and audio and the END_OF_STREAM unit."""
        if self._closed:
            return
        if 0 < self._frame <= self._first_key:
            raise ConfigError(f"first_key {self._first_key} is not among the {self._frame} frames pushed: the frames "
                              "before it have no key frame to be drawn from")
        self._closing = True
        self._code_window()  # the last window, however short
        if self._deferred:  # 2.3: the frames held for audio that will not come
            self._flush_audio(final=True)
        self._release()
        self._flush_motion()
        self._flush_audio(final=True)
        self._emit_motion(final=True)
        self._write("end_of_stream", bs.EndOfStream(
            frame_count=self._frame, audio_frame_count=self._audio_frame,
            audio_samples=self._audio_samples))
        self.stats.frames = self._frame
        self.stats.audio_frames = self._audio_frame
        self._closed = True


def _key_frames_free(config: EncoderConfig) -> bool:
    """Whether ``avfc.encode`` may choose where ``config``'s key frames fall: its effort places key frames,
    ``place_keys`` is on, ``first_key`` is left open and the stream has its one key frame, or its one-pass rate
    control's, at fixed places in low delay (``EncoderConfig.one_key_frame``)."""
    return (config.first_key is None and config.place_keys and EFFORTS[config.effort].place_key
            and config.one_key_frame)


def with_key_placed(config: EncoderConfig, keypoints: np.ndarray) -> EncoderConfig:
    """``config`` with ``first_key`` at :func:`~avfc.codec.search.place_key`'s frame of the clip's analysed
    ``keypoints`` (the whole input, at hand), when its effort places key frames, it leaves ``first_key`` open
    and its stream has one key frame (``EncoderConfig.one_key_frame``); else ``config`` unchanged."""
    if not _key_frames_free(config) or len(keypoints) < 2:
        return config
    return EncoderConfig.make(config, first_key=place_key(keypoints, limit=MAX_FIRST_KEY))


def with_key_windows(config: EncoderConfig) -> EncoderConfig:
    """``config`` for an input that one-pass rate control codes (``avfc.encode`` of a long input): written
    bi-directional with a key frame every :data:`~avfc.codec.rate.STREAM_KEY_SECONDS` window, which the encoder
    places in its window (``Encoder`` holds each window's frames until it is complete: 250 frames, 49 MB at
    256x256), instead of low delay with a key frame at every 10th second. When the effort places key frames
    (fast and above), ``place_keys`` and ``first_key`` leave it free, the stream would otherwise have its key
    frames at fixed places in low delay (``EncoderConfig.one_key_frame``) and ``max_refs`` >= 2; else ``config``
    unchanged (live and detector efforts, refresh, AVCC motion, a key_interval the caller set).

    Two references (``max_refs`` 2): a frame is drawn from the key frames on either side of it, not from older
    ones too; on two av2 clips with 5 windows each, LPIPS -0.008 / -0.013 and DISTS -0.005 / -0.012 against four,
    at 0.1 / 0.3 dB less PSNR, and each frame renders from two pictures instead of up to four (faster decoding)."""
    if config.bitrate_kbps is None or not _key_frames_free(config) or config.max_refs < 2:
        return config
    return EncoderConfig.make(config, reference_mode="bidirectional", max_refs=2,
                              key_interval=max(1, round(STREAM_KEY_SECONDS * config.fps)))


def check_perceptual(config: EncoderConfig, perceptual: Optional[PerceptualTerm]) -> None:
    """ConfigError unless ``perceptual`` (a search term, or None) is callable and ``config`` searches the
    motion it sends (an effort of fast and above, transmitted motion): a term would change nothing else."""
    if perceptual is None:
        return
    if not callable(perceptual):
        raise ConfigError(f"search_perceptual must be callable (render, source) -> (B,), "
                          f"got {type(perceptual).__name__}")
    if not EFFORTS[config.effort].search or config.motion_source == "speech":
        raise ConfigError(f"a perceptual term for the search needs an effort that searches (fast and above) and "
                          f"transmitted motion; effort {config.effort!r}, motion_source {config.motion_source!r}")


def make_search(config: EncoderConfig, model: AnimationModel, device: Optional[str] = None,
                keep_found: bool = False, perceptual: Optional[PerceptualTerm] = None) -> Optional[MotionSearch]:
    """The motion search ``config`` asks for (its effort and lambda), or None when it sends the
    detector's keypoints. ``device``: where it renders ("auto": a GPU when torch sees one);
    ``keep_found``: see :class:`MotionSearch` (True for the file-level rate control's passes);
    ``perceptual``: a perceptual term the search adds to its distortion, weighted by
    ``config.search_perceptual_weight`` (an ``nn.Module`` is moved to the search's device). A term with
    an effort that does not search is a ConfigError (it would change nothing)."""
    check_perceptual(config, perceptual)
    effort = EFFORTS[config.effort]
    if not effort.search or config.motion_source == "speech":
        return None
    if not isinstance(model, AnimationModel):  # a duck-typed model (tests, experiments): nothing to search through
        return None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else None
    lam = config.search_lambda if config.search_lambda is not None else lambda_for_rate(config.bitrate_kbps)
    weight = PERCEPTUAL_WEIGHT if config.search_perceptual_weight is None else config.search_perceptual_weight
    if isinstance(perceptual, torch.nn.Module):
        here = next(iter(model.parameters()), torch.empty(0)).device
        perceptual = perceptual.to(here if device is None else torch.device(device))
    return MotionSearch(model, effort, config.kp_precision, lam, device=device, keep_found=keep_found,
                        perceptual=perceptual, perceptual_weight=weight)


@torch.no_grad()
def analyse(model: AnimationModel, frames: np.ndarray, precision: int, hysteresis: float = 0.0,
            prev: Optional[np.ndarray] = None, batch: int = 16) -> np.ndarray:
    """Quantized keypoints ``(N, C)`` int32 of frames ``(N, H, W, 3)`` uint8.

    ``hysteresis`` and ``prev`` (the quantized keypoints of the frame before, if any) are those
    of :func:`avfc.entropy.quantize_track`.
    """
    out = []
    for i in range(0, len(frames), batch):
        out.append(model.detect(frames_to_tensor(frames[i:i + batch])).numpy().astype(np.float64))
    if not out:
        return np.zeros((0, model.motion_channels), dtype=np.int32)
    return quantize_track(np.concatenate(out), precision, hysteresis, prev).astype(np.int32)


#: frames :func:`analyse_clip` analyses at a time (one progress step)
ANALYSE_CHUNK = 25


def analyse_clip(model: AnimationModel, frames: np.ndarray, precision: int, hysteresis: float = 0.0,
                 progress: Optional[Callable[[str, int, int], None]] = None) -> np.ndarray:
    """:func:`analyse` of a whole clip, :data:`ANALYSE_CHUNK` frames at a time (the dead zone carried
    across chunks), calling ``progress("analyse", done, total)`` after each chunk."""
    chunks: list[np.ndarray] = []
    for i in range(0, len(frames), ANALYSE_CHUNK):
        chunks.append(analyse(model, frames[i:i + ANALYSE_CHUNK], precision, hysteresis,
                              prev=chunks[-1][-1] if chunks else None))
        if progress:
            progress("analyse", min(i + ANALYSE_CHUNK, len(frames)), len(frames))
    return np.concatenate(chunks) if chunks else np.zeros((0, model.motion_channels), np.int32)
