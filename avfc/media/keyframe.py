"""Key-frame (intra picture) codec: one RGB picture <-> a few hundred bytes of AV1 or HEVC.

The picture is converted to YUV 4:2:0 by our own integer code (:mod:`avfc.media.yuv`), coded
as a single intra picture through a PyAV ``CodecContext`` (no container), and the elementary
stream is stripped of everything the decoder does not need. The byte layout of the payload
("compact AV1" / "compact HEVC") is specified in ``docs/bitstream.md (part D)``.

- ``"av1"``: encoder libsvtav1 in still-picture mode (``avif=1``: reduced still-picture
  sequence header, all intra), fixed ``qp`` in 0..63 (0 is lossless); decoder libdav1d.
- ``"hevc"``: encoder libx265, one IDR picture at fixed ``qp`` in 0..51, no SEI, no VUI
  timing; decoder FFmpeg's ``hevc``.

Decoding is bit-exact on every machine: both decoders implement normative decoding processes
and the colour conversion is integer. Encoding need not be reproducible across machines
(the encoder works closed loop on the decoded picture).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from fractions import Fraction
from typing import Any, Callable, Iterator, Literal, Optional

import av
import numpy as np

from avfc.errors import ConfigError, FormatError, MediaError
from avfc.media.yuv import rgb_to_yuv420, yuv420_to_rgb

Codec = Literal["av1", "hevc"]

CODECS: tuple[str, ...] = ("av1", "hevc")
#: Valid ``qp`` per codec (inclusive). Higher qp: coarser quantisation, fewer bytes.
QP_RANGE: dict[str, tuple[int, int]] = {"av1": (0, 63), "hevc": (0, 51)}
#: Default ``qp`` per codec: about 1.3 kB for a 256x256 face crop (benchmarks/keyframe_codecs.py).
DEFAULT_QP: dict[str, int] = {"av1": 40, "hevc": 38}
#: Picture sides accepted by encode and decode (x265 refuses sides below 16).
MIN_SIDE = 16
MAX_SIDE = 4096
#: A payload longer than this is refused before decoding (3 bytes a pixel at the largest size).
MAX_PAYLOAD_BYTES = 3 * MAX_SIDE * MAX_SIDE

#: SVT-AV1 speed preset (0 slowest .. 13). At 256x256, preset 0 needs about 4.5 % fewer bytes
#: than preset 2 and 10 % fewer than preset 4, for about 0.2 s a picture: a key frame is coded once.
AV1_PRESET = 0
#: x265 preset: veryslow and placebo give the same size at 256x256.
HEVC_PRESET = "veryslow"

_AV1_OBU_SEQUENCE_HEADER = 1
_AV1_KEPT_OBUS = frozenset({1, 3, 4, 6, 7})  # sequence header, frame header, tile group, frame, redundant frame header
_HEVC_VPS, _HEVC_SPS, _HEVC_PPS = 32, 33, 34
_START_CODE = b"\x00\x00\x01"


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise ConfigError(f"unknown key-frame codec {codec!r}; expected one of {CODECS}")


def _check_qp(codec: str, qp: int) -> None:
    lo, hi = QP_RANGE[codec]
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not lo <= qp <= hi:
        raise ConfigError(f"qp for {codec} must be an integer in {lo}..{hi}, got {qp!r}")


def _check_size(width: int, height: int) -> None:
    for name, side in (("width", width), ("height", height)):
        if isinstance(side, bool) or not isinstance(side, (int, np.integer)):
            raise ConfigError(f"picture {name} must be an integer, got {side!r}")
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ConfigError(f"picture {name} must be in {MIN_SIDE}..{MAX_SIDE}, got {side}")


def _coded_size(width: int, height: int) -> tuple[int, int]:
    """The coded picture size: odd sides are padded by one (edge replication) for 4:2:0."""
    return width + width % 2, height + height % 2


def _align64(side: int) -> int:
    return (side + 63) // 64 * 64


def _quiet_svt() -> None:
    # SVT-AV1 prints its banner to stderr unless SVT_LOG is set before its first use in the
    # process; keep errors only, but respect a value the user has set.
    os.environ.setdefault("SVT_LOG", "1")


# --- elementary-stream packing -------------------------------------------------------------


def _read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise FormatError("AV1 payload ends inside an OBU size field")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise FormatError("AV1 OBU size field longer than 8 bytes")


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _split_obus(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split AV1 OBUs into (type, header bytes without the size flag, payload)."""
    obus = []
    pos = 0
    while pos < len(data):
        header = data[pos]
        if header & 0x80:
            raise FormatError("AV1 OBU forbidden bit is set")
        obu_type = (header >> 3) & 0x0F
        has_ext = (header >> 2) & 1
        has_size = (header >> 1) & 1
        head_len = 1 + has_ext
        if pos + head_len > len(data):
            raise FormatError("AV1 payload ends inside an OBU header")
        head = bytes([header & ~0x02]) + data[pos + 1 : pos + head_len]
        pos += head_len
        if has_size:
            size, pos = _read_leb128(data, pos)
        else:
            size = len(data) - pos
        if pos + size > len(data):
            raise FormatError("AV1 OBU runs past the end of the payload")
        obus.append((obu_type, head, data[pos : pos + size]))
        pos += size
    return obus


