"""``avfc.encode`` and ``avfc.decode``: whole files, bytes or arrays in one call.

The streaming :class:`~avfc.codec.Encoder` / :class:`~avfc.codec.Decoder` do the
work; this module adds reading and cropping media, picks the rate control
(``bitrate_kbps`` counts every byte: key frames, motion, audio, headers; the
controllers are in :mod:`avfc.codec.rate`), and writes the results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Optional, Union

import numpy as np

from avfc import bitstream as bs
from avfc.codec.common import check_max_refs
from avfc.codec.decoder import Decoder, Issue
from avfc.codec.adapt import DecoderParamSet, fit_decoder_params
from avfc.codec.encoder import (Encoder, EncoderStats, analyse_clip, check_perceptual, make_search, with_key_placed,
                                with_key_windows)
from avfc.codec.rate import fit_file_rate, uses_file_rate
from avfc.config import EncoderConfig
from avfc.errors import ConfigError, FileAccessError, FormatError, MediaError
from avfc.paths import check_writable
from avfc.media import CropBox, IntraCache, Media, VideoWriter, apply_crop, as_array, find_crop, write_media
from avfc.media.io import STREAM_FORMATS
from avfc.media.stream import MediaStream, open_media
from avfc.media.crop import face_warnings
from avfc.models.zoo import load_model

if TYPE_CHECKING:
    import torch
    from typing_extensions import TypeIs

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
    #: the frame ``frames[0]`` is: 0, or after a join (``decode(..., join=True)``) the REFRESH's frame
    first_frame: int = 0
    frame_count: int = 0  # frames decoded (written)
    audio_samples: int = 0  # audio samples decoded (written); 0 for a stream without audio


def _load_source(src: MediaSource, config: EncoderConfig, pcm: Optional[PcmLike],
                 sample_rate: int) -> Media:
    """The :class:`Media` to encode from a Media, an array or a tensor (files are streamed: :func:`encode`);
    a Media whose frame rate is not the configuration's is refused (its frames would be coded at the
    wrong speed), arrays and tensors are taken at ``config.fps``."""
    if isinstance(src, Media):
        if src.fps != config.fps:
            raise ConfigError(
                f"the media is at {src.fps} fps but the configuration codes {config.fps} fps: give fps={src.fps} "
                f"to code it at its own rate, or read it at {config.fps} fps (read_media(..., fps={config.fps}))")
        return src
    src = as_array(src, "frames")
    if isinstance(src, np.ndarray):
        if src.ndim == 4 and src.shape[1] == 3 and src.shape[3] != 3:
            raise MediaError(f"frames must be channels-last (T, H, W, 3) uint8 RGB, got {src.dtype} {src.shape}: "
                             "permute a (T, 3, H, W) tensor with .permute(0, 2, 3, 1)")
        return Media.from_arrays(src, config.fps, None if pcm is None else as_array(pcm, "pcm"), sample_rate)
    raise MediaError(f"cannot encode a {type(src).__name__}: give a path, file bytes, a Media, or frames as a "
                     "numpy array or torch tensor")


def prepare(media: Media, config: EncoderConfig) -> tuple[np.ndarray, CropBox]:
    """Crop and resize ``media``'s frames to the coded size; returns frames and the crop box."""
    frames = media.frames
    if config.max_frames is not None:
        frames = frames[: config.max_frames]
    box = find_crop(frames, method=config.crop)
    return apply_crop(frames, box, config.size), box


