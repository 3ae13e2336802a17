"""Encoder configuration (pydantic). Everything that shapes the bits is recorded in the stream
header, so a decoder needs no configuration at all."""

from __future__ import annotations

from typing import Final, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avfc.errors import ConfigError

#: the zoo's default model (kept in step with avfc.models.zoo.DEFAULT_MODEL by a test; this module
#: must not import torch)
DEFAULT_MODEL = "mrdac-cpu-v4"

CODEC2_MODES = ("700C", "1300", "1600", "3200")

#: the encoder's default effort (avfc.codec.search.EFFORTS): the best whose whole `avfc encode --bitrate 5`
#: of a 256x256 clip runs at 5 fps or more on a 2-core CPU (docs/results.md)
DEFAULT_EFFORT: Final = "fast"

#: the motion search's lambda at 5 kbps (8-bit levels of mean absolute error, summed over drawn frames,
#: per bit of motion); it scales as 5 / kbps with the rate target (avfc.codec.search.lambda_for_rate)
SEARCH_LAMBDA_5KBPS = 0.05

#: weight of the motion search's optional perceptual term (8-bit levels per unit of LPIPS / DISTS; measured in
#: docs/experiments/2026-12-06-search-perceptual.md)
SEARCH_PERCEPTUAL_WEIGHT = 50.0


#: the latest frame ``first_key`` may name: the frames before the key frame wait for it in memory (40 s at 25 fps)
MAX_FIRST_KEY = 1000


