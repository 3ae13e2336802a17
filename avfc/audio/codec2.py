"""Codec2 (through ``pycodec2``'s bundled libcodec2) as a token stream.

libcodec2 works on 8 kHz int16 PCM. The encoder low-passes and decimates avfc's 16 kHz
input to 8 kHz (integer FIR, :mod:`avfc.audio.resample`); the decoder interpolates back.
A token is one codec frame as an int of exactly ``bits_per_frame`` bits: the frame's bytes
as libcodec2 writes them (fields packed MSB first), read big-endian, with the unused low
bits of the last byte dropped. Token bit ``bits - 1`` is the first bit libcodec2 wrote.

Delay: a frame's parameters describe the speech about 20 ms (700C: 30 ms) before the end
of the frame, so decoded speech lags the input by that much (measured by envelope
cross-correlation, see docs/bitstream.md (part C)). The encoder compensates by dropping the first
``delay`` input samples and zero-padding the end: decoded frame ``k`` then lines up with
input samples ``[k * F, (k + 1) * F)``. The first ``delay`` samples are lost (the decoder
starts from silence there).

Lost frames (``None``) decode to silence; the decoder's state stays at the last good frame.

Decoding is not bit-exact from run to run: libcodec2 draws the phases of unvoiced harmonics
from a process-global random generator, so the same tokens decode to slightly different
samples (waveform correlation > 0.99). The tokens themselves are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pycodec2

from avfc.audio.base import AudioCodec, AudioDecoder, AudioEncoder, CodecId, Token
from avfc.audio.resample import HALFBAND_16K, INTERP2_16K, StreamDecimator, to_int16
from avfc.errors import ConfigError, EntropyError, FormatError

@dataclass(frozen=True)
class Codec2Mode:
    """The fixed properties of one Codec2 mode; these define the format, libcodec2 is checked."""

    bits: int  # bits per frame
    samples_8k: int  # libcodec2 samples per frame at 8 kHz
    delay: int  # compensated delay, in 16 kHz samples


#: avfc's Codec2 modes by ``param`` (bit/s); 700 is mode 700C
MODES: dict[int, Codec2Mode] = {
    700: Codec2Mode(bits=28, samples_8k=320, delay=480),
    1300: Codec2Mode(bits=52, samples_8k=320, delay=320),
    1600: Codec2Mode(bits=64, samples_8k=320, delay=320),
    3200: Codec2Mode(bits=64, samples_8k=160, delay=320),
}


def _new_state(param: int, encoder: bool) -> pycodec2.Codec2:
    """A libcodec2 state with every setting that shapes the bits pinned explicitly."""
    c2 = pycodec2.Codec2(param)
    c2.set_natural_or_gray(1)  # libcodec2's default: Gray-coded quantiser indexes
    if param == 700 and encoder:
        c2.eq_700c(0)  # libcodec2's default: no encoder-side equaliser in 700C
    return c2


class Codec2Codec(AudioCodec):
    """Codec2 at 700C (``param=700``), 1300, 1600 or 3200 bit/s."""

    def __init__(self, param: int) -> None:
        if param not in MODES:
            raise ConfigError(f"unknown Codec2 mode {param!r}; modes: {sorted(MODES)} (700 = 700C)")
        self._param = int(param)
        self._mode = MODES[self._param]
        lib = pycodec2.Codec2(self._param)
        if (lib.bits_per_frame(), lib.samples_per_frame()) != (self._mode.bits, self._mode.samples_8k):
            raise ConfigError(f"libcodec2 mode {param}: {lib.bits_per_frame()} bits per "
                              f"{lib.samples_per_frame()} samples, avfc's format needs "
                              f"{self._mode.bits} per {self._mode.samples_8k}")

    @property
    def codec_id(self) -> int:
        return int(CodecId.CODEC2)

    @property
    def param(self) -> int:
        return self._param

    @property
    def frame_samples(self) -> int:
        return 2 * self._mode.samples_8k

    @property
    def frame_payload_bits(self) -> int:
        return self._mode.bits

    @property
    def mode(self) -> Codec2Mode:
        """The mode's fixed properties (bits per frame, 8 kHz frame length, delay)."""
        return self._mode

    @property
    def delay(self) -> int:
        return self._mode.delay

    def stream_encoder(self) -> AudioEncoder:
        return _Codec2Encoder(self)

    def stream_decoder(self) -> AudioDecoder:
        return _Codec2Decoder(self)

    # ---------------------------------------------------------------- tokens <-> bytes
    def _frame_bytes(self) -> int:
        return (self._mode.bits + 7) // 8

    def token_from_frame(self, frame: bytes) -> int:
        """libcodec2's frame bytes -> the token (the frame's first ``bits`` bits, MSB first)."""
        return int.from_bytes(frame, "big") >> (8 * self._frame_bytes() - self._mode.bits)

    def _frame_from_token(self, token: Token) -> bytes:
        self._check_token(token)
        n = self._frame_bytes()
        return (int(token) << (8 * n - self._mode.bits)).to_bytes(n, "big")

    def _check_token(self, token: object) -> None:
        if not isinstance(token, (int, np.integer)) or isinstance(token, bool):
            raise EntropyError(f"a Codec2 token is an int, got {type(token).__name__}")
        if not 0 <= token < (1 << self._mode.bits):
            raise EntropyError(f"Codec2 token {token} does not fit in {self._mode.bits} bits")

    def pack(self, tokens: Sequence[Token]) -> bytes:
        """Tokens back to back, MSB first, no padding between frames; zero bits to the byte end."""
        for t in tokens:
            self._check_token(t)
        if len(tokens) == 0:
            return b""
        b = self._mode.bits
        values = np.array([int(t) for t in tokens], dtype=np.uint64)
        shifts = np.arange(b - 1, -1, -1, dtype=np.uint64)
        bits = ((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        return np.packbits(bits.ravel()).tobytes()

    def unpack(self, data: bytes, num_frames: int) -> list[Token]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"audio data must be bytes, got {type(data).__name__}")
        if not isinstance(num_frames, (int, np.integer)) or isinstance(num_frames, bool) or num_frames < 0:
            raise FormatError(f"bad audio frame count {num_frames!r}")
        b = self._mode.bits
        expected = (int(num_frames) * b + 7) // 8
        if len(data) != expected:
            raise FormatError(f"Codec2 {self._param}: {num_frames} frames of {b} bits need "
                              f"{expected} bytes, the unit has {len(data)}")
        if num_frames == 0:
            return []
        bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))
        if bits[num_frames * b:].any():
            raise FormatError("non-zero padding bits after the last Codec2 frame")
        shifts = np.arange(b - 1, -1, -1, dtype=np.uint64)
        values = (bits[:num_frames * b].reshape(num_frames, b).astype(np.uint64) << shifts).sum(axis=1)
        return [int(v) for v in values]


