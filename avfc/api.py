"""``avfc.encode`` and ``avfc.decode``: whole files, bytes or arrays in one call.

The streaming :class:`~avfc.codec.Encoder` / :class:`~avfc.codec.Decoder` do the
work; this module adds reading and cropping media, rate control over the whole
file (``bitrate_kbps`` counts every byte: key frames, motion, audio, headers),
and writing the results.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Optional, Union

import numpy as np

from avfc import bitstream as bs
from avfc.codec.common import check_max_refs
from avfc.codec.decoder import Decoder, Issue
from avfc.codec.encoder import Encoder, EncoderStats, analyse_clip, make_search
from avfc.config import EncoderConfig
from avfc.errors import ConfigError, FileAccessError, FormatError, MediaError
from avfc.paths import check_writable
from avfc.media import QP_RANGE, CropBox, Media, VideoWriter, apply_crop, find_crop, read_media, write_media
from avfc.media.crop import face_warnings
from avfc.models.zoo import load_model

if TYPE_CHECKING:
    import torch

#: the motion strides the rate control tries, densest first, when the config leaves motion_stride open:
#: beyond 3 frames (120 ms at 25 fps) the interpolated mouth visibly lags the speech
AUTO_MOTION_STRIDES = (1, 2, 3)
#: a sparser stride is taken only when it saves at least this share of the file: 2 % of the bytes
#: give the key picture about 0.001 of LPIPS at a few kbps (docs/results.md), less than the mouth
#: motion that every 2nd or 3rd frame's keypoints lose
AUTO_STRIDE_MIN_SAVING = 0.02

PathLike = Union[str, os.PathLike]
#: frames as a numpy array or a torch tensor (any device): uint8 ``(T, H, W, 3)``
FramesLike = Union[np.ndarray, "torch.Tensor"]
#: speech as a numpy array or a torch tensor: float ``(N,)`` in [-1, 1]
PcmLike = Union[np.ndarray, "torch.Tensor"]
MediaSource = Union[PathLike, bytes, Media, FramesLike]


@dataclass
class EncodeResult:
    """What :func:`encode` produced."""

    data: bytes
    header: bs.SequenceHeader
    stats: EncoderStats
    frames: int
    duration: float  # seconds of video
    crop: CropBox
    warnings: list[str] = field(default_factory=list)
    #: the keypoints of every motion_stride-th frame were sent (chosen by the rate control unless set)
    motion_stride: int = 1
    #: the encoder's effort preset, and per motion packet what it sent: "detector" (the analysed
    #: keypoints), "hold" (the reference's keypoints held still) or "search" (searched keypoints)
    effort: str = ""
    packets_by_choice: dict[str, int] = field(default_factory=dict)

    @property
    def kbps(self) -> float:
        """Total rate: every byte of the file over the clip's duration."""
        return len(self.data) * 8 / 1000 / self.duration if self.duration > 0 else 0.0


@dataclass
class DecodeResult:
    """What :func:`decode` produced.

    ``frames``, ``audio`` and ``motion`` hold the whole clip; :func:`decode` fills them only when
    asked (``keep_frames``, ``keep_audio``: by default when it writes no file; ``keep_motion``), so
    that decoding into a file keeps memory flat. ``frame_count`` and ``audio_samples`` are there
    either way.
    """

    frames: Optional[np.ndarray]  # (T, H, W, 3) uint8 RGB at the coded size; None unless kept
    audio: Optional[np.ndarray]  # float32 mono; None for a stream without audio, or unless kept
    sample_rate: int
    fps: float
    header: bs.SequenceHeader
    motion: Optional[np.ndarray]  # decoded integer motion (T, C) with keep_motion=True, else None
    issues: list[Issue]
    frame_count: int = 0  # frames decoded (written)
    audio_samples: int = 0  # audio samples decoded (written); 0 for a stream without audio


