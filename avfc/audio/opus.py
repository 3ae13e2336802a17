"""Opus (through PyAV's ``libopus``) as a token stream: one 40 ms packet per token.

Encoder settings, all pinned because they shape the bits: 16 kHz mono float input, 40 ms
frames (one video frame at 25 fps; at 6 kbit/s 40 ms frames score higher than 20 ms ones,
see docs/bitstream.md (part C)), ``application=voip``, hard CBR (``vbr=off``, so every packet has
the same size and the rate is exact), complexity 10, no in-band FEC, expected loss 0 %, and
no DTX (libopus's default; this FFmpeg exposes no switch for it).

Delay: libopus looks ahead 104 samples at 16 kHz (2.5 ms + 4 ms). The encoder drops the
first 104 input samples and zero-pads the end, so decoded frame ``k`` lines up with input
``[k * F, (k + 1) * F)`` and there are ``ceil(n / F)`` packets for ``n`` samples; the
first 6.5 ms decode as a fade-in from silence.

Decoding: FFmpeg's libopus decoder always outputs 48 kHz; an integer FIR brings it to 16 kHz.
A lost frame (``None``) becomes a packet of empty frames in the last good packet's
configuration, which makes libopus run its packet-loss concealment; lost frames before any
good packet decode as silence.
"""

from __future__ import annotations

from typing import Sequence

import av
import numpy as np

from avfc.audio.base import SAMPLE_RATE, AudioCodec, AudioDecoder, AudioEncoder, CodecId, Token
from avfc.audio.opus_packet import concealment_packet, packet_samples_48k
from avfc.audio.resample import THIRDBAND_48K, StreamDecimator
from avfc.bitstream.units import encode_varint, read_length
from avfc.errors import ConfigError, EntropyError, FormatError

#: bitrates (bit/s) avfc accepts for Opus
MIN_BITRATE, MAX_BITRATE = 6000, 24000
#: samples per frame at 16 kHz (40 ms)
FRAME_SAMPLES = 640
#: libopus look-ahead at 16 kHz: Fs/400 + Fs/250 (OPUS_GET_LOOKAHEAD outside restricted low-delay)
LOOKAHEAD = 104
#: FFmpeg's libopus decoder output rate
DECODER_RATE = 48000
#: sanity bound on one packet in ``unpack``: a 40 ms packet at Opus's 510 kbit/s is 2,550 bytes
MAX_PACKET_BYTES = 4000
#: the longest length field ``unpack`` reads (LEB128 bytes; 2 cover MAX_PACKET_BYTES)
_MAX_VARINT_BYTES = 2


def cbr_packet_bytes(bitrate: int) -> int:
    """Bytes of every packet libopus makes in hard CBR for 40 ms frames.

    libopus: ``(bitrate * frame_size + 4 * Fs) // (8 * Fs)``, i.e. bitrate / 200 rounded.
    """
    return (bitrate * FRAME_SAMPLES + 4 * SAMPLE_RATE) // (8 * SAMPLE_RATE)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a minimal LEB128 of at most ``_MAX_VARINT_BYTES`` bytes: ``(value, new pos)``."""
    n, value = read_length(data, pos, min(len(data), pos + _MAX_VARINT_BYTES), (1 << (7 * _MAX_VARINT_BYTES)) - 1)
    if n == 0:
        if len(data) < pos + _MAX_VARINT_BYTES:
            raise FormatError("Opus audio data ends inside a length field")
        raise FormatError(f"length field longer than {_MAX_VARINT_BYTES} bytes in Opus audio data")
    if n < 0:
        raise FormatError("non-minimal length field in Opus audio data")
    return value, pos + n


