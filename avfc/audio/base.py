"""The audio codec interface: PCM <-> token streams <-> the bytes of AUDIO units.

A codec cuts 16 kHz mono PCM into frames of ``frame_samples`` samples; audio frame ``k``
covers samples ``[k * F, (k + 1) * F)`` and decodes to exactly that span, so audio stays in
step with video. Each frame becomes one *token*: an ``int`` of a fixed number of bits
(Codec2) or a ``bytes`` packet (Opus). ``pack``/``unpack`` turn a run of tokens into the
``data`` of one AUDIO unit and back (docs/bitstream.md (part C) gives the exact layout).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import IntEnum
from typing import Sequence, TypeAlias, Union

import numpy as np

from avfc.errors import ConfigError, EntropyError, MediaError

#: one codec frame: a Codec2 frame as an int of ``bits_per_frame`` bits, or an Opus packet
Token: TypeAlias = Union[int, bytes]

#: the PCM rate of every avfc audio codec's interface
SAMPLE_RATE = 16000


class CodecId(IntEnum):
    """Audio codec ids as stored in the sequence header (``audio_codec``)."""

    CODEC2 = 1
    OPUS = 2


def as_pcm(pcm: np.ndarray) -> np.ndarray:
    """Check and convert mono PCM: a 1-D array of finite floats -> float32, clipped to [-1, 1]."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise MediaError(f"audio must be mono, a 1-D array; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise MediaError(f"audio samples must be floats in [-1, 1]; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise MediaError("audio contains NaN or infinite samples")
    return np.clip(arr, -1.0, 1.0).astype(np.float32, copy=False)


class AudioEncoder(ABC):
    """A streaming encoder: push PCM in pieces of any size, then flush once.

    The tokens are identical to ``codec.encode`` of the whole signal, whatever the
    chunking, and there are ``ceil(n / frame_samples)`` of them for ``n`` samples pushed.
    """

    def __init__(self, frame_samples: int) -> None:
        self._frame_samples = frame_samples
        self._samples_in = 0
        self._tokens_out = 0
        self._closed = False

    def push(self, pcm: np.ndarray) -> list[Token]:
        """Add mono float PCM at 16 kHz; return the tokens of the frames now complete."""
        if self._closed:
            raise ConfigError("push() after flush(): this audio encoder is finished")
        x = as_pcm(pcm)
        self._samples_in += len(x)
        tokens = self._push(x)
        self._tokens_out += len(tokens)
        return tokens

    def flush(self) -> list[Token]:
        """Zero-pad the last frame and return the remaining tokens; the encoder is then done."""
        if self._closed:
            raise ConfigError("flush() called twice on one audio encoder")
        self._closed = True
        remaining = -(-self._samples_in // self._frame_samples) - self._tokens_out
        tokens = self._flush(remaining)
        if len(tokens) != remaining:
            raise EntropyError(f"audio encoder produced {len(tokens)} final tokens, expected {remaining}")
        self._tokens_out += remaining
        return tokens

    @abstractmethod
    def _push(self, pcm: np.ndarray) -> list[Token]:
        """Codec part of :meth:`push` (``pcm`` already checked)."""

    @abstractmethod
    def _flush(self, remaining: int) -> list[Token]:
        """Codec part of :meth:`flush`: return exactly ``remaining`` tokens."""


class AudioDecoder(ABC):
    """A streaming decoder: push tokens in pieces of any size, then flush once.

    The PCM handed out over all calls is identical to ``codec.decode(tokens, num_samples)`` of
    the whole token list (the same integer filters, the same codec state), whatever the
    chunking. Only :meth:`flush` knows ``num_samples``, which may end inside the last frame, so
    :meth:`push` hands out no sample of the last frame pushed (nor those whose resampling filter
    still lacks input): at most ``(frames pushed - 1) * frame_samples`` samples before the flush.
    """

    def __init__(self, frame_samples: int) -> None:
        self._frame_samples = frame_samples
        self._frames_in = 0
        self._samples_out = 0
        self._held = np.zeros(0, dtype=np.int64)  # values decoded but not handed out yet
        self._closed = False

    def push(self, tokens: Sequence[Token | None]) -> np.ndarray:
        """Tokens of the next frames (``None``: lost) -> the float32 PCM now final."""
        if self._closed:
            raise ConfigError("push() after flush(): this audio decoder is finished")
        self._frames_in += len(tokens)
        self._held = np.concatenate([self._held, self._push(list(tokens))])
        limit = max(self._frames_in - 1, 0) * self._frame_samples - self._samples_out
        return self._out(max(min(limit, len(self._held)), 0))

    def flush(self, num_samples: int) -> np.ndarray:
        """The remaining PCM: the stream's total cut to ``num_samples`` samples."""
        if self._closed:
            raise ConfigError("flush() called twice on one audio decoder")
        self._closed = True
        self._held = np.concatenate([self._held, self._flush()])
        return self._out(max(min(int(num_samples) - self._samples_out, len(self._held)), 0))

    def _out(self, n: int) -> np.ndarray:
        values, self._held = self._held[:n], self._held[n:]
        self._samples_out += n
        return (values / 32768.0).astype(np.float32)

    @abstractmethod
    def _push(self, tokens: list[Token | None]) -> np.ndarray:
        """Codec part of :meth:`push`: int16 values of 16 kHz PCM now complete."""

    @abstractmethod
    def _flush(self) -> np.ndarray:
        """Codec part of :meth:`flush`: the int16 values left (not yet cut)."""


class AudioCodec(ABC):
    """One audio codec configuration (codec id + parameter), stateless and reusable."""

    #: PCM sample rate of encode's input and decode's output
    sample_rate: int = SAMPLE_RATE

    @property
    @abstractmethod
    def codec_id(self) -> int:
        """:class:`CodecId` value stored in the sequence header."""

    @property
    @abstractmethod
    def param(self) -> int:
        """The header's ``audio_param``: Codec2 mode in bit/s (700 = 700C), Opus bitrate in bit/s."""

    @property
    @abstractmethod
    def frame_samples(self) -> int:
        """PCM samples (at :attr:`sample_rate`) per codec frame, i.e. per token."""

    @property
    @abstractmethod
    def frame_payload_bits(self) -> int:
        """Bits of token payload per frame (exact: Codec2 is fixed-rate, Opus runs in CBR)."""

    @property
    @abstractmethod
    def delay(self) -> int:
        """Codec delay (16 kHz samples) the encoder compensates by skipping that much input."""

    @abstractmethod
    def stream_encoder(self) -> AudioEncoder:
        """A fresh streaming encoder (see :class:`AudioEncoder`)."""

    @abstractmethod
    def stream_decoder(self) -> AudioDecoder:
        """A fresh streaming decoder (see :class:`AudioDecoder`)."""

    def decode(self, tokens: Sequence[Token | None], num_samples: int) -> np.ndarray:
        """Tokens of frames ``0, 1, ...`` -> float32 PCM of exactly ``num_samples`` samples.

        ``None`` marks a lost frame, concealed as the codec's documentation says.
        Needs ``num_samples <= len(tokens) * frame_samples`` (else :class:`ConfigError`);
        frames past ``num_samples`` are ignored. A malformed token raises
        :class:`EntropyError`. The stream decoder's output, in one piece.
        """
        n = self._frames_to_decode(tokens, num_samples)
        dec = self.stream_decoder()
        return np.concatenate([dec.push(list(tokens[:n])), dec.flush(num_samples)])

    @abstractmethod
    def pack(self, tokens: Sequence[Token]) -> bytes:
        """Tokens -> the ``data`` of one AUDIO unit (:class:`EntropyError` on a bad token)."""

    @abstractmethod
    def unpack(self, data: bytes, num_frames: int) -> list[Token]:
        """The ``data`` of one AUDIO unit -> its ``num_frames`` tokens, validated.

        Raises :class:`FormatError` when the layout is wrong (length, framing, padding)
        and :class:`EntropyError` when a token itself is invalid; ``pack(unpack(d, n)) == d``
        for every accepted ``d``.
        """

    def encode(self, pcm: np.ndarray) -> list[Token]:
        """Mono float PCM at 16 kHz -> ``ceil(len(pcm) / frame_samples)`` tokens."""
        enc = self.stream_encoder()
        return enc.push(pcm) + enc.flush()

    def num_frames(self, num_samples: int) -> int:
        """Codec frames that cover ``num_samples`` samples: ``ceil(num_samples / frame_samples)``."""
        return -(-int(num_samples) // self.frame_samples)

    def _frames_to_decode(self, tokens: Sequence[Token | None], num_samples: int) -> int:
        """Check decode's arguments; return how many frames cover ``num_samples``."""
        if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool):
            raise ConfigError(f"num_samples must be an int, got {type(num_samples).__name__}")
        if num_samples < 0 or num_samples > len(tokens) * self.frame_samples:
            raise ConfigError(f"num_samples {num_samples} outside 0..{len(tokens) * self.frame_samples}"
                              f" ({len(tokens)} frames of {self.frame_samples} samples)")
        return self.num_frames(num_samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(param={self.param})"


def bitrate_bps(codec: AudioCodec) -> float:
    """Exact token payload rate in bit/s (pack's few framing bytes per unit not included)."""
    return codec.frame_payload_bits * codec.sample_rate / codec.frame_samples


def split_packets(tokens: Sequence[Token], frames_per_packet: int) -> list[tuple[int, list[Token]]]:
    """Cut a token run into ``(first_frame, tokens)`` pieces of ``frames_per_packet`` frames.

    The last piece may be shorter; no piece is empty.
    """
    if (not isinstance(frames_per_packet, (int, np.integer)) or isinstance(frames_per_packet, bool)
            or frames_per_packet < 1):
        raise ConfigError(f"frames_per_packet must be a positive int, got {frames_per_packet!r}")
    n = int(frames_per_packet)
    return [(i, list(tokens[i:i + n])) for i in range(0, len(tokens), n)]