def _as_array(x: Any, what: str) -> Any:
    """``x`` as a numpy array when it is a torch tensor (detached, moved to the CPU; half and bfloat16
    speech as float32); anything else as it is, for the checks of :class:`Media` to judge. torch is not
    imported here: a tensor can only exist when the caller has imported it."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(x, torch.Tensor):
        return x
    t = x.detach().cpu()
    if what == "pcm" and t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as e:
        raise MediaError(f"{what}: cannot read a {t.dtype} tensor as an array ({e})") from None


def _load_source(src: MediaSource, config: EncoderConfig, pcm: Optional[PcmLike],
                 sample_rate: int) -> Media:
    """The :class:`Media` to encode; a Media whose frame rate is not the configuration's is refused
    (its frames would be coded at the wrong speed), arrays and tensors are taken at ``config.fps``."""
    if isinstance(src, Media):
        if src.fps != config.fps:
            raise ConfigError(
                f"the media is at {src.fps} fps but the configuration codes {config.fps} fps: give fps={src.fps} "
                f"to code it at its own rate, or read it at {config.fps} fps (read_media(..., fps={config.fps}))")
        return src
    src = _as_array(src, "frames")
    if isinstance(src, np.ndarray):
        if src.ndim == 4 and src.shape[1] == 3 and src.shape[3] != 3:
            raise MediaError(f"frames must be channels-last (T, H, W, 3) uint8 RGB, got {src.dtype} {src.shape}: "
                             "permute a (T, 3, H, W) tensor with .permute(0, 2, 3, 1)")
        return Media.from_arrays(src, config.fps, None if pcm is None else _as_array(pcm, "pcm"), sample_rate)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return read_media(bytes(src), fps=config.fps, sample_rate=16000, max_frames=config.max_frames)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)  # as for decode's input: a path that cannot be read is a FileAccessError
        why = ("no such file" if not path.exists() else "it is a directory" if path.is_dir()
               else "permission denied" if not os.access(path, os.R_OK) else None)
        if why is not None:
            raise FileAccessError(f"cannot read {src}: {why}")
        return read_media(src, fps=config.fps, sample_rate=16000, max_frames=config.max_frames)
    raise MediaError(f"cannot encode a {type(src).__name__}: give a path, file bytes, a Media, or frames as a "
                     "numpy array or torch tensor")


def prepare(media: Media, config: EncoderConfig) -> tuple[np.ndarray, CropBox]:
    """Crop and resize ``media``'s frames to the coded size; returns frames and the crop box."""
    frames = media.frames
    if config.max_frames is not None:
        frames = frames[: config.max_frames]
    box = find_crop(frames, method=config.crop)
    return apply_crop(frames, box, config.size), box