def _pack_av1(stream: bytes) -> bytes:
    """Keep the OBUs dav1d needs; every OBU but the last carries its size, the last runs to the end."""
    kept = [obu for obu in _split_obus(stream) if obu[0] in _AV1_KEPT_OBUS]
    out = bytearray()
    for i, (_, head, payload) in enumerate(kept):
        if i < len(kept) - 1:
            out += bytes([head[0] | 0x02]) + head[1:] + _leb128(len(payload)) + payload
        else:
            out += head + payload
    return bytes(out)


def _unpack_av1(data: bytes) -> bytes:
    """Rebuild a low-overhead AV1 temporal unit (every OBU with its size field) for dav1d."""
    obus = _split_obus(data)
    if not obus or obus[0][0] != _AV1_OBU_SEQUENCE_HEADER:
        raise FormatError("compact AV1 payload must start with a sequence header OBU")
    out = bytearray()
    for _, head, payload in obus:
        out += bytes([head[0] | 0x02]) + head[1:] + _leb128(len(payload)) + payload
    return bytes(out)


def _split_nals(stream: bytes) -> list[bytes]:
    """Split an Annex B byte stream into NAL units (start codes and trailing zeros removed)."""
    nals = []
    for chunk in stream.split(_START_CODE):
        chunk = chunk.rstrip(b"\x00")
        if chunk:
            nals.append(chunk)
    return nals


def _pack_hevc(stream: bytes) -> bytes:
    """Keep VPS, SPS, PPS and slice NAL units, joined by 3-byte start codes, the first implied."""
    kept = []
    for nal in _split_nals(stream):
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type < 32 or nal_type in (_HEVC_VPS, _HEVC_SPS, _HEVC_PPS):
            kept.append(nal)
    return _START_CODE.join(kept)


def _unpack_hevc(data: bytes) -> bytes:
    if len(data) < 2 or (data[0] >> 1) & 0x3F != _HEVC_VPS:
        raise FormatError("compact HEVC payload must start with a VPS NAL unit")
    return _START_CODE + data


# --- PyAV ----------------------------------------------------------------------------------


