"""The streaming decoder: .avfc bytes in, frames and audio out.

Push bytes as they arrive (:meth:`Decoder.push`), pull frames in display order
(:meth:`Decoder.pull_frames`) and audio as it comes (:meth:`Decoder.pull_audio`). The decoder's
memory does not grow with the stream's length: it keeps the reference buffer, the units in flight,
what has not been pulled yet and a short history the AVCC modes read (:data:`KEEP_BEHIND` frames);
only what a caller asks for holds the whole stream (``keep_motion=True``, :meth:`audio` without
:meth:`pull_audio`, ``conceal_audio="joint"``). Damaged units are reported in
:attr:`Decoder.issues` and never stop decoding: every intact unit before and
after a damaged one is used, and frames that cannot be drawn (their motion
packet was lost) are concealed by holding the last frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, cast

import numpy as np
import torch

from avfc import bitstream as bs
from avfc.audio import AudioCodec, AudioDecoder, Token
from avfc.avcc.conceal import DEFAULT_STEPS as CONCEAL_STEPS
from avfc.avcc.conceal import concealer_for
from avfc.avcc.diffusion import LipsDiffusion, grid_offsets, keypoints_from_offsets
from avfc.avcc.motion_pred import decode_predicted_motion
from avfc.avcc.tokens import join_700c, split_700c
from avfc.avcc.zoo import AvccBundle, avcc_for_stream
from avfc.codec.common import (
    KEY_CODEC_NAMES,
    MOTION_CODER_LAPLACE_V1,
    audio_codec_for_header,
    check_avcc,
    check_threads,
    make_reference,
    references_for,
    tensor_to_frames,
    with_threads,
)
from avfc.entropy import decode_motion, dequantize, interpolate_track, quantize, sparse_positions
from avfc.errors import (
    AvfcError,
    ConfigError,
    FormatError,
    LimitError,
    ModelMismatchError,
    TruncatedError,
    UnsupportedVersionError,
)
from avfc.media import decode_intra
from avfc.models.base import AnimationModel, Reference
from avfc.models.zoo import keypoint_family, model_for_stream

#: how lost Codec2 frames are filled: "repeat" the last received frame (for at most
#: REPEAT_MAX_SECONDS), "joint": rebuilt by the joint audio-video model from the motion and the
#: audio around them (avfc.avcc.conceal; repeat where it has no model), "none": silence
CONCEAL_MODES = ("repeat", "joint", "none")
REPEAT_MAX_SECONDS = 1
#: how frames whose motion is lost are drawn: "hold" the last output frame, "joint": from keypoints
#: the joint audio-video model samples from the audio of those frames and the motion before them
#: (hold where it has no model)
CONCEAL_MOTION_MODES = ("hold", "joint")
#: sampler steps and seed of the joint model's motion head when it conceals lost motion
CONCEAL_MOTION_STEPS, CONCEAL_MOTION_SEED = 8, 0
#: largest gap (in seconds) of missing frames the decoder conceals past the frames the stream's data reach
#: (motion packets, key frames, audio units; :meth:`Decoder.reach`): a unit that starts further ahead is
#: refused (reported "undecodable"), and at the end of the stream frames are output only up to this far
#: past the data, whatever frame count END_OF_STREAM or the header declares (the rest is reported
#: "limit"). So one unit can make the decoder output at most this many frames (plus its own), about what
#: a motion packet of 1024 frames legitimately does (docs/bitstream.md E.6)
MAX_GAP_SECONDS = 60

#: motion-from-speech streams: most key frames held while waiting for the audio that draws the frames
MAX_PENDING_KEYS = 64
#: predicted-motion streams: most motion packets held while waiting for their audio
MAX_WAITING_PACKETS = 64
#: most key pictures held ahead of the frames drawn: a motion packet's frames (at most 1024) can all be
#: key frames sent before it, plus the pending keys of motion from speech
MAX_KEYS_AHEAD = 1024 + MAX_PENDING_KEYS
#: frames (and 700C audio frames) of history kept behind the oldest frame still to be drawn: what the
#: AVCC paths read back (the motion predictor and the lips regressor at most 16 frames, MAX_HISTORY; the
#: diffusion lips and the joint concealment model a context of at most 64) and the two motion rows a
#: packet is predicted from, with a margin. Older motion rows, key picture keypoints and 700C fields are
#: dropped (unless the caller keeps them: ``keep_motion``, ``conceal_audio="joint"``)
KEEP_BEHIND = 80
#: SIDE_INFO units kept in :attr:`Decoder.side_info` (the most recent)
MAX_SIDE_INFO = 16
#: DECODER_PARAMS (format 2.2): most parameter sets held for frames not drawn yet (each a copy of the model)
MAX_PARAM_SETS_AHEAD = 4
#: issues kept in full in :attr:`Decoder.issues` (the first ones); later ones are only counted, by kind
MAX_ISSUES = 1000
_WAIT, _LOST = "wait", "lost"


@dataclass(frozen=True)
class Issue:
    """Something the decoder had to work around (a damaged unit, a lost packet)."""

    kind: str  # "damage", "lost_motion", "lost_key", "undecodable", "ignored", "side_info", "concealed_audio",
    # "limit", "join"
    message: str
    offset: Optional[int] = None  # byte offset in the stream, when known
    frames: Optional[tuple[int, int]] = None  # [first, last) frames affected


class IssueLog(list):
    """:attr:`Decoder.issues`: a list of the first :data:`MAX_ISSUES` issues, then one ``"limit"`` issue
    saying that later ones are only counted, so that an hour of a lossy call does not grow it without
    bound. ``counts`` holds every issue's kind, kept or not."""

    def __init__(self, limit: Optional[int] = None) -> None:
        super().__init__()
        self.limit = int(MAX_ISSUES if limit is None else limit)
        self.counts: dict[str, int] = {}

    def append(self, issue: Issue) -> None:
        self.counts[issue.kind] = self.counts.get(issue.kind, 0) + 1
        if len(self) < self.limit:
            super().append(issue)
        elif len(self) == self.limit:
            super().append(Issue("limit", f"more than {self.limit} issues: later ones are only counted "
                                 "(Decoder.issues.counts)"))