def encode(src: MediaSource, dst: Optional[PathLike] = None, *,
           config: EncoderConfig | dict | None = None,
           pcm: Optional[PcmLike] = None, sample_rate: int = 16000,
           progress: Optional[Callable[[str, int, int], None]] = None,
           search_device: Optional[str] = "auto",
           **overrides: Any) -> EncodeResult:
    """Encode a talking-face video (and its speech) to .avfc.

    Args:
        src: a media file path, the bytes of a media file, a :class:`~avfc.media.Media` at
            ``config.fps`` (another rate is refused with a ConfigError naming both), or frames
            ``(T, H, W, 3)`` uint8 RGB at ``config.fps`` as a numpy array or a torch tensor (then
            ``pcm`` is its mono float speech at ``sample_rate``, 16 kHz, an array or a tensor).
        dst: where to write the .avfc file (optional; the bytes are returned anyway). Checked
            before any work (its folder must exist and be writable: FileAccessError otherwise).
        config: an :class:`EncoderConfig` or a dict; keyword ``overrides`` replace its fields,
            e.g. ``encode("talk.mp4", bitrate_kbps=4, audio="codec2")``.
        progress: called as ``progress(stage, done, total)`` on long work.
        search_device: where the motion search renders (efforts ``fast`` and above): ``"auto"`` a GPU
            when torch sees one, else the CPU; or a torch device name.

    Returns:
        :class:`EncodeResult` with the bytes, the header, and bytes per unit type.

    Faces: with ``crop="face"`` on frames that are not square, an input where the face detector
    finds no face is still encoded (the centred square, which the model will draw badly) and one
    where it finds several is cropped around the largest; both add a line to ``warnings`` (the
    CLI prints them) rather than raising, so that a clip whose face the detector misses still
    encodes. Square input is coded whole and not looked at.

    Raises:
        ConfigError: a bad configuration, a Media at another frame rate, or ``max_refs`` above
            the references the model draws from; all before any work.
        FileAccessError: ``dst`` cannot be written (checked first, and again when writing), or
            the input path is missing, a directory or not readable.
        MediaError: the input is not media FFmpeg can read, or not frames and speech.
    """
    cfg = EncoderConfig.make(config, **overrides)
    if dst is not None:
        check_writable(dst)
    check_max_refs(cfg, load_model(cfg.model, cfg.size))  # the model is cached: loaded once
    media = _load_source(src, cfg, pcm, sample_rate)
    frames, box = prepare(media, cfg)
    pcm = media.audio
    if pcm is not None and media.sample_rate != 16000:
        raise MediaError(f"audio must be 16 kHz mono, got {media.sample_rate} Hz")
    warnings: list[str] = face_warnings(media.frames[: cfg.max_frames], method=cfg.crop)
    if cfg.audio != "none" and pcm is None:
        warnings.append("the input has no audio track: the stream is video only")
        cfg = EncoderConfig.make(cfg, audio="none")
    if pcm is not None:
        pcm = pcm[: int(round(len(frames) / cfg.fps * 16000))]
    model = load_model(cfg.model, cfg.size)
    if cfg.motion_source == "speech":  # motion from speech sends no keypoints: nothing to analyse
        keypoints = np.zeros((len(frames), model.motion_channels), np.int32)
    else:
        keypoints = analyse_clip(model, frames, cfg.kp_precision, cfg.kp_hysteresis, progress)
    duration = len(frames) / cfg.fps
    source_size = (int(media.frames.shape[2]), int(media.frames.shape[1]))

    # the motion search, shared by the rate control's passes: a later pass starts from what it found
    search = make_search(cfg, model, device=search_device, keep_found=True)

    def run(c: EncoderConfig, key_bytes: Optional[int] = None, bound: bool = False) -> Encoder:
        enc = Encoder(c, source_size=source_size, crop=box, frame_count=len(frames),
                      key_bytes=key_bytes, model=model, search=search)
        enc.search_bound = bound
        # one packet of frames, then its audio: the units come out in time order, as a live encoder's
        step = c.packet_frames
        for i in range(0, len(frames), step):
            enc.push_frames(frames[i:i + step], keypoints=keypoints[i:i + step])
            if pcm is not None and enc.audio_codec is not None:
                end = len(pcm) if i + step >= len(frames) else (i + step) * 16000 // c.fps
                enc.push_audio(pcm[i * 16000 // c.fps:end])
        if len(frames) == 0 and pcm is not None and enc.audio_codec is not None:
            enc.push_audio(pcm)
        enc.close()
        return enc

    if cfg.bitrate_kbps is not None:
        enc = _fit_rate(cfg, int(cfg.bitrate_kbps * 1000 / 8 * duration), duration, run, warnings)
    else:
        enc = run(cfg)
    data = enc.read()
    if dst is not None:
        try:
            Path(dst).write_bytes(data)
        except OSError as e:
            raise FileAccessError(f"cannot write {dst}: {e.strerror or e}") from None
    return EncodeResult(data=data, header=enc.header, stats=enc.stats, frames=len(frames),
                        duration=duration, crop=box, warnings=warnings, motion_stride=enc.motion_stride,
                        effort=enc.config.effort, packets_by_choice=enc.packets_by_choice())


#: the most planned passes of the rate control after its first (each codes the whole clip once)
MAX_RATE_PASSES = 4


def _fit_rate(cfg: EncoderConfig, budget: int, duration: float, run: Callable[..., Encoder],
              warnings: list[str]) -> Encoder:
    """The rate control of :func:`encode`: the encoder pass whose file fits ``budget`` bytes with
    the finest key pictures (a warning is appended when even the coarsest do not fit).

    Pass 1 codes the clip with the coarsest key pictures and every packet's analysed motion, none
    held: all but the key pictures' bytes are then known, the motion's as an upper bound (a held
    packet costs less). Pass 1 also picks the motion stride when the config leaves it open: the
    densest of :data:`AUTO_MOTION_STRIDES` whose keypoints fit ``motion_share`` of the budget, going
    sparser only while each step saves :data:`AUTO_STRIDE_MIN_SAVING` of the budget or more. The
    key pictures get the rest. A planned pass over the budget (finer key pictures can make
    ``motion_hold`` move packets it held, or the adaptive policy place more key frames) shrinks them
    by the excess; one under it (packets held) grows them by the slack; once one pass fitted and one
    did not, the next bisects between their key budgets (at most :data:`MAX_RATE_PASSES` planned
    passes). The fullest pass within the budget is kept; when none fits, the coarsest key pictures.
    """
    coarsest = QP_RANGE[cfg.key_codec][1]
    strides = (AUTO_MOTION_STRIDES if cfg.motion_stride is None and cfg.motion_source == "transmitted"
               else (cfg.motion_stride,))
    denser: Optional[tuple[EncoderConfig, Encoder, int]] = None  # the last stride tried, its pass 1, its motion
    for stride in strides:
        sparser = EncoderConfig.make(cfg, motion_stride=stride)
        probe = run(EncoderConfig.make(sparser, key_qp=coarsest, motion_hold=False), bound=True)
        motion = probe.stats.bytes_by_type.get("motion", 0)
        if denser is not None and denser[2] - motion < AUTO_STRIDE_MIN_SAVING * budget:
            cfg, probe, _ = denser  # too few bytes saved for the motion it would drop: keep the denser
            break
        cfg, denser = sparser, (sparser, probe, motion)
        if motion <= cfg.motion_share * budget:
            break
    smallest = max(probe.stats.key_picture_bytes, default=0)  # the coarsest key picture
    stats = probe.stats
    key_total = stats.bytes_by_type.get("key_frame", 0)
    n_keys = max(stats.units_by_type.get("key_frame", 1), 1)
    per_key = (budget - (stats.total_bytes - key_total) - (key_total - sum(stats.key_picture_bytes))) // n_keys
    runs: list[Encoder] = []
    fit: Optional[tuple[int, Encoder]] = None  # the largest key budget that fitted, and its pass
    over: Optional[tuple[int, Encoder]] = None  # the smallest that did not
    for _ in range(MAX_RATE_PASSES):
        if per_key < smallest:
            break
        enc = run(cfg, per_key)
        runs.append(enc)
        n_keys = max(enc.stats.units_by_type.get("key_frame", 1), 1)
        excess = enc.stats.total_bytes - budget
        if excess > 0 and (over is None or per_key < over[0]):
            over = (per_key, enc)
        elif excess <= 0 and (fit is None or per_key > fit[0]):
            fit = (per_key, enc)
        if fit is None:
            per_key -= -(-excess // n_keys)  # none fitted yet: shrink by the excess, rounded up
        elif over is None:
            if -excess < n_keys * 8:
                break  # within a few bytes of the budget
            per_key += -excess // n_keys  # packets were held: grow by the slack
        elif _qp_between(fit[1].stats.key_qps, over[1].stats.key_qps):
            per_key = (fit[0] + over[0]) // 2  # between the two: bisect
        else:
            break  # no key picture lies between the two passes'
    fits = [e for e in runs if e.stats.total_bytes <= budget]
    if not fits:
        held = run(EncoderConfig.make(cfg, key_qp=coarsest))  # the coarsest key pictures, motion held
        if held.stats.total_bytes <= budget:
            return held
        runs.append(held)
        best = min(runs, key=lambda e: e.stats.total_bytes)
        warnings.append(
            f"--bitrate {cfg.bitrate_kbps} kbps cannot be reached: motion, audio and the smallest key "
            f"frame{'s' if n_keys > 1 else ''} already take {best.stats.total_bytes * 8 / 1000 / duration:.2f} kbps")
        return best
    return max(fits, key=lambda e: e.stats.total_bytes)


def _qp_between(fit_qps: list[int], over_qps: list[int]) -> bool:
    """Whether a key budget between two passes' can give some key frame a picture neither had: the
    passes coded the same key frames, and one of them got QPs at least 2 apart."""
    return len(fit_qps) == len(over_qps) and any(o < f - 1 for f, o in zip(fit_qps, over_qps))


#: bytes read from an .avfc file at a time, and pushed into the decoder at a time (frames are pulled
#: and written between pushes: at 5 kbps 512 bytes are about 0.8 s of video)
READ_CHUNK, PUSH_CHUNK = 1 << 16, 512
#: frames pulled from the decoder and written at a time
WRITE_FRAMES = 25


def _stream_chunks(src: Union[PathLike, bytes, BinaryIO]) -> Iterator[bytes]:
    """The stream's bytes in pieces, read from a path or file object as they are needed."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = memoryview(bytes(src) if not isinstance(src, bytes) else src)
        yield from (bytes(data[i:i + READ_CHUNK]) for i in range(0, len(data), READ_CHUNK))
        return
    if isinstance(src, (str, os.PathLike)):
        try:
            f = open(src, "rb")  # noqa: SIM115 - closed below, after the generator's last chunk
        except OSError as e:  # missing, a directory, permission refused
            raise FileAccessError(f"cannot read {src}: {e.strerror or e}") from None
        with f:
            while True:
                try:
                    chunk = f.read(READ_CHUNK)
                except OSError as e:
                    raise FileAccessError(f"cannot read {src}: {e.strerror or e}") from None
                if not chunk:
                    return
                yield chunk
    if hasattr(src, "read"):
        while True:
            try:
                chunk = src.read(READ_CHUNK)
            except OSError as e:  # io.UnsupportedOperation (opened for writing) included
                raise FileAccessError(f"cannot read {getattr(src, 'name', 'the file object')}: "
                                      f"{e.strerror or e}") from None
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise FormatError(f"the file object gave {type(chunk).__name__}, not bytes: open the file in binary mode")
            if not chunk:
                return
            yield bytes(chunk)
    raise FormatError(f"cannot decode a {type(src).__name__}: give a path, bytes or a binary file")


def decode(src: Union[PathLike, bytes, BinaryIO], dst: Optional[PathLike] = None, *,
           device: str = "cpu", progress: Optional[Callable[[str, int, int], None]] = None,
           conceal_audio: str = "repeat", conceal_motion: str = "hold",
           keep_frames: Optional[bool] = None, keep_audio: Optional[bool] = None,
           keep_motion: bool = False) -> DecodeResult:
    """Decode an .avfc stream to frames (at the coded size) and audio.

    Args:
        src: a path, the bytes, or a binary file object of an .avfc stream (read in pieces as
            decoding goes).
        dst: optionally write the result: ``.mp4`` (video + audio) or ``.wav`` (audio only). Frames
            and audio are written as they are decoded, so memory stays flat however long the stream.
        device: torch device for the generator.
        conceal_audio: how lost Codec2 frames are filled: ``"repeat"`` the last received one (up to
            one second), ``"joint"`` rebuilt from the motion and the audio around them by the joint
            audio-video model of :mod:`avfc.avcc.conceal` (700C streams of a model it was trained for;
            measured worse than repeating, docs/results.md; it reads the whole stream, so the decoder
            holds its motion and audio and writes the audio at the end), ``"none"`` silence. Opus
            streams use Opus' own concealment.
        conceal_motion: how frames whose motion packet is lost are drawn: ``"hold"`` the last output
            frame, ``"joint"`` from keypoints the same joint model samples from the audio of those
            frames and the motion before them (measured in docs/results.md).
        progress: called as ``progress("decode", frames drawn, frames in all)`` as each frame is drawn
            (when the stream's header declares its frame count).
        keep_frames: return every frame in ``result.frames`` (the whole clip in memory, about 0.6 GB a
            minute at 256x256). Default: when ``dst`` is None; otherwise ``result.frames`` is None.
        keep_audio: likewise for ``result.audio`` (default: when ``dst`` is None).
        keep_motion: return the whole stream's decoded motion integers in ``result.motion`` (else None).

    Damaged units are skipped and reported in ``result.issues``; raises
    :class:`~avfc.errors.AvfcError` only when nothing can be decoded (no intact header,
    unknown model). A file being written when decoding fails is removed.
    """
    if dst is not None:  # before any work: the suffix and the path (checked again when writing)
        suffix = _check_output_suffix(dst)
        check_writable(dst)
    keep_frames = dst is None if keep_frames is None else bool(keep_frames)
    keep_audio = dst is None if keep_audio is None else bool(keep_audio)

    def on_frame(idx: int) -> None:
        total = int(dec.header.frame_count) if dec.header is not None else 0
        if progress is not None and total:
            progress("decode", idx + 1, total)

    dec = Decoder(device=device, conceal_audio=conceal_audio, conceal_motion=conceal_motion,
                  keep_motion=keep_motion, on_frame=on_frame)
    writer: Optional[VideoWriter] = None
    frames: list[np.ndarray] = []
    audio: list[np.ndarray] = []
    count = [0, 0]  # frames, audio samples

    def drain(final: bool) -> None:
        nonlocal writer
        assert dec.header is not None
        if dst is not None and writer is None:
            writer = _open_writer(dst, suffix, dec)
        if dst is not None or not keep_frames or final:  # (the array result: pulled once, at the end)
            while True:
                got = dec.pull_frames(WRITE_FRAMES if dst is not None else None)
                if not len(got):
                    break
                count[0] += len(got)
                if writer is not None and suffix != ".wav":
                    writer.write(got)
                if keep_frames:
                    frames.append(got)
        # (the array result: audio() at the end, which holds the tokens until then)
        pcm = dec.pull_audio() if dst is not None or not keep_audio else None
        if pcm is not None and len(pcm):
            count[1] += len(pcm)
            if writer is not None:
                writer.write_audio(pcm)
            if keep_audio:
                audio.append(pcm)

    try:
        for data in _stream_chunks(src):
            for i in range(0, len(data), PUSH_CHUNK):
                dec.push(data[i:i + PUSH_CHUNK])
                if dec.header is not None:
                    drain(final=False)
        if dec.header is None:
            dec.push(b"")
        dec.close()
        assert dec.header is not None
        drain(final=True)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer._abort()
            Path(dst).unlink(missing_ok=True)  # type: ignore[arg-type]
        raise
    # concealed frames are one held picture until pulled: the array result is pulled once, at the end
    # (pulling as they come and joining the pieces held two copies), unless it is also written
    video = None
    if keep_frames:
        video = frames[0] if len(frames) == 1 else (np.concatenate(frames) if frames else dec.pull_frames())
    fps = dec.header.fps_num / dec.header.fps_den
    # the rate the audio was decoded at (the codec's, part C of docs/bitstream.md), not the header's field
    sample_rate = dec.audio_codec.sample_rate if dec.audio_codec is not None else 16000
    pcm = None
    if keep_audio and dec.audio_codec is not None:
        if dst is None:
            pcm = dec.audio()
            count[1] = len(pcm) if pcm is not None else 0
        else:
            pcm = audio[0] if len(audio) == 1 else (np.concatenate(audio) if audio else np.zeros(0, np.float32))
    return DecodeResult(frames=video, audio=pcm, sample_rate=sample_rate, fps=fps, header=dec.header,
                        motion=dec.motion_array() if keep_motion else None, issues=dec.issues,
                        frame_count=count[0], audio_samples=count[1])


def _open_writer(dst: PathLike, suffix: str, dec: Decoder) -> VideoWriter:
    """The streaming writer of ``dst`` for the stream ``dec`` has the header of."""
    assert dec.header is not None
    rate = dec.audio_codec.sample_rate if dec.audio_codec is not None else None
    if suffix == ".wav" and rate is None:
        raise MediaError("the stream has no audio to write to a .wav file")
    check_writable(dst)
    try:
        fps = int(round(dec.header.fps_num / dec.header.fps_den))
        return VideoWriter(dst, fps, int(dec.header.width), int(dec.header.height), rate)
    except MediaError as e:  # a failing file system is a FileAccessError
        cause = e.__cause__
        if isinstance(cause, OSError):
            raise FileAccessError(f"cannot write {dst}: {cause.strerror or cause}") from None
        raise


#: what :func:`write_decoded` writes, by suffix
OUTPUT_SUFFIXES = (".mp4", ".mkv", ".mov", ".wav")


def _check_output_suffix(dst: PathLike) -> str:
    suffix = Path(dst).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"cannot write {suffix or 'a file without suffix'}: use .mp4 or .wav")
    return suffix


def write_decoded(result: DecodeResult, dst: PathLike) -> None:
    """Write a decode result as .mp4 (video and audio) or .wav (audio only).

    Raises:
        ConfigError: a suffix other than .mp4, .mkv, .mov or .wav.
        MediaError: a .wav asked of a stream without audio, or the encoder failed.
        FileAccessError: ``dst`` cannot be written (its folder is missing, permission refused, ...).
    """
    suffix = _check_output_suffix(dst)
    if suffix == ".wav" and result.audio is None:
        raise MediaError("the stream has no audio to write to a .wav file")
    if suffix != ".wav" and result.frames is None:
        raise ConfigError("the result holds no frames: decode(..., keep_frames=True), or decode(src, dst) "
                          "straight into the file")
    check_writable(dst)
    try:
        if suffix == ".wav":
            from avfc.media import write_wav
            assert result.audio is not None
            write_wav(dst, result.audio, result.sample_rate)
        else:
            write_media(dst, result.frames, int(round(result.fps)), result.audio, result.sample_rate)
    except MediaError as e:  # the writers report every failure so; a failing file system is a FileAccessError
        cause = e.__cause__
        if isinstance(cause, OSError):
            raise FileAccessError(f"cannot write {dst}: {cause.strerror or cause}") from None
        raise