class OpusCodec(AudioCodec):
    """Opus at a bitrate of 6000..24000 bit/s, 40 ms CBR packets."""

    def __init__(self, bitrate: int) -> None:
        if (not isinstance(bitrate, (int, np.integer)) or isinstance(bitrate, bool)
                or not MIN_BITRATE <= bitrate <= MAX_BITRATE):
            raise ConfigError(f"Opus bitrate must be an int in {MIN_BITRATE}..{MAX_BITRATE} bit/s, "
                              f"got {bitrate!r}")
        self._bitrate = int(bitrate)

    @property
    def codec_id(self) -> int:
        return int(CodecId.OPUS)

    @property
    def param(self) -> int:
        return self._bitrate

    @property
    def frame_samples(self) -> int:
        return FRAME_SAMPLES

    @property
    def frame_payload_bits(self) -> int:
        return 8 * cbr_packet_bytes(self._bitrate)

    @property
    def delay(self) -> int:
        return LOOKAHEAD

    def stream_encoder(self) -> AudioEncoder:
        return _OpusEncoder(self)

    def stream_decoder(self) -> AudioDecoder:
        return _OpusDecoder(self)

    # ---------------------------------------------------------------- tokens <-> bytes
    def _check_packet(self, token: object) -> bytes:
        if not isinstance(token, (bytes, bytearray)):
            raise EntropyError(f"an Opus token is a bytes packet, got {type(token).__name__}")
        if len(token) > MAX_PACKET_BYTES:
            raise EntropyError(f"Opus packet of {len(token)} bytes (at most {MAX_PACKET_BYTES})")
        samples = packet_samples_48k(bytes(token))
        if samples != FRAME_SAMPLES * DECODER_RATE // self.sample_rate:
            raise EntropyError(f"Opus packet of {samples / 48:g} ms, avfc's frames are 40 ms")
        return bytes(token)

    def pack(self, tokens: Sequence[Token]) -> bytes:
        """Common length when all packets have it (CBR), else a length before each packet.

        Layout (docs/bitstream.md (part C)): no tokens -> empty. Otherwise a LEB128 ``L``; ``L > 0``:
        every packet is ``L`` bytes and they follow back to back; ``L == 0``: each packet
        follows as LEB128 length + bytes (used only when the lengths differ).
        """
        packets = [self._check_packet(t) for t in tokens]
        if not packets:
            return b""
        lengths = {len(p) for p in packets}
        if len(lengths) == 1:
            return encode_varint(len(packets[0])) + b"".join(packets)
        return encode_varint(0) + b"".join(encode_varint(len(p)) + p for p in packets)

    def unpack(self, data: bytes, num_frames: int) -> list[Token]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"audio data must be bytes, got {type(data).__name__}")
        if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool) or num_frames < 0:
            raise FormatError(f"bad audio frame count {num_frames!r}")
        data = bytes(data)
        if num_frames == 0:
            if data:
                raise FormatError(f"{len(data)} bytes of Opus data for 0 frames")
            return []
        common, pos = _read_varint(data, 0)
        if common > MAX_PACKET_BYTES:
            raise FormatError(f"Opus packet length {common} (at most {MAX_PACKET_BYTES})")
        if common:
            if len(data) - pos != num_frames * common:
                raise FormatError(f"{num_frames} Opus packets of {common} bytes need "
                                  f"{num_frames * common} bytes, the unit has {len(data) - pos}")
            packets = [data[pos + i * common:pos + (i + 1) * common] for i in range(num_frames)]
        else:
            packets = []
            for _ in range(num_frames):
                size, pos = _read_varint(data, pos)
                if size == 0 or size > MAX_PACKET_BYTES:
                    raise FormatError(f"Opus packet length {size} (1..{MAX_PACKET_BYTES})")
                if pos + size > len(data):
                    raise FormatError("Opus audio data ends inside a packet")
                packets.append(data[pos:pos + size])
                pos += size
            if pos != len(data):
                raise FormatError(f"{len(data) - pos} bytes after the last Opus packet")
            if len({len(p) for p in packets}) == 1:
                raise FormatError("Opus packets of one length must use the common-length layout")
        return [self._check_packet(p) for p in packets]