@contextlib.contextmanager
def keep_scheduling() -> Iterator[None]:
    """Restore the calling thread's scheduling policy after an encoder ran.

    libsvtav1, run by root on Linux, leaves the thread that drives it on ``SCHED_FIFO`` at priority 99
    (measured with PyAV 18 / SVT-AV1 in this package's tests): an application that codes a key picture
    would go on as a real-time thread that can starve the rest of the machine. Where the platform has no
    ``sched_*`` calls this does nothing."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # not Linux
        yield
        return
    try:
        yield
    finally:
        try:
            if os.sched_getscheduler(0) != policy or os.sched_getparam(0) != param:
                os.sched_setscheduler(0, policy, param)
        except OSError:  # pragma: no cover - lowering one's own priority is always allowed
            pass


def _encode_yuv(codec: str, yuv: np.ndarray, width: int, height: int, qp: int, speed: Optional[int]) -> bytes:
    if codec == "av1":
        _quiet_svt()
        name = "libsvtav1"
        preset = AV1_PRESET if speed is None else speed
        options = {"preset": str(preset), "svtav1-params": f"avif=1:qp={qp}:film-grain=0"}
    else:
        name = "libx265"
        params = (
            f"qp={qp}:keyint=1:info=0:hash=0:aud=0:repeat-headers=0"
            ":vui-timing-info=0:vui-hrd-info=0:log-level=error"
        )
        options = {"preset": HEVC_PRESET, "tune": "psnr", "x265-params": params}
    try:
        ctx: Any = av.CodecContext.create(name, "w")  # (a video codec context: width, encode, ...)
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.options = options
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = 0
        with keep_scheduling():
            packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    except av.FFmpegError as exc:
        raise MediaError(f"{name} failed to encode a {width}x{height} picture: {exc}") from exc
    stream = b"".join(bytes(p) for p in packets)
    if not stream:
        raise MediaError(f"{name} produced no data for a {width}x{height} picture")
    return stream


def _decode_planes(codec: str, stream: bytes, width: int, height: int) -> tuple[np.ndarray, ...]:
    name = "libdav1d" if codec == "av1" else "hevc"
    try:
        ctx: Any = av.CodecContext.create(name, "r")
        ctx.thread_count = 1
        # refuse pictures larger than expected before the decoder allocates them (HEVC codes
        # sizes rounded up to its 8x8 minimum block, so allow a 64-pixel alignment)
        ctx.options = {"max_pixels": str(_align64(width) * _align64(height))}
        frames = list(ctx.decode(av.Packet(stream))) + list(ctx.decode(None))
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"{codec} key frame does not decode: {exc}") from exc
    if len(frames) != 1:
        raise MediaError(f"{codec} key frame decoded to {len(frames)} pictures, expected 1")
    frame = frames[0]
    if frame.format.name != "yuv420p":
        raise MediaError(f"{codec} key frame decoded as {frame.format.name}, expected yuv420p")
    if (frame.width, frame.height) != (width, height):
        raise MediaError(
            f"{codec} key frame decoded to {frame.width}x{frame.height}, expected {width}x{height}"
        )
    planes = []
    for plane in frame.planes:
        arr = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        planes.append(arr[:, : plane.width].copy())
    return tuple(planes)


# --- public API ----------------------------------------------------------------------------


def encode_intra(rgb: np.ndarray, codec: Codec = "av1", qp: int | None = None, *,
                 speed: Optional[int] = None) -> bytes:
    """Intra-code one RGB picture.

    Args:
        rgb: uint8 array (H, W, 3), sides in ``MIN_SIDE..MAX_SIDE``. Odd sides are padded by
            one pixel (edge replication) before coding; :func:`decode_intra` crops it again.
        codec: ``"av1"`` or ``"hevc"``.
        qp: quantiser in ``QP_RANGE[codec]``; ``None`` takes ``DEFAULT_QP[codec]``.
        speed: AV1 only, SVT-AV1's speed preset (0 slowest, best per byte .. 13; ``None``: :data:`AV1_PRESET`).
            Any preset gives a payload every decoder reads; faster ones spend a few % more bytes for the same
            picture (``AV1_PRESET``'s comment). HEVC ignores it.

    Returns:
        The compact payload (see ``docs/bitstream.md (part D)``); it does not record the size or
        the codec, which the caller stores.

    Raises:
        ConfigError: unknown codec, qp out of range, picture size out of range.
        MediaError: ``rgb`` is not a uint8 RGB picture, or the encoder fails.
    """
    _check_codec(codec)
    qp = DEFAULT_QP[codec] if qp is None else qp
    _check_qp(codec, qp)
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, np.integer))
                              or not 0 <= speed <= 13):
        raise ConfigError(f"speed must be an SVT-AV1 preset 0..13 or None, got {speed!r}")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MediaError(
            f"key frame must be a uint8 array (H, W, 3), got "
            f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}"
        )
    height, width = rgb.shape[:2]
    _check_size(width, height)
    cw, ch = _coded_size(width, height)
    if (cw, ch) != (width, height):
        rgb = np.pad(rgb, ((0, ch - height), (0, cw - width), (0, 0)), mode="edge")
    y, u, v = rgb_to_yuv420(np.ascontiguousarray(rgb))
    yuv = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(ch * 3 // 2, cw)
    stream = _encode_yuv(codec, yuv, cw, ch, int(qp), None if speed is None else int(speed))
    payload = _pack_av1(stream) if codec == "av1" else _pack_hevc(stream)
    if not payload:
        raise MediaError(f"{codec} encoder output holds no picture data")
    return payload


def decode_intra(data: bytes, codec: Codec, width: int, height: int) -> np.ndarray:
    """Decode a payload of :func:`encode_intra` to an RGB picture, bit-exactly on any machine.

    Args:
        data: the compact payload.
        codec: ``"av1"`` or ``"hevc"``, as encoded.
        width, height: the picture size, as encoded (the decoded size must match it).

    Returns:
        uint8 array (height, width, 3).

    Raises:
        ConfigError: unknown codec or size out of range.
        FormatError: the payload is not a compact AV1/HEVC payload.
        MediaError: the decoder rejects it, or it decodes to the wrong size or format.
    """
    _check_codec(codec)
    _check_size(width, height)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"key-frame payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise FormatError("empty key-frame payload")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise FormatError(f"key-frame payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    stream = _unpack_av1(data) if codec == "av1" else _unpack_hevc(data)
    cw, ch = _coded_size(width, height)
    y, u, v = _decode_planes(codec, stream, cw, ch)
    return np.ascontiguousarray(yuv420_to_rgb(y, u, v)[:height, :width])


class IntraCache:
    """Payloads of pictures already intra-coded, by picture, codec, qp and speed preset.

    The whole-file rate control codes the same key picture in each of its passes, and each pass's bisection
    tries many of the qps the pass before tried (10 distinct encodes of 24 on a 100-frame clip at 5 kbps). The
    encoders are deterministic for one picture and setting, so a payload looked up here is the one an encode
    would give: the same bytes, a lookup instead of an encode. At most ``max_entries`` payloads are held (the
    least recently used go first), so its memory is bounded whatever the input's length.
    """

    def __init__(self, max_entries: int = 64) -> None:
        if max_entries < 1:
            raise ConfigError(f"max_entries must be at least 1, got {max_entries!r}")
        self.max_entries = int(max_entries)
        self._payloads: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        #: encodes done and encodes answered from the cache
        self.encodes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._payloads)

    def encode(self, rgb: np.ndarray, codec: Codec = "av1", qp: int | None = None, *,
               speed: Optional[int] = None) -> bytes:
        """:func:`encode_intra`, or the payload it gave for the same picture and settings."""
        pic = np.ascontiguousarray(rgb)
        key = (hashlib.blake2b(pic.data, digest_size=16).digest(), pic.shape, str(pic.dtype), codec, qp, speed)
        payload = self._payloads.get(key)
        if payload is not None:
            self._payloads.move_to_end(key)
            self.hits += 1
            return payload
        payload = encode_intra(pic, codec, qp, speed=speed)
        self.encodes += 1
        self._payloads[key] = payload
        if len(self._payloads) > self.max_entries:
            self._payloads.popitem(last=False)
        return payload


def _encoder(cache: Optional[IntraCache]) -> Callable[..., bytes]:
    return encode_intra if cache is None else cache.encode


def encode_intra_to_size(rgb: np.ndarray, codec: Codec, max_bytes: int, *,
                         or_coarsest: bool = False, speed: Optional[int] = None,
                         near_qp: Optional[int] = None, cache: Optional[IntraCache] = None) -> tuple[bytes, int]:
    """Code a picture at the lowest qp (best quality) whose payload fits in ``max_bytes``.

    Bisection over ``QP_RANGE[codec]`` (about 7 encodes); size is not strictly monotonic in
    qp, so the result is the lowest fitting qp that bisection finds, not always the global one.
    With ``or_coarsest``, a picture that does not fit even at the coarsest qp is returned at that
    qp (longer than ``max_bytes``) instead of raising. ``speed``: as :func:`encode_intra`.

    ``near_qp``: start at that qp instead (say the previous key picture's) and search outward from it
    (steps of 1, 2, 4, ... towards finer while it fits, coarser while it does not), then bisect the bracket:
    two or three encodes when the answer is near, where the full bisection always takes about 7-8. It may
    settle on another qp than the full bisection where sizes are not monotonic in qp.

    ``cache``: an :class:`IntraCache` that answers the qps already coded for this picture (the same result, fewer
    encodes).

    Returns:
        ``(payload, qp)``.

    Raises:
        ConfigError: bad codec, or (without ``or_coarsest``) not even the coarsest qp fits in
            ``max_bytes``.
        MediaError: as :func:`encode_intra`.
    """
    _check_codec(codec)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ConfigError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if near_qp is not None:
        return _to_size_near(rgb, codec, int(max_bytes), or_coarsest, speed, int(near_qp), cache)
    encode = _encoder(cache)
    lo, hi = QP_RANGE[codec]
    best = encode(rgb, codec, hi, speed=speed)
    if len(best) > max_bytes:
        if or_coarsest:
            return best, hi
        raise ConfigError(
            f"{codec} key frame needs {len(best)} bytes at the coarsest qp {hi}; "
            f"it cannot fit in {max_bytes}"
        )
    first = encode(rgb, codec, lo, speed=speed)
    if len(first) <= max_bytes:
        return first, lo
    return _bisect(rgb, codec, max_bytes, speed, lo, hi, best, cache)


def _bisect(rgb: np.ndarray, codec: Codec, max_bytes: int, speed: Optional[int], over: int, fit: int,
            best: bytes, cache: Optional[IntraCache] = None) -> tuple[bytes, int]:
    """The lowest qp in ``(over, fit]`` that bisection finds fitting: qp ``over`` does not fit, qp ``fit`` does
    (its payload ``best``)."""
    encode = _encoder(cache)
    while fit - over > 1:
        mid = (over + fit) // 2
        payload = encode(rgb, codec, mid, speed=speed)
        if len(payload) <= max_bytes:
            fit, best = mid, payload
        else:
            over = mid
    return best, fit


def _to_size_near(rgb: np.ndarray, codec: Codec, max_bytes: int, or_coarsest: bool, speed: Optional[int],
                  near: int, cache: Optional[IntraCache] = None) -> tuple[bytes, int]:
    """:func:`encode_intra_to_size` searched outward from qp ``near``."""
    encode = _encoder(cache)
    lo, hi = QP_RANGE[codec]
    q = min(max(near, lo), hi)
    payload = encode(rgb, codec, q, speed=speed)
    step = 1
    if len(payload) <= max_bytes:  # fits: finer while it does (a bracket: over < fit)
        fit, best = q, payload
        over = None
        while fit > lo:
            q = max(lo, fit - step)
            payload = encode(rgb, codec, q, speed=speed)
            if len(payload) > max_bytes:
                over = q
                break
            fit, best, step = q, payload, step * 2
        if over is None:
            return best, fit  # the finest qp fits
    else:  # too large: coarser until it fits
        over = q
        while True:
            if over >= hi:
                if or_coarsest:
                    return payload, hi
                raise ConfigError(f"{codec} key frame needs {len(payload)} bytes at the coarsest qp {hi}; "
                                  f"it cannot fit in {max_bytes}")
            q = min(hi, over + step)
            payload = encode(rgb, codec, q, speed=speed)
            if len(payload) <= max_bytes:
                fit, best = q, payload
                break
            over, step = q, step * 2
    return _bisect(rgb, codec, max_bytes, speed, over, fit, best, cache)


__all__ = [
    "AV1_PRESET",
    "CODECS",
    "DEFAULT_QP",
    "HEVC_PRESET",
    "IntraCache",
    "MAX_SIDE",
    "MIN_SIDE",
    "QP_RANGE",
    "decode_intra",
    "encode_intra",
    "encode_intra_to_size",
]