def encode(src: MediaSource, dst: Optional[Union[PathLike, BinaryIO]] = None, *,
           config: EncoderConfig | dict | None = None,
           pcm: Optional[PcmLike] = None, sample_rate: int = 16000,
           progress: Optional[Callable[[str, int, int], None]] = None,
           search_device: Optional[str] = "auto",
           search_perceptual: Optional[Callable[[Any, Any], Any]] = None,
           **overrides: Any) -> EncodeResult:
    """Encode a talking-face video (and its speech) to .avfc.

    Args:
        src: a media file path, the bytes of a media file, a :class:`~avfc.media.Media` at
            ``config.fps`` (another rate is refused with a ConfigError naming both), or frames
            ``(T, H, W, 3)`` uint8 RGB at ``config.fps`` as a numpy array or a torch tensor (then
            ``pcm`` is its mono float speech at ``sample_rate``, 16 kHz, an array or a tensor).
        dst: where to write the .avfc file (optional; the bytes are returned anyway). Checked
            before any work (its folder must exist and be writable: FileAccessError otherwise). Or
            a binary file object (a pipe, ``sys.stdout.buffer``): the stream is written to it in
            order as it is coded, and it is left open.
        config: an :class:`EncoderConfig` or a dict; keyword ``overrides`` replace its fields,
            e.g. ``encode("talk.mp4", bitrate_kbps=4, audio="codec2")``.
        progress: called as ``progress(stage, done, total)`` on long work: ``"scan"`` (the face
            crop's first look at a file), ``"analyse"``, and ``"encode"`` or, for the whole-file rate
            control, ``"encode (rate pass N)"``, each in frames.
        search_device: where the motion search renders (efforts ``fast`` and above): ``"auto"`` a GPU
            when torch sees one, else the CPU; or a torch device name.
        search_perceptual: a perceptual distance the motion search adds to its distortion (efforts
            ``fast`` and above; weighted by ``search_perceptual_weight``): ``term(render, source)`` on
            float ``(B, 3, H, W)`` tensors in [0, 1] giving ``(B,)``, differentiable in ``render``.
            :func:`avfc.eval.perceptual.search_term` builds LPIPS or DISTS from weights by path (the
            CLI's ``--search-weights``). An encoder choice: the format and the decoder do not change.

    Returns:
        :class:`EncodeResult` with the bytes, the header, and bytes per unit type.

    Memory: a file (path or bytes) is read as a stream (:func:`~avfc.media.stream.open_media`: the
    crop box from a first pass over the video, then a second of frames at a time) and, unless the
    whole-file rate control codes it (``rate_control``: inputs up to 20 s), coded in one pass and
    written to ``dst`` as it is coded: memory stays flat whatever the input's length. Arrays and a
    :class:`Media` are in memory already.

    Faces: with ``crop="face"`` on frames that are not square, an input where the face detector
    finds no face is still encoded (the centred square, which the model will draw badly) and one
    where it finds several is cropped around the largest; both add a line to ``warnings`` (the
    CLI prints them) rather than raising, so that a clip whose face the detector misses still
    encodes. Square input is coded whole and not looked at.

    Raises:
        ConfigError: a bad configuration, a Media at another frame rate, or ``max_refs`` above
            the references the model draws from, a ``search_perceptual`` that is not callable or
            with an effort that does not search; all before any work.
        FileAccessError: ``dst`` cannot be written (checked first, and again when writing), or
            the input path is missing, a directory or not readable.
        MediaError: the input is not media FFmpeg can read, or not frames and speech.
    """
    cfg = EncoderConfig.make(config, **overrides)
    if dst is not None and not _is_writer(dst):
        check_writable(dst)
    model = load_model(cfg.model, cfg.size)  # the model is cached: loaded once
    check_max_refs(cfg, model)
    check_perceptual(cfg, search_perceptual)  # a term the search cannot use: ConfigError now
    search_opts = {"device": search_device, "perceptual": search_perceptual}
    if isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)):
        if isinstance(src, (str, os.PathLike)):
            _check_readable(src)
        with open_media(bytes(src) if not isinstance(src, (str, os.PathLike)) else src, fps=cfg.fps,
                        sample_rate=16000, size=cfg.size, crop=cfg.crop, max_frames=cfg.max_frames,
                        progress=progress) as stream:
            known = stream.frame_count or stream.expected_frames
            if cfg.adapt_decoder and known is None:
                raise ConfigError("adapt_decoder codes the clip twice: it needs an input whose length is known")
            if known is None or not (uses_file_rate(cfg, known / cfg.fps) or cfg.adapt_decoder):
                return _encode_stream(stream, cfg, model, dst, progress, search_opts)
            media = stream.read()  # short: the whole-file passes code it several times
            return _encode_held(media.frames, media.audio, stream.crop, stream.source_size, list(stream.warnings),
                                cfg, model, dst, progress, search_opts)
    media = _load_source(src, cfg, pcm, sample_rate)
    frames, box = prepare(media, cfg)
    if media.audio is not None and media.sample_rate != 16000:
        raise MediaError(f"audio must be 16 kHz mono, got {media.sample_rate} Hz")
    warnings: list[str] = face_warnings(media.frames[: cfg.max_frames], method=cfg.crop)
    source_size = (int(media.frames.shape[2]), int(media.frames.shape[1]))
    return _encode_held(frames, media.audio, box, source_size, warnings, cfg, model, dst, progress, search_opts)