class _Codec2Decoder(AudioDecoder):
    """Streaming Codec2 decoder: one libcodec2 state, the 8 -> 16 kHz filter of :meth:`Codec2Codec.decode`
    run as a :class:`StreamDecimator` over the zero-stuffed samples (identical output)."""

    def __init__(self, codec: Codec2Codec) -> None:
        super().__init__(codec.frame_samples)
        self._codec = codec
        self._state = _new_state(codec.param, encoder=False)
        self._interp = StreamDecimator(INTERP2_16K, 1)

    def _push(self, tokens: list[Token | None]) -> np.ndarray:
        s8 = self._codec._mode.samples_8k
        pcm8 = np.zeros(len(tokens) * s8, dtype=np.int64)
        for k, token in enumerate(tokens):
            if token is not None:  # a lost frame is silence
                pcm8[k * s8:(k + 1) * s8] = self._state.decode(self._codec._frame_from_token(token))
        up = np.zeros(2 * len(pcm8), dtype=np.int64)
        up[::2] = pcm8
        return self._interp.push(up)

    def _flush(self) -> np.ndarray:
        return self._interp.flush()


class _Codec2Encoder(AudioEncoder):
    """Streaming Codec2 encoder: delay skip -> int16 -> decimate to 8 kHz -> frames."""

    def __init__(self, codec: Codec2Codec) -> None:
        super().__init__(codec.frame_samples)
        self._codec = codec
        self._state = _new_state(codec.param, encoder=True)
        self._skip = codec.delay
        self._down = StreamDecimator(HALFBAND_16K, 2)
        self._pending = np.zeros(0, dtype=np.int64)  # 8 kHz samples not yet framed

    def _encode_frames(self, pcm8: np.ndarray, n: int) -> list[Token]:
        s8 = self._codec.mode.samples_8k
        frames = pcm8[:n * s8].astype(np.int16).reshape(n, s8)
        return [self._codec.token_from_frame(self._state.encode(np.ascontiguousarray(f))) for f in frames]

    def _push(self, pcm: np.ndarray) -> list[Token]:
        drop = min(self._skip, len(pcm))
        self._skip -= drop
        self._pending = np.concatenate([self._pending, self._down.push(to_int16(pcm[drop:]))])
        n = len(self._pending) // self._codec.mode.samples_8k
        tokens = self._encode_frames(self._pending, n)
        self._pending = self._pending[n * self._codec.mode.samples_8k:]
        return tokens

    def _flush(self, remaining: int) -> list[Token]:
        rest = np.concatenate([self._pending, self._down.flush()])
        need = remaining * self._codec.mode.samples_8k
        if len(rest) > need:
            raise EntropyError(f"Codec2 encoder holds {len(rest)} samples for {remaining} frames")
        padded = np.zeros(need, dtype=np.int64)
        padded[:len(rest)] = rest
        return self._encode_frames(padded, remaining)