class _OpusDecoder(AudioDecoder):
    """Streaming Opus decoder: one libopus context and concealment state, the 48 -> 16 kHz filter of
    :meth:`OpusCodec.decode` run as a :class:`StreamDecimator` (identical output)."""

    def __init__(self, codec: OpusCodec) -> None:
        super().__init__(codec.frame_samples)
        self._codec = codec
        self._per_packet = FRAME_SAMPLES * DECODER_RATE // codec.sample_rate
        self._ctx = av.CodecContext.create("libopus", "r")
        self._ctx.sample_rate = DECODER_RATE
        self._ctx.layout = "mono"
        self._last_good: bytes | None = None
        self._down = StreamDecimator(THIRDBAND_48K, 3)
        self._k = 0  # audio frames decoded

    def _push(self, tokens: list[Token | None]) -> np.ndarray:
        per_packet = self._per_packet
        pcm48 = np.zeros(len(tokens) * per_packet, dtype=np.int64)
        for i, token in enumerate(tokens):
            k = self._k + i
            if token is None:
                if self._last_good is None:
                    continue  # nothing to conceal from yet: silence
                packet = concealment_packet(self._last_good, per_packet)
            else:
                packet = self._last_good = self._codec._check_packet(token)
            try:
                out = [f.to_ndarray() for f in self._ctx.decode(av.Packet(packet))]
            except av.error.FFmpegError as e:
                raise EntropyError(f"libopus rejected audio frame {k}: {e}") from e
            if not out:
                raise EntropyError(f"libopus returned nothing for audio frame {k}")
            samples = np.concatenate([o.reshape(-1) for o in out])
            if out[0].dtype != np.int16 or len(samples) != per_packet:
                raise EntropyError(f"libopus decoded audio frame {k} to {len(samples)} "
                                   f"{out[0].dtype} samples, expected {per_packet} int16")
            pcm48[i * per_packet:(i + 1) * per_packet] = samples
        self._k += len(tokens)
        return self._down.push(pcm48)

    def _flush(self) -> np.ndarray:
        return self._down.flush()


class _OpusEncoder(AudioEncoder):
    """Streaming Opus encoder: look-ahead skip -> 40 ms frames -> libopus packets."""

    def __init__(self, codec: OpusCodec) -> None:
        super().__init__(codec.frame_samples)
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = codec.sample_rate
        ctx.layout = "mono"
        ctx.format = "flt"
        ctx.bit_rate = codec.param
        ctx.options = {"application": "voip", "frame_duration": "40", "vbr": "off",
                       "compression_level": "10", "packet_loss": "0", "fec": "0"}
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise ConfigError(f"cannot open the libopus encoder: {e}") from e
        if ctx.options:  # FFmpeg hands back the options it did not apply
            raise ConfigError(f"this FFmpeg's libopus encoder ignored the options {dict(ctx.options)}")
        if ctx.frame_size != FRAME_SAMPLES:
            raise ConfigError(f"libopus chose {ctx.frame_size}-sample frames, avfc needs {FRAME_SAMPLES}")
        self._ctx = ctx
        self._skip = codec.delay
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_in = 0  # frames given to libopus
        self._queued: list[bytes] = []  # packets libopus returned that push has not handed out

    def _encode_frames(self, frames: np.ndarray) -> None:
        for frame in frames:
            f = av.AudioFrame.from_ndarray(frame[None, :], format="flt", layout="mono")
            f.sample_rate = SAMPLE_RATE
            f.pts = self._frames_in * FRAME_SAMPLES
            self._frames_in += 1
            self._queued += [bytes(p) for p in self._ctx.encode(f)]

    def _push(self, pcm: np.ndarray) -> list[Token]:
        drop = min(self._skip, len(pcm))
        self._skip -= drop
        self._pending = np.concatenate([self._pending, pcm[drop:]])
        n = len(self._pending) // FRAME_SAMPLES
        self._encode_frames(self._pending[:n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES))
        self._pending = self._pending[n * FRAME_SAMPLES:]
        out: list[Token] = list(self._queued)
        self._queued = []
        return out

    def _flush(self, remaining: int) -> list[Token]:
        to_feed = self._tokens_out + remaining - self._frames_in  # frames libopus has not had yet
        if len(self._pending) > max(to_feed, 0) * FRAME_SAMPLES:
            raise EntropyError(f"Opus encoder holds {len(self._pending)} samples for {to_feed} frames")
        padded = np.zeros(max(to_feed, 0) * FRAME_SAMPLES, dtype=np.float32)
        padded[:len(self._pending)] = self._pending
        self._encode_frames(padded.reshape(-1, FRAME_SAMPLES))
        self._queued += [bytes(p) for p in self._ctx.encode(None)]  # drain (one extra packet)
        out: list[Token] = list(self._queued[:remaining])
        return out