def _check_readable(path: PathLike) -> None:
    """A path that cannot be read is a FileAccessError (as for decode's input)."""
    p = Path(path)
    why = ("no such file" if not p.exists() else "it is a directory" if p.is_dir()
           else "permission denied" if not os.access(p, os.R_OK) else None)
    if why is not None:
        raise FileAccessError(f"cannot read {path}: {why}")


def _no_audio(cfg: EncoderConfig, has_audio: bool, warnings: list[str]) -> EncoderConfig:
    if cfg.audio != "none" and not has_audio:
        warnings.append("the input has no audio track: the stream is video only")
        return EncoderConfig.make(cfg, audio="none")
    return cfg


def _is_writer(dst: object) -> TypeIs[BinaryIO]:
    """Whether ``dst`` is a file object to write to (rather than a path)."""
    return not isinstance(dst, (str, os.PathLike)) and hasattr(dst, "write")


def _dst_name(dst: object) -> str:
    return str(getattr(dst, "name", "the output")) if _is_writer(dst) else str(dst)


def _write_output(dst: Union[PathLike, BinaryIO], data: bytes) -> None:
    try:
        if _is_writer(dst):
            dst.write(data)
            dst.flush()
        else:
            Path(dst).write_bytes(data)
    except OSError as e:
        raise FileAccessError(f"cannot write {_dst_name(dst)}: {e.strerror or e}") from None


def _encode_stream(stream: MediaStream, cfg: EncoderConfig, model: Any, dst: Optional[Union[PathLike, BinaryIO]],
                   progress: Optional[Callable[[str, int, int], None]], search_opts: dict[str, Any]
                   ) -> EncodeResult:
    """One pass over a :class:`MediaStream`: a packet of frames (and its speech) at a time into the
    streaming :class:`Encoder` (which analyses the frames and, with a bitrate, controls its rate in one
    pass), the bytes written to ``dst`` as they come. Nothing holds the clip."""
    warnings = list(stream.warnings)
    cfg = with_key_windows(_no_audio(cfg, stream.has_audio, warnings))  # (with a bitrate: one-pass rate control)
    frame_count = stream.frame_count or 0
    search = make_search(cfg, model, keep_found=False, **search_opts)
    enc = Encoder(cfg, source_size=stream.source_size, crop=stream.crop, frame_count=frame_count,
                  model=model, search=search)
    writer = _is_writer(dst)
    out: Optional[BinaryIO] = None
    part: Optional[Path] = None
    dst_path: Optional[PathLike] = None
    if _is_writer(dst):
        out = dst
    elif dst is not None:
        dst_path = dst
        part = Path(dst).with_name(Path(dst).name + ".part")
    chunks: list[bytes] = []  # the stream's bytes (a few kbps: 2 MB an hour), returned
    try:
        if part is not None:
            try:
                out = open(part, "wb")
            except OSError as e:
                raise FileAccessError(f"cannot write {dst}: {e.strerror or e}") from None
        total = frame_count or stream.expected_frames or 0
        for frames, pcm in stream.blocks(cfg.packet_frames):
            enc.push_frames(frames)
            if pcm is not None and enc.audio_codec is not None:
                enc.push_audio(pcm)
            _emit(enc.read(), chunks, out, dst)
            if progress:
                progress("encode", stream.frames_read, max(total, stream.frames_read))
        if stream.frames_read == 0:
            raise MediaError("the input has no frames to encode")
        enc.close()
        _emit(enc.read(), chunks, out, dst)
        if writer:
            assert out is not None
            try:
                out.flush()
            except OSError as e:
                raise FileAccessError(f"cannot write {_dst_name(dst)}: {e.strerror or e}") from None
            out = None  # the caller's: left open
        if out is not None and part is not None:
            assert dst_path is not None
            out.close()
            out = None
            os.replace(part, dst_path)
    finally:
        if out is not None and not writer:
            out.close()
        if part is not None and part.exists():
            part.unlink()
    data = b"".join(chunks)
    n = enc.stats.frames
    return EncodeResult(data=data, header=enc.header, stats=enc.stats, frames=n, duration=n / cfg.fps,
                        crop=stream.crop, warnings=warnings, motion_stride=enc.motion_stride,
                        effort=enc.config.effort, packets_by_choice=enc.packets_by_choice())