class EncoderConfig(BaseModel):
    """How to encode. Defaults are the test conditions of the field (256x256, 25 fps, 16 kHz)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="zoo model that analyses and draws the face")
    size: int = Field(256, ge=64, le=1024, multiple_of=16, description="coded width = height, pixels")
    fps: int = Field(25, ge=1, le=120, description="coded frame rate")
    bitrate_kbps: Optional[float] = Field(
        None, gt=0, le=1000,
        description="target for the WHOLE file (key frames, motion, audio, headers) in kbit/s; "
                    "sets the key-frame quality. None: use key_qp")
    rate_control: Literal["auto", "file", "stream"] = Field(
        "auto",
        description="with a bitrate: 'file' codes the whole input several times and keeps the pass that fills "
                    "the budget best (short files: one key picture is most of the file); 'stream' codes it once, "
                    "each key picture getting what the interval until the next key frame earns less what motion "
                    "and audio take (inputs of any length, live use; with key_interval 0 a key frame every "
                    "10 s); 'auto': 'file' up to 20 s of input, 'stream' beyond (avfc.codec.rate)")
    threads: Optional[int] = Field(
        None, ge=1, le=256,
        description="CPU threads the encoder's networks use while it works (torch's intra-op threads, set for "
                    "each call and restored after); None: torch's setting")
    key_codec: Literal["av1", "hevc"] = Field("av1", description="intra codec of key frames")
    key_qp: Optional[int] = Field(None, ge=0, le=63, description="key-frame QP when no bitrate is set")
    key_interval: int = Field(
        0, ge=0, le=100000,
        description="fixed policy: a key frame every N frames (0: only the first); adaptive policy: "
                    "the longest distance between key frames (0: no limit)")
    key_policy: Literal["fixed", "adaptive"] = Field(
        "fixed", description="adaptive: the encoder renders every frame as the decoder will and codes a "
                             "new key frame when the reconstruction falls key_drop_db below its level "
                             "just after the last key frame")
    key_drop_db: float = Field(3.0, gt=0, le=40, description="adaptive policy: PSNR drop that triggers a key frame")
    key_min_distance: int = Field(25, ge=1, le=100000, description="adaptive policy: fewest frames between keys")
    first_key: Optional[int] = Field(
        None, ge=0, le=MAX_FIRST_KEY,
        description="frame index of the stream's only key frame: the frames before it are drawn from it, so the "
                    "stream is written in bi-directional reference mode and they wait for it (needs the fixed "
                    "key policy with key_interval 0, reference_mode 'low-delay', no refresh_interval, "
                    "transmitted motion). None: frame 0, or, when avfc.encode has the whole input at hand and "
                    "the effort places its key frame (fast and above), the frame the encoder picks "
                    "(avfc.codec.search.place_key). 0: frame 0")
    reference_mode: Literal["low-delay", "bidirectional"] = Field(
        "low-delay", description="bidirectional: the next key frame is coded ahead and frames between two "
                                 "key frames use both (needs the fixed policy with key_interval > 0; adds "
                                 "key_interval frames of delay)")
    place_keys: bool = Field(
        True,
        description="let the encoder put key frames where the model draws best from them, when its effort places "
                    "key frames (fast and above): a one-key stream's key frame (first_key None) when avfc.encode "
                    "has the whole input at hand; in bi-directional mode with key_interval up to 1000, each key "
                    "frame anywhere in its key_interval window (the frame whose keypoints are nearest the "
                    "window's others; the window's frames wait until it is complete); and avfc.encode writes a "
                    "long input's one-pass rate control (a key frame every 10 s) bi-directional, two references, "
                    "so that it can (avfc.codec.encoder.with_key_windows). An encoder choice: the format does not "
                    "change. False: frame 0 and every key_interval-th frame, in the reference mode configured")
    audio: Literal["codec2", "opus", "none"] = "codec2"
    codec2_mode: Literal["700C", "1300", "1600", "3200"] = "700C"
    opus_bitrate: int = Field(6000, ge=6000, le=24000, description="Opus bitrate in bit/s")
    kp_precision: int = Field(
        5, ge=0, le=15,
        description="fractional bits of the keypoint grid (5 with a 0.3 dead zone: 39% fewer motion bits than 6 "
                    "at 0.07 dB less rendered PSNR with mrdac-cpu-v2: benchmarks/kp_grid.py on av-eval)")
    kp_hysteresis: float = Field(
        0.3, ge=0.0, lt=2.0,
        description="dead zone of the keypoint quantizer in grid steps: a keypoint keeps its last value "
                    "until it moves more than 0.5 + this, so detector jitter costs no bits (encoder only)")
    motion_stride: Optional[int] = Field(
        None, ge=1, le=24,
        description="code the keypoints of every Nth frame (and of each packet's last frame); the decoder "
                    "interpolates the others (MOTION_SPARSE units, format 1.2 and 2.0; 1: every frame). None "
                    "(default): 1, or with a bitrate the smallest of 1, 2, 3 whose motion fits motion_share (a "
                    "sparser one only when it saves 2 % of the file or more)")
    motion_share: float = Field(
        0.1, ge=0.0, le=1.0,
        description="with a bitrate and no motion_stride: the largest share of the file's bytes the keypoints "
                    "may take (every packet's analysed motion, none held) before every 2nd or 3rd frame's "
                    "are sent instead (the rest go to the key pictures, which LPIPS and DISTS reward at a "
                    "few kbps; docs/results.md)")
    motion_hold: bool = Field(
        True,
        description="closed loop, per motion packet: render the packet's frames as the decoder will, once with "
                    "the analysed keypoints and once holding the reference's keypoints, and send the hold (a "
                    "few bytes) when it reconstructs the source at least as well (encoder only; slower encode)")
    motion_hold_margin: float = Field(
        0.0, ge=0.0, le=10.0,
        description="motion_hold holds a packet unless the hold's error exceeds the analysed keypoints' by "
                    "more than this fraction of it: 0 holds only when holding is at least as close; larger "
                    "values hold more packets, which saves their motion bytes and keeps the picture sharp, "
                    "and moves the mouth less (encoder only; measured in docs/results.md)")
    effort: Literal["live", "detector", "fast", "medium", "slow", "placebo"] = Field(
        DEFAULT_EFFORT,
        description="how hard the encoder works for what it sends (encoder only; every file decodes the same "
                    "way): 'live' sends the detector's keypoints with no second render (real time); 'detector' "
                    "adds the closed-loop hold (avfc 0.2's encoder, byte for byte); 'fast', 'medium', 'slow', "
                    "'placebo' search the keypoints against the decoder's own render for distortion + lambda x "
                    "rate (avfc.codec.search; speed and quality in docs/results.md)")
    search_lambda: Optional[float] = Field(
        None, gt=0, le=1e6,
        description="the search's lambda (8-bit levels of mean absolute error, summed over frames, per bit of "
                    "motion); None: from the rate target (bits are dearer at lower rates)")
    search_perceptual_weight: Optional[float] = Field(
        None, ge=0, le=1e6,
        description="weight of the search's perceptual term (8-bit levels per unit of LPIPS / DISTS) when one "
                    "is given (avfc.encode's search_perceptual, the CLI's --search-weights); None: the "
                    "search's default (SEARCH_PERCEPTUAL_WEIGHT); ignored without a term")
    packet_frames: int = Field(25, ge=1, le=1024, description="frames per motion packet")
    format_major: Literal[1, 2] = Field(
        2, description="bitstream layout: 2 writes format 2.0 (compact: CRC-16 units, varint fields, 8-byte "
                       "hash prefixes; about 100 bytes less per 4-s file), 1 the oldest 1.x version that holds "
                       "the stream (for avfc readers before 0.2)")
    intra_period: int = Field(
        1, ge=1, le=1000,
        description="every Nth motion packet is INTRA (decodable alone); 1: all")
    crop: Literal["face", "center", "none"] = "face"
    max_frames: Optional[int] = Field(None, ge=1, description="code at most this many frames")
    max_refs: int = Field(4, ge=1, le=16, description="reference buffer size in the decoder")
    audio_coder: Literal["raw", "context"] = Field(
        "raw", description="context: Codec2 700C tokens coded by the AVCC context model with rANS instead of "
                           "28 raw bits per frame (same decoded tokens, 652 instead of 700 bit/s on held-out "
                           "speech; needs audio codec2 700C)")
    motion_source: Literal["transmitted", "predicted", "speech"] = Field(
        "transmitted", description="predicted: keypoints coded as residuals of a predictor that reads the "
                                   "decoded speech and the keypoints already coded (8 % fewer motion bits "
                                   "on av-eval; the speech terms save 0.03 bit of a frame's 44, 0.1 %); "
                                   "speech: no per-frame motion is sent, the decoder draws the lips from "
                                   "the speech (measured: the mouth does not follow it). Both need audio "
                                   "codec2 700C; docs/results.md, Cross-modal features")
    avcc: Optional[str] = Field(None, description="AVCC bundle (default: the shipped one) for audio_coder / "
                                                  "motion_source other than raw / transmitted")
    lips_model: Literal["regressor", "diffusion"] = Field(
        "regressor", description="motion_source 'speech': how the decoder draws the lips: 'regressor' (the "
                                 "integer ridge model, format 1.1) or 'diffusion' (the bundle's denoising "
                                 "diffusion transformer, format 1.3; needs a bundle with diffusion.*; "
                                 "measured no better than the regressor on unseen faces)")
    diffusion_steps: int = Field(
        16, ge=1, le=64, description="lips_model 'diffusion': DDIM steps the decoder runs per block (in the header)")
    diffusion_seed: int = Field(
        0, ge=0, le=0xFFFF_FFFF, description="lips_model 'diffusion': seed of the sampler's noise (in the header)")
    refresh_interval: Optional[float] = Field(
        None, ge=0, le=3600,
        description="random access (format 2.1): every this many seconds (rounded up to whole motion packets) "
                    "the encoder repeats the sequence header in a REFRESH unit, codes a key frame and restarts "
                    "the reference buffer and the motion prediction there, so a receiver that joins late "
                    "(`avfc decode --join`) starts at the next one; with an AVCC mode (format 2.3) the "
                    "cross-modal histories restart there too. None or 0: off (a 2.0 stream)")
    adapt_decoder: bool = Field(
        False, description="instance-adaptive decoder parameters (format 2.2): after a pass has chosen what it "
                           "sends, the encoder fits the model's adaptable set (a few hundred affine terms of its "
                           "last layers) to the clip and sends them in a DECODER_PARAMS unit (about 50-70 "
                           "bytes for mrdac, counted in the rate, repeated after each REFRESH), then codes the clip again "
                           "with them; every choice it makes renders with them. Off by default (measured: "
                           "docs/experiments/2026-12-06-decoder-params.md); needs format_major 2 and an input "
                           "of known length")
    side_info: bool = Field(
        False, description="write a SIDE_INFO unit (reference structure, flags) after every key frame; "
                           "about 25 bytes each, informative only")

    @model_validator(mode="after")
    def _check(self) -> "EncoderConfig":
        if self.reference_mode == "bidirectional" and (self.key_policy != "fixed" or self.key_interval <= 0
                                                        or self.max_refs < 2):
            raise ValueError("bidirectional mode needs key_policy 'fixed', key_interval > 0 and max_refs >= 2")
        if self.uses_avcc and (self.audio != "codec2" or self.codec2_mode != "700C"):
            raise ValueError("audio_coder 'context' and motion_source 'predicted' / 'speech' need "
                                 "audio 'codec2' in mode 700C")
        if self.uses_avcc and self.fps != 25:
            raise ValueError("audio_coder 'context' and motion_source 'predicted' / 'speech' pair one 40 ms "
                             "Codec2 700C frame with each video frame: they need fps 25")
        if (self.motion_stride or 1) > 1 and self.motion_source != "transmitted":
            raise ValueError("motion_stride > 1 needs motion_source 'transmitted'")
        if self.lips_model == "diffusion" and self.motion_source != "speech":
            raise ValueError("lips_model 'diffusion' needs motion_source 'speech'")
        if self.motion_source == "speech" and (self.key_policy != "fixed" or self.reference_mode != "low-delay"):
            raise ValueError("motion_source 'speech' needs key_policy 'fixed' and reference_mode 'low-delay'")
        if self.first_key and not self.one_key_frame:
            raise ValueError("first_key > 0 needs key_policy 'fixed', key_interval 0 (one key frame), reference_mode "
                             "'low-delay' (the stream is written bi-directional), motion_source 'transmitted' and no "
                             "refresh_interval")
        if self.adapt_decoder and self.format_major != 2:
            raise ValueError("adapt_decoder needs format_major 2 (DECODER_PARAMS units exist from format 2.2 on)")
        if self.refresh_interval:
            if self.format_major != 2:
                raise ValueError("refresh_interval needs format_major 2 (REFRESH units exist from format 2.1 on)")
            if self.lips_model == "diffusion":
                raise ValueError("refresh_interval with lips_model 'diffusion' is not supported yet (its blocks "
                                 "and their context do not restart at a REFRESH)")
            if self.reference_mode != "low-delay":
                raise ValueError("refresh_interval needs reference_mode 'low-delay' (bidirectional mode is not "
                                 "supported yet)")
        return self

    @property
    def one_key_frame(self) -> bool:
        """True when the stream has one key frame that ``first_key`` may place after frame 0: the fixed policy with
        ``key_interval`` 0, low delay, no refresh, transmitted motion."""
        return (self.key_policy == "fixed" and self.key_interval == 0 and self.reference_mode == "low-delay"
                and not self.refresh_interval and self.motion_source == "transmitted")

    @property
    def uses_avcc(self) -> bool:
        """True when the stream needs an AVCC bundle (format 1.1)."""
        return self.audio_coder != "raw" or self.motion_source != "transmitted"

    def refresh_frames(self) -> int:
        """Frames between two REFRESH units: ``refresh_interval`` in frames rounded up to whole motion
        packets (at least one packet); 0 when refresh is off."""
        if not self.refresh_interval:
            return 0
        frames = max(1, round(self.refresh_interval * self.fps))
        return max(self.packet_frames, -(-frames // self.packet_frames) * self.packet_frames)

    @classmethod
    def make(cls, config: "EncoderConfig | dict | None" = None, **overrides: object) -> "EncoderConfig":
        """Build a config from another config or a dict plus keyword overrides; ConfigError on bad values."""
        base: dict = {}
        if isinstance(config, EncoderConfig):
            base = config.model_dump()
        elif isinstance(config, dict):
            base = dict(config)
        elif config is not None:
            raise ConfigError(f"config must be an EncoderConfig or a dict, not {type(config).__name__}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**base)
        except ValidationError as e:
            msgs = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"bad encoder configuration: {msgs}") from None