class Decoder:
    """Incremental .avfc decoder.

    Args:
        device: torch device the model renders on ("cpu" by default).
        model: use this model instead of the one the stream names (for experiments; the
            weights hash is then not checked).
        join: decode a stream fed from any byte (format 2.1, docs/bitstream.md A.14): without a
            sequence header (input that does not start with the preamble, or a damaged header) the
            decoder starts at the first intact REFRESH unit, at its frame (:attr:`first_frame`):
            frames are output from there, and audio from that frame's time.
        conceal_audio, conceal_motion: how lost audio and lost motion are concealed (see
            :func:`avfc.decode`). ``conceal_audio="joint"`` reads the whole stream's audio and
            motion at :meth:`close`: the decoder then holds them (and :meth:`pull_audio` hands
            the audio out only after :meth:`close`).
        keep_motion: keep every decoded motion row (:attr:`motion`, :meth:`motion_array`);
            otherwise rows are dropped once their frames are drawn (memory stays flat).
        on_frame: called with the frame's index each time a frame is drawn or concealed
            (progress; frames are drawn while :meth:`push` and :meth:`close` run).
        threads: torch intra-op threads the model draws with while :meth:`push` and :meth:`close` run
            (None: the process's setting; restored after each call). On a CPU shared with other work
            (an encoder beside it in a call, an app) 1 keeps decoding steady: torch's threads wait on
            each other, and when one of them loses its core every operation waits for it
            (docs/results.md, "Speed and memory").

    Memory: every table is bounded by the reference buffer, the units in flight (motion packets,
    key pictures ahead), what has not been pulled yet (:meth:`pull_frames`, :meth:`pull_audio`) and
    :data:`KEEP_BEHIND` frames of history; a caller that never pulls (frames, or audio until
    :meth:`audio` at the end) holds what it has not pulled.
    """

    def __init__(self, *, device: str | torch.device = "cpu", model: Optional[AnimationModel] = None,
                 conceal_audio: str = "repeat", conceal_motion: str = "hold", join: bool = False,
                 keep_motion: bool = False, on_frame: Optional[Callable[[int], None]] = None,
                 threads: Optional[int] = None) -> None:
        self.threads = check_threads(threads)
        if conceal_audio not in CONCEAL_MODES:
            raise ConfigError(f"conceal_audio must be one of {', '.join(CONCEAL_MODES)}, got {conceal_audio!r}")
        if conceal_motion not in CONCEAL_MOTION_MODES:
            raise ConfigError(f"conceal_motion must be one of {', '.join(CONCEAL_MOTION_MODES)}, got "
                              f"{conceal_motion!r}")
        self.device = torch.device(device)
        self._override_model = model
        self.conceal_audio = conceal_audio
        self.conceal_motion = conceal_motion
        self.keep_motion = bool(keep_motion)
        self._on_frame = on_frame
        # the whole stream's motion, key keypoints and audio tokens: kept when asked, and for joint audio
        self._keep_all = self.keep_motion or conceal_audio == "joint"
        self._key_q: dict[int, np.ndarray] = {}  # quantized keypoints of key pictures (recent ones), by frame
        self.join = bool(join)
        self._parser = bs.StreamParser(join=self.join)
        self._origin = 0  # the first frame output: 0, or the frame of the REFRESH the decoder joined at
        self._header_bytes: Optional[bytes] = None  # the header's payload, which every REFRESH repeats
        self._last_refresh: Optional[int] = None  # frame of the last REFRESH read
        # the reference buffer empties when the key frame of the last REFRESH arrives (at or after this frame;
        # None: no reset pending): until then, were that key frame lost, frames are drawn from the old ones
        self._reset_at: Optional[int] = None
        self._lost_key_reported: Optional[int] = None  # the REFRESH whose lost key frame was reported
        #: motion from speech: key frames held until their time (_pending_keys) that empty the buffer when they
        #: enter it (a REFRESH's; the next REFRESH may be read before the drawing reaches them)
        self._reset_keys: set[int] = set()
        #: format 2.3 (AVCC streams): the frames of the REFRESH units read (the last one at or before the oldest
        #: frame still to draw, and those after it), where every cross-modal history restarts (E.8)
        self._restarts: list[int] = []
        self.header: Optional[bs.SequenceHeader] = None
        self.version: Optional[tuple[int, int]] = None
        self.model: Optional[AnimationModel] = None
        self.audio_codec: Optional[AudioCodec] = None
        self.end: Optional[bs.EndOfStream] = None
        self.issues: IssueLog = IssueLog()
        self.bytes_by_type: dict[str, int] = {}
        self._refs: list[Reference] = []
        self._keys: dict[int, np.ndarray] = {}  # pictures of key frames not drawn yet
        self._ready: dict[int, np.ndarray] = {}
        self._next_render = 0  # next frame index not yet produced
        self._next_out = 0  # next frame index to hand out
        self._reach = 0  # frames the stream's data reach: motion packets, key frames, audio (see reach())
        self._last_frame: Optional[np.ndarray] = None
        self.motion: dict[int, np.ndarray] = {}  # decoded integer motion by frame (all with keep_motion)
        self.audio_tokens: dict[int, Token] = {}  # audio tokens by audio frame, from the first not pulled
        self.side_info: deque[bs.SideInfo] = deque(maxlen=MAX_SIDE_INFO)  # the most recent
        self._bidirectional = False
        self._closed = False
        self._failed: Optional[AvfcError] = None  # why the stream cannot be decoded (its header was refused)
        self.avcc: Optional[AvccBundle] = None
        self._motion_source = bs.MotionSource.TRANSMITTED
        self._fields: dict[int, tuple[int, int, int, int]] = {}  # 700C fields of decoded audio frames
        self._pending_keys: list[Reference] = []  # motion from speech: keys ahead of the rendering
        self._needs_fields = False  # the AVCC modes read the 700C fields of the audio
        self._waiting_motion: list[bs.MotionPred] = []  # predicted motion waiting for its audio
        self._diffusion: Optional[LipsDiffusion] = None  # format 1.3: lips drawn by the diffusion model
        self._diff_block = 0  # next diffusion block to sample
        self._diff_context: Optional[np.ndarray] = None  # the last block's last frames (its context)
        self._diff_offsets: dict[int, np.ndarray] = {}  # sampled offsets of frames not yet drawn
        self._audio_end_frame = 0  # audio frames received: past the last one
        self._audio_next = 0  # next audio frame pull_audio() hands out
        self._audio_pulled = False  # pull_audio() has handed audio out (audio() can no longer)
        self._audio_skip = 0  # samples still to drop at the start of pull_audio's output (after a join)
        self._audio_dec: Optional[AudioDecoder] = None  # the streaming audio decoder of pull_audio()
        self._audio_flushed = False
        self._repeat: tuple[Optional[Token], int] = (None, 0)  # pull_audio's repetition: last token received, run
        self._trimmed_video = 0  # motion rows before this frame were dropped
        self._trimmed_fields = 0  # 700C fields before this audio frame were dropped
        self._trimmed_tokens = 0  # audio tokens before this audio frame were dropped
        # format 2.2: the model each frame is drawn with, from a frame on: (first frame, model adapted by a
        # DECODER_PARAMS unit, or None for the zoo's), in frame order (docs/bitstream.md E.9)
        self._param_sets: list[tuple[int, Optional[AnimationModel]]] = []
        #: the encoder's fit of decoder parameters (avfc.codec.adapt) is handed each frame the model would draw,
        #: (index, refs, kp), instead of the decoder drawing it (a black frame is output in its place)
        self._trace: Optional[Callable[[int, list[Reference], torch.Tensor], None]] = None

    # ------------------------------------------------------------------ input
    @with_threads
    def push(self, data: bytes) -> None:
        """Feed more bytes of the stream (any split is fine)."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise FormatError("decoder is closed")
        for ev in self._parser.feed(bytes(data)):
            self._event(ev)
            self._trim()

    @with_threads
    def close(self) -> None:
        """End of input: flush, conceal missing frames, check the stream was complete."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            return
        for ev in self._parser.close():
            self._event(ev)
            self._trim()
        self._closed = True
        if self.header is None:
            raise TruncatedError("the stream ended before its sequence header" + (
                " or an intact REFRESH unit" if self.join else ""))
        self._decode_waiting(final=True)
        total = self._end_frames()
        if self._motion_source is bs.MotionSource.FROM_SPEECH and self.avcc is not None:
            # frames are drawn up to the data's reach (audio, key frames); those past it are concealed
            self._render_from_speech(final=True, total=None if total is None else min(total, self.reach()))
        if total is not None and self._next_render < total:
            self._conceal(self._next_render, total, "the stream ends before these frames' motion"
                          if self._motion_source is not bs.MotionSource.FROM_SPEECH
                          else "they are past the stream's audio and key frames")
        self._keys.clear()  # nothing more is drawn
        self._trim()

    def _trim(self) -> None:
        """Drop what no later frame or audio output can read (see :data:`KEEP_BEHIND`)."""
        low = self._next_render  # the oldest frame still to be drawn
        if self._waiting_motion:
            low = min(low, int(self._waiting_motion[0].first_frame))
        if self._diffusion is not None:  # blocks are sampled in order, from the first not sampled yet
            low = min(low, self._diff_block * self._diffusion.meta.block)
        while len(self._param_sets) > 1 and self._param_sets[1][0] <= self._next_render:
            self._param_sets.pop(0)  # superseded before the next frame drawn
        low -= KEEP_BEHIND
        if not self._keep_all and low > self._trimmed_video:
            for i in range(self._trimmed_video, low):
                self.motion.pop(i, None)
            old = sorted(k for k in self._key_q if k <= low)  # the last key picture at or before low stays
            for k in old[:-1]:
                del self._key_q[k]
            self._trimmed_video = low
        while len(self._restarts) > 1 and self._restarts[1] <= low:
            self._restarts.pop(0)
        if low > self._trimmed_fields:
            for i in range(self._trimmed_fields, low):
                self._fields.pop(i, None)
            self._trimmed_fields = low
        # audio tokens: those pull_audio() has not handed out, and the joint motion concealment's context
        tokens = self._audio_next if self.conceal_motion != "joint" else min(self._audio_next, low)
        if not self._keep_all and tokens > self._trimmed_tokens:
            for i in range(self._trimmed_tokens, tokens):
                self.audio_tokens.pop(i, None)
            self._trimmed_tokens = tokens

    @property
    def first_frame(self) -> int:
        """The first frame the decoder outputs: 0, or after joining a stream at a REFRESH (``join=True``)
        that REFRESH's frame. :meth:`pull_frames` returns frames ``first_frame, first_frame + 1, ...``
        and :meth:`audio` starts at its time."""
        return self._origin

    def reach(self) -> int:
        """Frames the stream's data reach so far: past the last frame of every motion packet and key frame
        accepted, and of the video time the audio units received cover (or the frames already output,
        if more). A unit may start at most :data:`MAX_GAP_SECONDS` past it, and the frames output at the
        end stop there too."""
        return max(self._reach, self._next_render)

    def _gap_frames(self) -> int:
        """:data:`MAX_GAP_SECONDS` in frames of the stream."""
        assert self.header is not None
        return MAX_GAP_SECONDS * int(self.header.fps_num) // int(self.header.fps_den)

    def _end_frames(self) -> Optional[int]:
        """The frames output in all: the declared count (END_OF_STREAM, else the header's), but no more
        than :data:`MAX_GAP_SECONDS` past the data (:meth:`reach`); None when none is declared."""
        total = self._expected_frames()
        if total is None or self.header is None:
            return total
        limit = self.reach() + self._gap_frames()
        if total > limit:
            self.issues.append(Issue(
                "limit", f"the stream declares {total} frames but its data reach frame {self.reach()}: frames "
                f"{limit}..{total - 1} are not output (at most {MAX_GAP_SECONDS} s are concealed past the data)",
                frames=(limit, total)))
            return limit
        return total

    def _expected_frames(self) -> Optional[int]:
        if self.end is not None:
            return int(self.end.frame_count)
        if self.header is not None and self.header.frame_count:
            return int(self.header.frame_count)
        return None

    def _event(self, ev: object) -> None:
        if isinstance(ev, bs.Damage):
            if ev.reason is bs.DamageReason.JOIN:
                self.issues.append(Issue("join", f"{ev.length} bytes skipped to join the stream at its first intact "
                                         "REFRESH unit", ev.offset))
                return
            self.issues.append(Issue("damage", f"damaged bytes skipped ({ev.reason})", ev.offset))
            return
        assert isinstance(ev, bs.Unit)
        name = _unit_name(ev.type)
        self.bytes_by_type[name] = self.bytes_by_type.get(name, 0) + len(ev.payload)
        try:
            assert self._parser.version is not None  # the parser yields units only after the preamble
            payload = bs.decode_payload(ev, self._parser.version[0])
        except AvfcError as e:
            self.issues.append(Issue("damage", f"{name} unit at byte {ev.offset} is malformed: {e}", ev.offset))
            return
        if payload is None:  # unknown unit type of a newer minor version: skip
            return
        if isinstance(payload, bs.SequenceHeader):
            if self.header is None:
                try:
                    self._start(payload)
                    self._header_bytes = ev.payload
                except AvfcError as e:  # nothing can be decoded: every later push() and close() says so
                    self._failed = e
                    raise
            return
        if isinstance(payload, bs.Refresh) and (self.header is not None or self.join):
            self._refresh(payload, ev.offset)
            return
        if self.header is None:
            self.issues.append(Issue("ignored", f"{name} unit before the sequence header", ev.offset))
            return
        before = self._before_origin(payload)
        if before is not None:
            self.issues.append(Issue("ignored", f"{name} unit at byte {ev.offset} is for frame {before}, before "
                                     f"frame {self._origin} where the decoder joined the stream", ev.offset))
            return
        try:
            if isinstance(payload, bs.KeyFrame):
                self._key_frame(payload)
            elif isinstance(payload, (bs.Motion, bs.MotionPred, bs.MotionSparse)):
                self._motion(payload, ev.offset)
            elif isinstance(payload, (bs.Audio, bs.AudioCtx)):
                self._audio(payload, ev.offset)
            elif isinstance(payload, bs.SideInfo):
                self._side_info(payload, ev.offset)
            elif isinstance(payload, bs.DecoderParams):
                self._decoder_params(payload, ev.offset)
            elif isinstance(payload, bs.EndOfStream):
                self.end = payload
        except AvfcError as e:
            self.issues.append(Issue("undecodable", f"{name} unit at byte {ev.offset}: {e}", ev.offset))

    def _before_origin(self, payload: object) -> Optional[int]:
        """The frame of a key frame or motion packet that starts before :attr:`first_frame` (such units
        are ignored after a join), else None. Audio units are trimmed instead (:meth:`_audio`)."""
        if not self._origin:
            return None
        if isinstance(payload, (bs.KeyFrame, bs.DecoderParams)) and int(payload.frame_index) < self._origin:
            return int(payload.frame_index)
        if isinstance(payload, (bs.Motion, bs.MotionPred, bs.MotionSparse)) and int(payload.first_frame) < self._origin:
            return int(payload.first_frame)
        return None

    def _refresh(self, r: bs.Refresh, offset: int) -> None:
        """A REFRESH unit (format 2.1, docs/bitstream.md E.8): start from it (join, no header yet), or check
        it repeats the stream's header and empty the reference buffer for the key frame at its frame."""
        f = int(r.frame_index)
        if self.header is None:  # join: the stream starts here
            try:
                if self._parser.version is not None and r.version != self._parser.version:
                    raise FormatError(f"REFRESH unit at byte {offset} says version {r.major}.{r.minor}, the "
                                      f"stream's preamble {self._parser.version[0]}.{self._parser.version[1]}")
                self._check_version(r.version)
                header = r.sequence_header()
                self._origin = self._next_render = self._next_out = self._reach = f
                self._start(header)
                self.version = r.version
                self._header_bytes = r.header
            except AvfcError as e:
                self._failed = e
                raise
            self._last_refresh = f
            self._restarts = [f]
            return
        if r.version != self.version or r.header != self._header_bytes:
            self._failed = FormatError(
                f"REFRESH unit at byte {offset} repeats a different sequence header or version than the stream's: "
                "a stream cannot change its header mid-stream")
            raise self._failed
        if f < self._next_render:
            self.issues.append(Issue("undecodable", f"REFRESH unit at byte {offset} is for frame {f}, which is "
                                     "already decoded: ignored", offset))
            return
        if f >= self._max_frame():
            self.issues.append(Issue("undecodable", f"REFRESH unit at byte {offset} is for frame {f}, beyond the "
                                     f"stream's frames (or more than {MAX_GAP_SECONDS} s past its data): ignored",
                                     offset))
            return
        # the key frame at f, which follows, is the only reference (E.8): the buffer empties when it comes
        # (_add_reference), so that, were it lost, its frames are drawn from the references before the REFRESH
        # (concealment, reported) rather than held on the last frame until the next one
        self._reset_at = f
        self._last_refresh = f
        if not self._restarts or f > self._restarts[-1]:
            self._restarts.append(f)
        self._set_params(f, None)  # the zoo's parameters from f, unless a DECODER_PARAMS follows (E.9)

    def _start(self, header: bs.SequenceHeader) -> None:
        self.header = header
        self.version = getattr(self._parser, "version", None)
        self._check_version(self.version)
        if int(header.motion_coder) != MOTION_CODER_LAPLACE_V1:
            raise FormatError(f"unknown motion coder id {header.motion_coder}")
        if int(header.key_codec) not in KEY_CODEC_NAMES:
            raise FormatError(f"unknown key-frame codec id {header.key_codec}")
        if self._override_model is not None:
            self.model = self._override_model
        else:
            self.model = model_for_stream(header.model_name, header.weights_sha256, int(header.width))
        if self.model.num_kp != header.kp_count or self.model.kp_dim != header.kp_dim:
            raise FormatError(
                f"stream has {header.kp_count}x{header.kp_dim} keypoint values per frame, model "
                f"{header.model_name!r} uses {self.model.num_kp}x{self.model.kp_dim}")
        self.model = self.model.to(self.device)
        self.audio_codec = audio_codec_for_header(header)
        ac = self.audio_codec
        if ac is not None and (int(header.audio_sample_rate), int(header.audio_frame_samples)) != (
                ac.sample_rate, ac.frame_samples):
            self.issues.append(Issue("ignored", f"the header says {header.audio_sample_rate} Hz audio in frames of "
                                     f"{header.audio_frame_samples} samples; this codec decodes {ac.sample_rate} Hz "
                                     f"in frames of {ac.frame_samples} (docs/bitstream.md C.1): the header's are "
                                     "ignored"))
        self._bidirectional = int(header.reference_mode) == int(bs.ReferenceMode.BIDIRECTIONAL)
        self._motion_source = bs.MotionSource(int(header.motion_source))
        if header.avcc_name is not None:
            assert header.avcc_sha256 is not None
            self.avcc = avcc_for_stream(header.avcc_name, header.avcc_sha256)
            check_avcc(self.avcc, self.model, int(header.kp_precision))
            if header.diffusion_lips:
                if self.avcc.diffusion is None:
                    raise ModelMismatchError(f"the stream draws the lips with a diffusion model (format 1.3), "
                                             f"which AVCC bundle {header.avcc_name!r} does not have")
                self._diffusion = self.avcc.diffusion
        self._needs_fields = (int(header.audio_coder) == int(bs.AudioCoder.CONTEXT)
                              or self._motion_source is not bs.MotionSource.TRANSMITTED)
        if self._needs_fields and (int(header.audio_codec) != int(bs.AudioCodecId.CODEC2)
                                   or int(header.audio_param) != 700):
            raise FormatError("AVCC audio coding and speech-driven motion need Codec2 700C audio")

    @staticmethod
    def _check_version(version: Optional[tuple[int, int]]) -> None:
        """Refuse a major-2 stream of a minor this decoder does not know (docs/bitstream.md A.15.4): from 2.2
        on a minor may add units that change what is drawn (DECODER_PARAMS), which a decoder must not skip."""
        if version is None or version[0] != 2 or version[1] <= bs.FORMAT_VERSION[1]:
            return
        raise UnsupportedVersionError(
            f"stream is .avfc version {version[0]}.{version[1]}; this decoder reads versions up to "
            f"{bs.FORMAT_VERSION[0]}.{bs.FORMAT_VERSION[1]} (a later minor version may carry units, such as "
            "decoder parameters, that change every picture: decoding without them would be wrong)")

    def _history_floor(self, idx: int) -> int:
        """The first audio frame the cross-modal models may read for frame ``idx``: in a stream of version 2.3 or
        later with the AVCC extension, the frame of the last REFRESH at or before ``idx`` (every cross-modal
        history restarts there, docs/bitstream.md E.8); else 0 (what a REFRESH leaves unchanged before 2.3)."""
        if self.avcc is None or self.version is None or tuple(self.version) < bs.VERSION_2_3:
            return 0
        floor = 0
        for f in self._restarts:
            if f > idx:
                break
            floor = f
        return floor

    # ------------------------------------------------------------------ video
    def _model_at(self, idx: int) -> AnimationModel:
        """The model frame ``idx`` is drawn with: the zoo's, or as the last DECODER_PARAMS unit for a frame
        at or before ``idx`` adapted it (format 2.2, E.9)."""
        assert self.model is not None
        chosen: Optional[AnimationModel] = None
        for first, model in self._param_sets:
            if first > idx:
                break
            chosen = model
        return chosen if chosen is not None else self.model

    def _set_params(self, f: int, model: Optional[AnimationModel]) -> None:
        """Draw frames from ``f`` on with ``model`` (None: the zoo's) until the next set."""
        sets = [(g, m) for g, m in self._param_sets if g < f]
        if model is None and not sets and not self._param_sets:
            return  # nothing was ever adapted: the zoo's model already
        if len([g for g, _ in sets if g >= self._next_render]) >= MAX_PARAM_SETS_AHEAD:
            raise LimitError(f"more than {MAX_PARAM_SETS_AHEAD} decoder parameter sets ahead of the frames drawn")
        self._param_sets = sets + [(f, model)]

    def _decoder_params(self, p: bs.DecoderParams, offset: int) -> None:
        """A DECODER_PARAMS unit (format 2.2, docs/bitstream.md E.9): the model's adaptable set changed by
        ``values * 2^-shift``, for the frames from ``frame_index`` on (a copy of the model: the zoo's
        shared object is never changed)."""
        assert self.model is not None
        f = int(p.frame_index)
        n = self.model.adapt_size()
        if len(p.values) != n:
            name = self.header.model_name if self.header is not None else "?"
            raise FormatError(f"DECODER_PARAMS has {len(p.values)} values; the adaptable set {p.param_set} of "
                              f"model {name!r} has {n}")
        if f < self._next_render:
            self.issues.append(Issue("ignored", f"DECODER_PARAMS unit at byte {offset} is for frame {f}, which is "
                                     "already decoded", offset))
            return
        if f >= self._max_frame():
            raise LimitError(f"DECODER_PARAMS for frame {f} is beyond the stream's frames (or more than "
                             f"{MAX_GAP_SECONDS} s past its data, which reach frame {self.reach()})")
        deltas = np.asarray(p.values, dtype=np.float64) * 2.0 ** -int(p.shift)
        self._set_params(f, self.model.adapted(deltas) if n else None)

    def _max_frame(self) -> int:
        """A unit's frames must end at or before this: within the header's frame count, when it declares
        one, and at most MAX_GAP_SECONDS (plus a packet's 1024 frames) past the data (:meth:`reach`)."""
        assert self.header is not None
        limit = self.reach() + self._gap_frames() + 1024
        if self.header.frame_count:
            return min(int(self.header.frame_count), limit)
        return limit

    def _key_frame(self, kf: bs.KeyFrame) -> None:
        assert self.header is not None and self.model is not None
        if kf.frame_index >= self._max_frame():
            raise LimitError(f"key frame index {kf.frame_index} is beyond the stream's frames (or more than "
                             f"{MAX_GAP_SECONDS} s past its data, which reach frame {self.reach()})")
        codec = KEY_CODEC_NAMES[int(self.header.key_codec)]
        pic = decode_intra(kf.data, codec, self.header.width, self.header.height)
        ref = make_reference(self.model, pic, kf.frame_index, self.header.kp_precision, self.device)
        if kf.frame_index >= self._next_render:  # (a key of a frame already output is only a reference)
            if len(self._keys) >= MAX_KEYS_AHEAD and kf.frame_index not in self._keys:
                raise LimitError(f"more than {MAX_KEYS_AHEAD} key pictures ahead of the frames drawn")
            self._keys[kf.frame_index] = self._key_output(ref, pic)
        self._reach = max(self._reach, int(kf.frame_index) + 1)
        if self._motion_source is bs.MotionSource.FROM_SPEECH and kf.frame_index > self._next_render:
            # the frames before it are drawn when their audio arrives: hold it until then
            if len(self._pending_keys) >= MAX_PENDING_KEYS:
                raise LimitError(f"more than {MAX_PENDING_KEYS} key frames ahead of the audio")
            if self._reset_at is not None and kf.frame_index >= self._reset_at:
                self._reset_keys.add(int(kf.frame_index))  # it restarts the buffer when it enters it
                self._reset_at = None
            self._pending_keys.append(ref)
            return
        self._add_reference(ref)

    @torch.no_grad()
    def _key_output(self, ref: Reference, pic: np.ndarray) -> np.ndarray:
        """What a key frame shows (docs/bitstream.md E.2): its decoded picture, or, for a model
        with ``render_keys``, the model's render of it from itself with its own keypoints."""
        assert self.model is not None
        if not self.model.render_keys:
            return pic
        model = self._model_at(ref.frame_index)
        if self._trace is not None:
            self._trace(ref.frame_index, [ref], ref.keypoints)
            return np.zeros_like(pic)
        return tensor_to_frames(model.render([ref], ref.keypoints, ref.frame_index).cpu())[0]

    def _add_reference(self, ref: Reference) -> None:
        assert self.header is not None
        if ref.frame_index in self._reset_keys:
            self._reset_keys.discard(ref.frame_index)
            self._refs = []
        elif self._reset_at is not None and ref.frame_index >= self._reset_at:
            self._refs = []  # the REFRESH's key frame (or, that one lost, a later one): the buffer restarts
            self._reset_at = None
        self._key_q[ref.frame_index] = quantize(ref.keypoints[0].cpu().numpy().astype(np.float64).reshape(-1),
                                                int(self.header.kp_precision))
        self._refs.append(ref)
        self._refs = self._refs[-int(self.header.max_refs):]  # bounded buffer

    def _side_info(self, si: bs.SideInfo, offset: int) -> None:
        """Informative: check the encoder's reference structure against our buffer."""
        self.side_info.append(si)
        mine = tuple(r.frame_index for r in self._refs)
        if si.base_picture and si.refs and si.refs != mine:
            self.issues.append(Issue("side_info", f"side info says the references are {list(si.refs)}, "
                                     f"the decoder has {list(mine)} (a key frame was lost?)", offset))

    def _motion(self, m: bs.Motion | bs.MotionPred | bs.MotionSparse, offset: int) -> None:
        assert self.header is not None and self.model is not None
        predicted = isinstance(m, bs.MotionPred)
        expected = bs.MotionSource.PREDICTED if predicted else bs.MotionSource.TRANSMITTED
        if self._motion_source is not expected:
            raise FormatError(f"{type(m).__name__} unit in a stream whose motion source is "
                              f"{self._motion_source.name}")
        first, n = int(m.first_frame), int(m.num_frames)
        if first + n > self._max_frame():
            raise LimitError(f"motion packet for frames {first}..{first + n - 1} is beyond the stream (or more "
                             f"than {MAX_GAP_SECONDS} s past its data, which reach frame {self.reach()})")
        if first < self._next_render:
            raise FormatError(f"motion packet for frames {first}.. repeats frames already decoded")
        self._reach = max(self._reach, first + n)
        if isinstance(m, bs.MotionPred) and (self._waiting_motion or self._pred_rows(m) is _WAIT):
            # its audio has not arrived yet (it normally comes first): decode it when it does
            if len(self._waiting_motion) >= MAX_WAITING_PACKETS:
                raise LimitError(f"more than {MAX_WAITING_PACKETS} motion packets wait for their audio")
            self._waiting_motion.append(m)
            return
        self._decode_motion(m)

    def _pred_rows(self, m: bs.MotionPred, final: bool = False) -> np.ndarray | str:
        """The audio rows predicted-motion packet ``m`` reads (F.4.1; from 2.3 none before its REFRESH, E.8), or
        ``_WAIT`` / ``_LOST`` (:meth:`_audio_rows`)."""
        assert self.avcc is not None
        first = int(m.first_frame)
        return self._audio_rows(first - self.avcc.motion.history, first + int(m.num_frames), final=final,
                                floor=self._history_floor(first))

    def _decode_waiting(self, final: bool) -> None:
        """Decode the predicted-motion packets whose audio is complete (all of them at the end)."""
        while self._waiting_motion:
            m = self._waiting_motion[0]
            if not final and self._pred_rows(m) is _WAIT:
                return
            self._waiting_motion.pop(0)
            try:
                self._decode_motion(m, final=final)
            except AvfcError as e:
                self.issues.append(Issue("undecodable", f"motion_pred unit for frames {m.first_frame}..: {e}"))

    def _decode_motion(self, m: bs.Motion | bs.MotionPred | bs.MotionSparse, final: bool = False) -> None:
        assert self.header is not None and self.model is not None
        first, n = int(m.first_frame), int(m.num_frames)
        if first > self._next_render:
            self._conceal(self._next_render, first, "their motion packet is missing or damaged")
        intra = bool(int(m.flags) & bs.MOTION_FLAG_INTRA)
        prev = None
        if not intra and first == self._last_refresh:
            self._conceal(first, first + n, f"a predicted motion packet starts at the REFRESH of frame {first} "
                          "(motion restarts there: the packet must be INTRA)")
            return
        if not intra:
            prev = self.motion.get(first - 1)
            if prev is None:
                self._conceal(first, first + n, "its motion packet depends on a lost packet")
                return
        if isinstance(m, bs.MotionPred):
            assert self.avcc is not None
            if prev is not None:
                before = self.motion.get(first - 2, prev if first < 2 else None)
                if before is None:  # the encoder's predictor saw that frame: it is lost here
                    self._conceal(first, first + n, "its motion packet depends on a lost packet")
                    return
                prev = np.stack([prev, before])  # last frame first
            audio = self._pred_rows(m, final=final)
            if not isinstance(audio, np.ndarray):
                self._conceal(first, first + n, "the audio their predicted motion depends on is lost")
                return
            q = decode_predicted_motion(m.data, n, self.model.motion_channels, self.avcc.motion, audio, prev)
        elif isinstance(m, bs.MotionSparse):
            coded = decode_motion(m.data, len(sparse_positions(n, m.stride)), self.model.motion_channels, prev)
            q = interpolate_track(coded, n, m.stride)
        else:
            q = decode_motion(m.data, n, self.model.motion_channels, prev)
        for i in range(n):
            self.motion[first + i] = q[i]
        self._render(first, q)

    @torch.no_grad()
    def _render(self, first: int, q: np.ndarray) -> None:
        assert self.header is not None and self.model is not None
        kp = torch.from_numpy(dequantize(q, self.header.kp_precision)).to(self.device)
        i = 0
        while i < len(q):
            idx = first + i
            if idx in self._keys:
                self._emit(idx, self._keys[idx])
                i += 1
                continue
            refs = references_for(self._refs, idx, self._bidirectional)
            if not refs:
                self._conceal(idx, idx + 1, "no reference frame precedes it")
                i += 1
                continue
            if self._reset_at is not None and idx >= self._reset_at:
                self._lost_refresh_key(idx)
            # one frame per call: on a 2-core CPU, batches of 8 frames cost 3x more per frame
            # (benchmarks/speed.py), and each frame gets its own temporal reference weights
            if self._trace is not None:  # the encoder's fit: not drawn here
                self._trace(idx, refs, kp[i:i + 1])
                self._emit(idx, np.zeros((self.header.height, self.header.width, 3), np.uint8))
                i += 1
                continue
            out = self._model_at(idx).render(refs, kp[i:i + 1], idx)
            self._emit(idx, tensor_to_frames(out.cpu())[0])
            i += 1

    def _lost_refresh_key(self, idx: int) -> None:
        """Frame ``idx`` is past the last REFRESH but its key frame has not come (lost): it is drawn from the
        references before the REFRESH; reported once per REFRESH."""
        f = self._reset_at
        assert f is not None  # called only while frames are past a REFRESH whose key has not come
        if self._lost_key_reported != f:
            self._lost_key_reported = f
            self.issues.append(Issue("lost_key", f"the key frame of the REFRESH at frame {f} is missing: frames "
                                     f"from {idx} on are drawn from the references before it until a key frame "
                                     "comes", frames=(f, f + 1)))

    def _emit(self, idx: int, frame: np.ndarray) -> None:
        self._ready[idx] = frame
        self._last_frame = frame
        self._next_render = idx + 1
        self._keys.pop(idx, None)  # drawn: its picture is in _ready until pulled (the reference stays)
        if self._on_frame is not None:
            self._on_frame(idx)

    def _conceal(self, first: int, last: int, why: str) -> None:
        if last <= first:
            return
        drawn = self._conceal_motion_joint(first, last) if self.conceal_motion == "joint" else False
        self.issues.append(Issue("lost_motion", f"frames {first}..{last - 1} concealed"
                                 f"{' by the joint model' if drawn else ''}: {why}", frames=(first, last)))
        if drawn:
            return
        for idx in range(first, last):
            frame = self._keys.get(idx, self._last_frame)
            if frame is None and self._keys:
                frame = self._keys[min(self._keys)]
            if frame is None:
                assert self.header is not None
                frame = np.zeros((self.header.height, self.header.width, 3), np.uint8)
            self._emit(idx, frame)

    def _joint_model(self):
        h = self.header
        if (h is None or self._override_model is not None or int(h.audio_codec) != int(bs.AudioCodecId.CODEC2)
                or int(h.audio_param) != 700 or h.fps_num != 25 * h.fps_den):
            return None
        try:
            return concealer_for(keypoint_family(str(h.model_name)), int(h.kp_precision))
        except AvfcError as exc:
            self.issues.append(Issue("concealed_audio", f"no joint concealment: {exc}", None))
            return None

    @torch.no_grad()
    def _conceal_motion_joint(self, first: int, last: int) -> bool:
        """Draw frames ``first..last-1`` from keypoints the joint model samples (its motion head, DDIM,
        fixed seed) from the audio received for them and the motion before them. False (nothing drawn)
        when there is no model for the stream or no reference."""
        assert self.header is not None and self.model is not None
        concealer = self._joint_model()
        if concealer is None or not self._key_q or (min(self._key_q) > first and not self._bidirectional):
            return False  # (bi-directional: frames before the first key frame are drawn from it, and offset from it)
        net = concealer.net
        m = net.meta
        rows_all = {i: split_700c(int(t)) for i in range(max(first - m.context, 0), last + m.block + m.lookahead)
                    if (t := self.audio_tokens.get(i)) is not None}
        for s in range(first, last, m.block):
            rows = np.full((m.tokens, 4), -1, np.int64)
            for j in range(m.tokens):
                if s - m.context + j in rows_all:
                    rows[j] = rows_all[s - m.context + j]
            # the context: the offsets of the m.context frames before s (all known, else none)
            offsets, known = self.lips_offsets(s, m.channels, start=s - m.context)
            ctx = offsets if m.context and s >= m.context and known.all() else None
            off = net.sample_block(s, rows, ctx, CONCEAL_MOTION_SEED, CONCEAL_MOTION_STEPS)
            for i in range(min(m.block, last - s)):
                idx = s + i
                if idx in self._keys:
                    self._emit(idx, self._keys[idx])
                    continue
                refs = references_for(self._refs, idx, self._bidirectional)
                if not refs:
                    self._emit(idx, self._last_frame if self._last_frame is not None else self._keys[min(self._keys)])
                    continue
                base = max((k for k in self._key_q if k <= idx), default=min(self._key_q))
                q = keypoints_from_offsets(self._key_q[base], off[i])[None]
                kp = torch.from_numpy(dequantize(q, self.header.kp_precision)).to(self.device)
                self._emit(idx, tensor_to_frames(self._model_at(idx).render(refs, kp, idx).cpu())[0])
        return True

    # ------------------------------------------------------------------ audio
    def _audio(self, a: bs.Audio | bs.AudioCtx, offset: int) -> None:
        assert self.header is not None
        if self.audio_codec is None:
            raise FormatError("audio unit in a stream whose header says it has no audio")
        context = isinstance(a, bs.AudioCtx)
        if context != (int(self.header.audio_coder) == int(bs.AudioCoder.CONTEXT)):
            raise FormatError(f"{type(a).__name__} unit in a stream whose audio coder is "
                              f"{bs.AudioCoder(int(self.header.audio_coder)).name}")
        first_frame, end_frame = int(a.first_frame), int(a.first_frame) + int(a.num_frames)
        if self._video_frames_of(first_frame) > self.reach() + self._gap_frames():
            raise LimitError(f"audio unit for audio frames {first_frame}.. starts more than {MAX_GAP_SECONDS} s "
                             f"past the stream's data, which reach frame {self.reach()}")
        tokens: Sequence[Token]
        if context:
            assert self.avcc is not None
            tokens = self.avcc.audio.decode(a.data, int(a.num_frames))
        else:
            tokens = self.audio_codec.unpack(a.data, int(a.num_frames))
        start = self.audio_start_frame
        for i, t in enumerate(tokens):
            k = int(a.first_frame) + i
            if k < start:
                continue  # before the time of the frame the decoder joined at: trimmed
            if k >= self._trimmed_tokens:  # (before it: handed out already, or read by nothing)
                self.audio_tokens[k] = t
            if self._needs_fields and k >= self._trimmed_fields:
                self._fields[k] = cast(tuple[int, int, int, int], tuple(split_700c(int(t))))
        if tokens:
            self._audio_end_frame = max(self._audio_end_frame, int(a.first_frame) + len(tokens))
        self._reach = max(self._reach, self._video_frames_of(end_frame))
        if self._motion_source is bs.MotionSource.FROM_SPEECH:
            self._render_from_speech(final=False)
        self._decode_waiting(final=False)

    def _origin_sample(self) -> int:
        """The audio sample at the time of :attr:`first_frame` (rounded down)."""
        assert self.header is not None and self.audio_codec is not None
        return (self._origin * int(self.header.fps_den) * self.audio_codec.sample_rate
                // int(self.header.fps_num))

    @property
    def audio_start_frame(self) -> int:
        """The first audio frame decoded: 0, or after a join the one holding the time of :attr:`first_frame`."""
        if not self._origin or self.header is None or self.audio_codec is None:
            return 0
        return self._origin_sample() // self.audio_codec.frame_samples

    def _video_frames_of(self, audio_frames: int) -> int:
        """The video frames (rounded up) that the time of ``audio_frames`` audio frames spans."""
        assert self.header is not None and self.audio_codec is not None
        num = audio_frames * self.audio_codec.frame_samples * int(self.header.fps_num)
        return -(-num // (self.audio_codec.sample_rate * int(self.header.fps_den)))

    def _audio_end(self) -> int:
        """Audio frames received so far: past the last one."""
        return self._audio_end_frame

    def _known_rows(self, start: int, end: int, floor: int = 0) -> np.ndarray:
        """700C fields of audio frames ``start..end-1``, -1 for every frame not received (and before ``floor``)."""
        out = np.full((max(end - start, 0), 4), -1, dtype=np.int64)
        for i in range(max(start, floor, 0), end):
            row = self._fields.get(i)
            if row is not None:
                out[i - start] = row
        return out

    def _audio_rows(self, start: int, end: int, final: bool = False, floor: int = 0) -> np.ndarray | str:
        """700C fields of audio frames ``start..end-1`` as the encoder's predictor saw them.

        Rows before frame 0 (or ``floor``: from 2.3, the REFRESH the frames follow) and past the end of the
        stream's audio are -1. Returns ``_LOST`` when
        a frame the encoder had is missing (a later one has arrived, or the stream has ended),
        ``_WAIT`` when frames may still arrive (the encoder writes them before the motion that
        needs them, so this happens only after a loss or at the end of the stream).
        """
        out = np.full((max(end - start, 0), 4), -1, dtype=np.int64)
        received_end = self._audio_end_frame
        total = int(self.end.audio_frame_count) if self.end is not None else None
        for i in range(max(start, floor, 0), end):
            row = self._fields.get(i)
            if row is not None:
                out[i - start] = row
            elif total is not None and i >= total:
                continue  # past the stream's audio: unknown on both sides
            elif i < received_end or final or total is not None:
                return _LOST
            else:
                return _WAIT
        return out

    def _render_from_speech(self, final: bool, total: Optional[int] = None) -> None:
        """Motion from speech: draw every frame whose audio window has arrived (all at the end: up to
        ``total``, the frames :meth:`close` outputs, else the audio's end)."""
        assert self.header is not None and self.avcc is not None and self.model is not None
        lips, diff = self.avcc.lips, self._diffusion
        if not final:
            total = self._expected_frames()
        if final:
            limit = total if total is not None else self._audio_end()
        else:
            if diff is None:
                limit = self._audio_end() - lips.lookahead
            else:  # whole blocks whose window (lookahead included) has arrived
                m = diff.meta
                limit = max(self._audio_end() - m.lookahead, 0) // m.block * m.block
            if total is not None:
                limit = min(limit, total)
        while self._next_render < limit:
            idx = self._next_render
            while self._pending_keys and self._pending_keys[0].frame_index <= idx:
                self._add_reference(self._pending_keys.pop(0))
            refs = references_for(self._refs, idx, False)
            if idx in self._keys:
                self._emit(idx, self._keys[idx])
                continue
            if not self._heard(*self._speech_window(idx)):
                # nothing to draw it from: concealed, with the frames after it that have no audio either
                end = idx + 1
                while end < limit and not self._heard(*self._speech_window(end)):
                    end += 1
                self._conceal(idx, end, "no audio frame of their window was received")
                continue
            if not refs:
                self._conceal(idx, idx + 1, "no reference frame precedes it")
                continue
            base = refs[-1]
            ref_q = quantize(base.keypoints[0].cpu().numpy().astype(np.float64).reshape(-1),
                             int(self.header.kp_precision))
            if diff is not None:
                q = keypoints_from_offsets(ref_q, self._diffusion_offsets(idx))[None]
            else:
                audio = self._known_rows(idx - lips.history, idx + 1 + lips.lookahead, self._history_floor(idx))
                q = lips.generate(ref_q, audio)
            self.motion[idx] = q[0]
            kp = torch.from_numpy(dequantize(q, self.header.kp_precision)).to(self.device)
            with torch.no_grad():
                out = self._model_at(idx).render(refs, kp, idx)
            self._emit(idx, tensor_to_frames(out.cpu())[0])

    def _speech_window(self, idx: int) -> tuple[int, int]:
        """The audio frames ``[start, end)`` frame ``idx`` is drawn from: those the lips regressor reads (F.5),
        or with diffusion lips those of its block's window (F.10)."""
        assert self.avcc is not None
        if self._diffusion is not None:
            m = self._diffusion.meta
            k = idx // m.block
            return k * m.block - m.context, (k + 1) * m.block + m.lookahead
        return max(idx - self.avcc.lips.history, self._history_floor(idx)), idx + 1 + self.avcc.lips.lookahead

    def _heard(self, start: int, end: int) -> bool:
        """Whether any audio frame of ``[start, end)`` has been received (its 700C fields decoded)."""
        return any(i in self._fields for i in range(max(start, 0), end))

    def _diffusion_offsets(self, idx: int) -> np.ndarray:
        """Offsets of frame ``idx`` from the diffusion model (format 1.3, docs/bitstream.md F.10).

        Blocks are sampled in order, each once, from the audio rows received (unknown where not)
        and the previous block's output, so a frame's offsets do not depend on when it is drawn.
        """
        assert self._diffusion is not None and self.header is not None
        m = self._diffusion.meta
        while self._diff_block <= idx // m.block:
            k = self._diff_block
            if not self._heard(k * m.block - m.context, (k + 1) * m.block + m.lookahead):
                # no audio to sample it from (its frames are concealed): not sampled, the next block
                # starts without context, as block 0 does
                self._diff_context = None
                self._diff_block += 1
                continue
            rows = self._known_rows(k * m.block - m.context, (k + 1) * m.block + m.lookahead)
            off = self._diffusion.sample_block(k, rows, self._diff_context, int(self.header.diffusion_seed),
                                               int(self.header.diffusion_steps))
            self._diff_context = self._diffusion.context_of(off)
            for i in range(m.block):
                self._diff_offsets[k * m.block + i] = off[i]
            self._diff_block += 1
        for old in [i for i in self._diff_offsets if i < idx]:  # frames drawn otherwise (key, concealed)
            del self._diff_offsets[old]
        return self._diff_offsets.pop(idx)

    def audio(self) -> Optional[np.ndarray]:
        """The whole stream's decoded audio (float32 mono), after :meth:`close`; lost frames are
        concealed. After a join (:attr:`first_frame` > 0) it starts at the time of that frame. The decoder
        holds every audio token until then (a few KiB a minute); a live receiver uses :meth:`pull_audio`
        instead, after which this raises ConfigError."""
        if self.audio_codec is None or self.header is None:
            return None
        tokens, n_samples = self.audio_frames()
        pcm = self.audio_codec.decode(tokens, n_samples)
        skip = self._origin_sample() - self.audio_start_frame * self.audio_codec.frame_samples if self._origin else 0
        return pcm[skip:]

    def _audio_length(self) -> tuple[int, int]:
        """Audio frames and PCM samples output in all (END_OF_STREAM's, else what was received; at
        most 10 s past the audio received)."""
        assert self.audio_codec is not None
        ac = self.audio_codec
        if self.end is not None:
            n_frames = int(self.end.audio_frame_count)
            n_samples = int(self.end.audio_samples)
        else:
            n_frames = self._audio_end_frame
            n_samples = n_frames * ac.frame_samples
        n_frames = min(n_frames, self._audio_end_frame + 10 * ac.sample_rate // ac.frame_samples)
        n_samples = min(n_samples, n_frames * ac.frame_samples)
        return n_frames, n_samples

    def audio_frames(self) -> tuple[list, int]:
        """The audio codec's tokens the audio is decoded from (lost ones concealed as
        ``conceal_audio`` says; None where still lost) and the PCM length, after :meth:`close`; after a
        join, from audio frame :attr:`audio_start_frame` on (the PCM length counted from there)."""
        if self.audio_codec is None or self.header is None:
            return [], 0
        if self._audio_pulled:
            raise ConfigError("the audio was handed out by pull_audio(): audio() and audio_frames() need "
                              "the whole stream's tokens, which the decoder no longer holds")
        ac = self.audio_codec
        n_frames, n_samples = self._audio_length()
        start = min(self.audio_start_frame, n_frames)
        n_samples = max(n_samples - start * ac.frame_samples, 0)
        tokens = [self.audio_tokens.get(i) for i in range(start, n_frames)]
        if (self.conceal_audio != "none" and any(t is None for t in tokens)
                and int(self.header.audio_codec) == int(bs.AudioCodecId.CODEC2)):  # Opus conceals by itself
            if self.conceal_audio == "joint":
                tokens = self._conceal_audio(tokens, start)
            tokens = repeat_lost(tokens, REPEAT_MAX_SECONDS * ac.sample_rate // ac.frame_samples)
        return tokens, n_samples

    def pull_audio(self) -> Optional[np.ndarray]:
        """The decoded audio (float32 mono) since the last call, in order: a live receiver plays it while
        the stream runs. Lost frames are concealed as :meth:`audio` does (repeating the last frame
        received looks only back, so audio is handed out up to the last audio frame received, less the
        last frame, whose length only the end of the stream tells); after :meth:`close`, the rest. The
        pieces joined are :meth:`audio`'s samples (an audio unit arriving after later ones is too late
        for the frames already handed out). With ``conceal_audio="joint"``, which reads the whole
        stream, everything comes after :meth:`close`. None when the stream has no audio (or its header
        has not arrived). Once called, :meth:`audio` is no longer available."""
        if self.audio_codec is None or self.header is None:
            return None
        ac = self.audio_codec
        if self.conceal_audio == "joint" and int(self.header.audio_codec) == int(bs.AudioCodecId.CODEC2):
            if not self._closed or self._audio_pulled:
                return np.zeros(0, np.float32)
            out = self.audio()
            self._audio_pulled = True
            return out
        self._audio_pulled = True
        if self._audio_dec is None:
            self._audio_dec = ac.stream_decoder()
        if self._audio_flushed:
            return np.zeros(0, np.float32)
        n_frames, n_samples = self._audio_length() if self._closed else (self._audio_end_frame, None)
        start = self.audio_start_frame  # 0, or after a join the audio frame holding the origin's time
        if self._audio_next < start:
            self._audio_next = start
            self._audio_skip = self._origin_sample() - start * ac.frame_samples  # dropped once, as audio() does
        if n_samples is not None:
            n_samples = max(n_samples - start * ac.frame_samples, 0)
        repeat = (self.conceal_audio != "none" and int(self.header.audio_codec) == int(bs.AudioCodecId.CODEC2))
        limit = REPEAT_MAX_SECONDS * ac.sample_rate // ac.frame_samples
        tokens = []
        last, run = self._repeat
        for i in range(self._audio_next, n_frames):
            t = self.audio_tokens.get(i)
            if t is not None:
                last, run = t, 0
            elif repeat and last is not None and run < limit:  # as repeat_lost()
                t, run = last, run + 1
            tokens.append(t)
        self._repeat = (last, run)
        self._audio_next = max(self._audio_next, n_frames)
        pcm = self._audio_dec.push(tokens)
        if n_samples is not None:
            pcm = np.concatenate([pcm, self._audio_dec.flush(n_samples)])
            self._audio_flushed = True
        if self._audio_skip and len(pcm):
            cut = min(self._audio_skip, len(pcm))
            pcm, self._audio_skip = pcm[cut:], self._audio_skip - cut
        self._trim()
        return pcm

    def _conceal_audio(self, tokens: list, start: int = 0) -> list:
        """Lost Codec2 700C frames rebuilt from the motion and the audio around them by the joint
        model (:mod:`avfc.avcc.conceal`), when one is shipped for the stream's animation model and
        the stream pairs one 700C frame with each video frame; otherwise they stay lost (silence)."""
        concealer = self._joint_model()
        if concealer is None:
            return tokens
        fields = np.full((len(tokens), 4), -1, np.int64)
        for i, t in enumerate(tokens):
            if t is not None:
                fields[i] = split_700c(int(t))
        offsets, known = self.lips_offsets(start + len(tokens), concealer.net.meta.channels, start)
        filled = concealer.conceal(fields, offsets, known, CONCEAL_STEPS)
        lost = [i for i, t in enumerate(tokens) if t is None]
        out = list(tokens)
        for i in lost:
            if (filled[i] >= 0).all():
                out[i] = join_700c(cast(tuple[int, int, int, int], tuple(int(v) for v in filled[i])))
        done = sum(out[i] is not None for i in lost)
        self.issues.append(Issue("concealed_audio", f"{done} of {len(lost)} lost audio frames rebuilt from the "
                                 f"motion ({int(known[lost].sum()) if lost else 0} with their motion known) "
                                 "and the audio around them", None))
        return out

    def lips_offsets(self, n: int, channels: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Integer lips offsets ``(n - start, channels)`` of frames ``start .. n-1`` (decoded keypoints
        minus those of the last key picture at or before the frame, each axis' mean removed, as the AVCC
        models see them; in a bi-directional stream frames before its first key frame are offset from that
        one, which they are drawn from) and a mask of the frames whose keypoints the decoder has. Frames before the
        last :data:`KEEP_BEHIND` are known only with ``keep_motion`` (or ``conceal_audio="joint"``)."""
        start = max(int(start), 0)
        offsets, known = np.zeros((max(n - start, 0), channels), np.int64), np.zeros(max(n - start, 0), bool)
        keys = sorted(self._key_q)
        j = 0  # keys[:j] are at or before t
        for t in range(start, n):
            while j < len(keys) and keys[j] <= t:
                j += 1
            q = self._key_q[t] if t in self._key_q else self.motion.get(t)
            if not (j or (keys and self._bidirectional)) or q is None or len(q) != channels:
                continue
            offsets[t - start] = grid_offsets(np.asarray(q)[None], self._key_q[keys[max(j - 1, 0)]])[0]
            known[t - start] = True
        return offsets, known

    # ------------------------------------------------------------------ output
    def pull_frames(self, max_frames: Optional[int] = None) -> np.ndarray:
        """Frames decoded since the last call, in display order, uint8 ``(N, H, W, 3)``; at most
        ``max_frames`` of them when given (the rest stay for the next call)."""
        out: list[np.ndarray] = []
        while self._next_out in self._ready and (max_frames is None or len(out) < max_frames):
            out.append(self._ready.pop(self._next_out))
            self._next_out += 1
        if not out:
            h = self.header.height if self.header else 0
            w = self.header.width if self.header else 0
            return np.zeros((0, h, w, 3), np.uint8)
        return np.stack(out)

    def motion_array(self) -> np.ndarray:
        """All decoded motion integers ``(T, C)``; rows of lost frames are absent (see issues). Needs
        ``Decoder(keep_motion=True)`` (else ConfigError: the rows of drawn frames are dropped)."""
        if not self._keep_all:
            raise ConfigError("motion_array() needs Decoder(keep_motion=True): without it the decoder drops "
                              "the motion of the frames it has drawn")
        if not self.motion:
            c = self.model.motion_channels if self.model else 0
            return np.zeros((0, c), np.int32)
        return np.stack([self.motion[i] for i in sorted(self.motion)])


def repeat_lost(tokens: list, limit: int) -> list:
    """Lost tokens (None) replaced by the last received one, at most ``limit`` in a row (the rest of
    a longer gap stays lost: silence); lost tokens before the first received one stay lost."""
    out, last, run = list(tokens), None, 0
    for i, t in enumerate(out):
        if t is not None:
            last, run = t, 0
        elif last is not None and run < limit:
            out[i] = last
            run += 1
    return out


def _unit_name(t: int) -> str:
    try:
        return bs.UnitType(t).name.lower()
    except ValueError:
        return f"unknown_{t:#04x}"