def _emit(data: bytes, chunks: list[bytes], out: Optional[BinaryIO], dst: Optional[Union[PathLike, BinaryIO]]) -> None:
    if not data:
        return
    chunks.append(data)
    if out is not None:
        try:
            out.write(data)
            if out is dst:  # the caller's file object (a pipe): what is coded goes out now
                out.flush()
        except OSError as e:
            raise FileAccessError(f"cannot write {_dst_name(dst)}: {e.strerror or e}") from None


def _encode_held(frames: np.ndarray, pcm: Optional[np.ndarray], box: CropBox, source_size: tuple[int, int],
                 warnings: list[str], cfg: EncoderConfig, model: Any, dst: Optional[Union[PathLike, BinaryIO]],
                 progress: Optional[Callable[[str, int, int], None]], search_opts: dict[str, Any]
                 ) -> EncodeResult:
    """Coded-size frames in memory: analysed once, then coded by the whole-file rate control's passes
    (short inputs) or once."""
    cfg = _no_audio(cfg, pcm is not None, warnings)
    if pcm is not None:
        pcm = pcm[: int(round(len(frames) / cfg.fps * 16000))]
    if cfg.motion_source == "speech":  # motion from speech sends no keypoints: nothing to analyse
        keypoints = np.zeros((len(frames), model.motion_channels), np.int32)
    else:
        keypoints = analyse_clip(model, frames, cfg.kp_precision, cfg.kp_hysteresis, progress)
    duration = len(frames) / cfg.fps

    file_rate = uses_file_rate(cfg, duration)
    if file_rate or cfg.bitrate_kbps is None:  # the whole clip at hand, one key frame: put it where it draws best
        cfg = with_key_placed(cfg, keypoints)
    else:  # one-pass rate control codes a key frame every 10 s: each where it draws its window best
        cfg = with_key_windows(cfg)
    passes = [0]
    params: Optional[DecoderParamSet] = None  # format 2.2: the decoder parameters the passes send

    def run(c: EncoderConfig, key_bytes: Optional[int] = None, bound: bool = False) -> Encoder:
        passes[0] += 1  # progress: one stage per pass of the whole-file rate control
        stage = f"encode (rate pass {passes[0]})" if file_rate or cfg.adapt_decoder else "encode"
        enc = Encoder(c, source_size=source_size, crop=box, frame_count=len(frames),
                      key_bytes=key_bytes, model=model, search=search, decoder_params=params, key_cache=key_cache)
        enc.search_bound = bound
        # one packet of frames, then its audio: the units come out in time order, as a live encoder's
        step = c.packet_frames
        for i in range(0, len(frames), step):
            enc.push_frames(frames[i:i + step], keypoints=keypoints[i:i + step])
            if pcm is not None and enc.audio_codec is not None:
                end = len(pcm) if i + step >= len(frames) else (i + step) * 16000 // c.fps
                enc.push_audio(pcm[i * 16000 // c.fps:end])
            if progress:
                progress(stage, min(i + step, len(frames)), len(frames))
        if len(frames) == 0 and pcm is not None and enc.audio_codec is not None:
            enc.push_audio(pcm)
        enc.close()
        return enc

    def code() -> Encoder:
        if file_rate:  # short input: the whole-file passes
            assert cfg.bitrate_kbps is not None
            return fit_file_rate(cfg, int(cfg.bitrate_kbps * 1000 / 8 * duration), duration, run, warnings)
        return run(cfg)  # no bitrate, or one pass (the encoder's StreamRate sizes each key picture as it comes)

    # the motion search, shared by the rate control's passes: a later pass starts from what it found; and the key
    # pictures coded so far (a pass codes the same picture again, at many of the qps the pass before tried)
    search = make_search(cfg, model, keep_found=True, **search_opts)
    key_cache = IntraCache()
    enc = code()
    data = enc.read()
    if cfg.adapt_decoder and len(frames):
        # format 2.2: fit the decoder's adaptable set to what this pass sends, then code again with it (its
        # unit's bytes in the rate; every choice, the search's too, renders with the adapted model)
        fitted = fit_decoder_params(model, data, frames)
        if fitted.params is not None:
            params = fitted.params
            search = make_search(cfg, model.adapted(params.deltas()), keep_found=True, **search_opts)
            enc = code()
            data = enc.read()
        else:
            warnings.append("adapt_decoder: the fitted decoder parameters did not draw the clip closer than "
                            "the model's own; none sent")
    if dst is not None:
        _write_output(dst, data)
    return EncodeResult(data=data, header=enc.header, stats=enc.stats, frames=len(frames),
                        duration=duration, crop=box, warnings=warnings, motion_stride=enc.motion_stride,
                        effort=enc.config.effort, packets_by_choice=enc.packets_by_choice())


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


def decode(src: Union[PathLike, bytes, BinaryIO], dst: Optional[Union[PathLike, BinaryIO]] = None, *,
           device: str = "cpu", progress: Optional[Callable[[str, int, int], None]] = None,
           conceal_audio: str = "repeat", conceal_motion: str = "hold", join: bool = False,
           keep_frames: Optional[bool] = None, keep_audio: Optional[bool] = None,
           keep_motion: bool = False, output_format: Optional[str] = None,
           threads: Optional[int] = None) -> DecodeResult:
    """Decode an .avfc stream to frames (at the coded size) and audio.

    Args:
        src: a path, the bytes, or a binary file object of an .avfc stream (read in pieces as
            decoding goes).
        dst: optionally write the result: ``.mp4`` (video + audio) or ``.wav`` (audio only). Frames
            and audio are written as they are decoded, so memory stays flat however long the stream.
            Or a binary file object written in order, never sought (a pipe, ``sys.stdout.buffer``; left
            open): then ``output_format`` says what to write, ``"mkv"`` (Matroska: video and audio) or
            ``"wav"`` (the audio; its header declares no length).
        device: torch device for the generator.
        conceal_audio: how lost Codec2 frames are filled: ``"repeat"`` the last received one (up to
            one second), ``"joint"`` rebuilt from the motion and the audio around them by the joint
            audio-video model of :mod:`avfc.avcc.conceal` (700C streams of a model it was trained for;
            measured worse than repeating, docs/results.md, "Cross-modal features: status"; it reads
            the whole stream, so the decoder holds its motion and audio and writes the audio at the
            end), ``"none"`` silence. Opus
            streams use Opus' own concealment.
        conceal_motion: how frames whose motion packet is lost are drawn: ``"hold"`` the last output
            frame, ``"joint"`` from keypoints the same joint model samples from the audio of those
            frames and the motion before them (measured worse than ``"hold"``, docs/results.md,
            "Cross-modal features: status").
        join: the stream may start at any byte (format 2.1, docs/bitstream.md A.14): decoding starts at
            the first intact REFRESH unit when there is no intact sequence header first; the result's
            ``first_frame`` says which frame ``frames[0]`` is, and the audio starts at its time.
        progress: called as ``progress("decode", frames drawn, frames in all)`` as each frame is drawn
            (when the stream's header declares its frame count).
        keep_frames: return every frame in ``result.frames`` (the whole clip in memory, about 0.6 GB a
            minute at 256x256). Default: when ``dst`` is None; otherwise ``result.frames`` is None.
        keep_audio: likewise for ``result.audio`` (default: when ``dst`` is None).
        keep_motion: return the whole stream's decoded motion integers in ``result.motion`` (else None).
        threads: torch intra-op threads the decoder draws with (None: the process's setting); 1 keeps
            decoding steady on a CPU that other work shares (:class:`~avfc.codec.Decoder`).

    Damaged units are skipped and reported in ``result.issues``; raises
    :class:`~avfc.errors.AvfcError` only when nothing can be decoded (no intact header,
    unknown model). A file being written when decoding fails is removed.
    """
    if _is_writer(dst):
        if output_format not in STREAM_FORMATS:
            raise ConfigError(f"decoding to a file object needs output_format= one of {STREAM_FORMATS} "
                              f"(formats written in order, never sought), got {output_format!r}")
        suffix = "." + output_format
    elif dst is not None:  # before any work: the suffix and the path (checked again when writing)
        suffix = _check_output_suffix(dst)
        if output_format is not None and suffix != "." + output_format:
            raise ConfigError(f"output_format {output_format!r} does not match {dst}: a file's suffix says its format")
        check_writable(dst)
    keep_frames = dst is None if keep_frames is None else bool(keep_frames)
    keep_audio = dst is None if keep_audio is None else bool(keep_audio)

    def on_frame(idx: int) -> None:
        total = int(dec.header.frame_count) if dec.header is not None else 0
        if progress is not None and total:
            progress("decode", idx + 1, total)

    dec = Decoder(device=device, conceal_audio=conceal_audio, conceal_motion=conceal_motion, join=join,
                  keep_motion=keep_motion, on_frame=on_frame, threads=threads)
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
            if dst is not None and not _is_writer(dst):  # (a writer was opened: dst is not None)
                Path(dst).unlink(missing_ok=True)
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
                        frame_count=count[0], audio_samples=count[1], first_frame=dec.first_frame)


def _open_writer(dst: Union[PathLike, BinaryIO], suffix: str, dec: Decoder) -> VideoWriter:
    """The streaming writer of ``dst`` (a path, or a file object written as ``suffix`` says) for the stream
    ``dec`` has the header of."""
    assert dec.header is not None
    rate = dec.audio_codec.sample_rate if dec.audio_codec is not None else None
    if suffix == ".wav" and rate is None:
        raise MediaError("the stream has no audio to write to a .wav file")
    to_writer = _is_writer(dst)
    if not _is_writer(dst):
        check_writable(dst)
    try:
        fps = int(round(dec.header.fps_num / dec.header.fps_den))
        return VideoWriter(dst, fps, int(dec.header.width), int(dec.header.height), rate,
                           format=suffix[1:] if to_writer else None)
    except MediaError as e:  # a failing file system is a FileAccessError
        cause = e.__cause__
        if isinstance(cause, OSError):
            raise FileAccessError(f"cannot write {_dst_name(dst)}: {cause.strerror or cause}") from None
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
            assert result.frames is not None
            write_media(dst, result.frames, int(round(result.fps)), result.audio, result.sample_rate)
    except MediaError as e:  # the writers report every failure so; a failing file system is a FileAccessError
        cause = e.__cause__
        if isinstance(cause, OSError):
            raise FileAccessError(f"cannot write {dst}: {cause.strerror or cause}") from None
        raise
