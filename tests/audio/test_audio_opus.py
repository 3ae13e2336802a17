"""Opus tokens: packet framing, unit layout, CBR rate, delay compensation, concealment."""

from __future__ import annotations

import av
import numpy as np
import pytest

from avfc.audio import OpusCodec
from avfc.audio.opus import cbr_packet_bytes
from avfc.audio.opus_packet import concealment_packet, packet_samples_48k
from avfc.errors import EntropyError, FormatError

from ._signals import bursty_speech, lag_of, spectral_corr

# TOC config 10: SILK wideband 40 ms; config 31: CELT fullband 20 ms; config 9: SILK WB 20 ms
SILK40, CELT20, SILK20 = 10 << 3, 31 << 3, 9 << 3


def silk40(payload: bytes) -> bytes:
    """A framing-valid 40 ms code-0 packet (contents arbitrary)."""
    return bytes([SILK40]) + payload


@pytest.mark.parametrize("packet, samples", [
    (bytes([SILK40]), 1920),  # code 0, one empty frame
    (bytes([SILK40]) + bytes(30), 1920),
    (bytes([CELT20 | 1]) + bytes(40), 1920),  # code 1: two equal 20 ms frames
    (bytes([CELT20 | 2, 10]) + bytes(25), 1920),  # code 2: 10 + 15 bytes
    (bytes([CELT20 | 2, 252, 1]) + bytes(256), 1920),  # 2-byte length 252 + 4
    (bytes([SILK20 | 3, 0x02]) + bytes(8), 1920),  # code 3 CBR, 2 frames of 4
    (bytes([SILK20 | 3, 0x82, 3]) + bytes(8), 1920),  # code 3 VBR: 3 + 5
    (bytes([SILK20 | 3, 0x42, 2]) + bytes(6) + bytes(2), 1920),  # 2 bytes of padding
    (bytes([SILK20 | 3, 0x42, 255, 0]) + bytes(254) + bytes(4), 1920),  # 254 of padding
    (bytes([(16 << 3) | 3, 48]), 5760),  # 48 CELT 2.5 ms frames = 120 ms
])
def test_packet_durations(packet: bytes, samples: int) -> None:
    assert packet_samples_48k(packet) == samples


@pytest.mark.parametrize("packet", [
    b"",
    bytes([CELT20 | 1]) + bytes(3),  # code 1, odd payload
    bytes([CELT20 | 2]),  # code 2 without its length
    bytes([CELT20 | 2, 252]),  # code 2, 2-byte length cut
    bytes([CELT20 | 2, 20]) + bytes(5),  # first frame longer than the packet
    bytes([SILK20 | 3]),  # code 3 without count
    bytes([SILK20 | 3, 0x00]),  # zero frames
    bytes([SILK20 | 3, 0x07]),  # 7 x 20 ms > 120 ms
    bytes([SILK20 | 3, 0x03]) + bytes(4),  # CBR payload does not split in 3
    bytes([SILK20 | 3, 0x42, 9]) + bytes(3),  # padding beyond the end
    bytes([SILK20 | 3, 0x42]),  # padding length missing
    bytes([SILK20 | 3, 0x82, 9]) + bytes(3),  # VBR length beyond the end
    bytes([SILK40]) + bytes(1276),  # frame over 1275 bytes
])
def test_invalid_packets(packet: bytes) -> None:
    with pytest.raises(EntropyError):
        packet_samples_48k(packet)


def test_packet_parser_agrees_with_libopus() -> None:
    """Random packets: accepted with a duration iff libopus decodes them to that many samples."""
    rng = np.random.default_rng(0)
    ctx = av.CodecContext.create("libopus", "r")
    ctx.sample_rate, ctx.layout = 48000, "mono"
    for i in range(1500):
        packet = bytes(rng.integers(0, 256, size=int(rng.integers(1, 12 if i % 2 else 300)), dtype=np.uint8))
        if i % 3 == 0:
            packet = bytes([packet[0] | 3]) + packet[1:]
        try:
            ours = packet_samples_48k(packet)
        except EntropyError:
            ours = None
        try:
            theirs = sum(f.samples for f in ctx.decode(av.Packet(packet)))
        except av.error.FFmpegError:
            theirs = None
        assert ours == theirs, packet.hex()


@pytest.mark.parametrize("bitrate", [6000, 6100, 7777, 12000, 24000])
def test_cbr_packets_have_the_announced_size(bitrate: int) -> None:
    codec = OpusCodec(bitrate)
    x = bursty_speech(0.6, seed=1)
    x[:4000] = 0  # silence too must fill its packets (no DTX)
    tokens = codec.encode(x)
    assert {len(t) for t in tokens} == {cbr_packet_bytes(bitrate)} == {codec.frame_payload_bits // 8}
    assert all(packet_samples_48k(t) == 1920 for t in tokens)
    data = codec.pack(tokens)
    assert data[0] == cbr_packet_bytes(bitrate) and len(data) == 1 + len(tokens) * data[0]


def test_variable_length_layout() -> None:
    codec = OpusCodec(6000)
    packets = [silk40(bytes(n)) for n in (5, 200, 0, 5)]
    data = codec.pack(packets)
    assert data == b"\x00" + b"\x06" + packets[0] + b"\xc9\x01" + packets[1] + b"\x01" + packets[2] \
        + b"\x06" + packets[3]
    assert codec.unpack(data, 4) == packets
    assert codec.pack([]) == b"" and codec.unpack(b"", 0) == []


@pytest.mark.parametrize("data, n", [
    (b"", 1),
    (b"\x00", 0),  # bytes for zero frames
    (b"\x03" + silk40(b"\x01\x02"), 2),  # common length, too few bytes
    (b"\x03" + silk40(b"\x01\x02") + b"\x00", 1),  # common length, too many bytes
    (b"\x80\x00" + b"\x00" * 0, 1),  # non-minimal LEB128 (0x80 0x00)
    (b"\x81\x81\x01", 1),  # length field longer than 2 bytes
    (b"\xa1\x1f" + bytes(4001), 1),  # common length 4001 > MAX_PACKET_BYTES
    (b"\x00\x02" + silk40(b"\x01"), 2),  # variable layout, second packet missing
    (b"\x00\x02" + silk40(b"\x01") + b"\x05" + silk40(b"\x01"), 2),  # ends inside a packet
    (b"\x00\x02" + silk40(b"\x01") + b"\x03" + silk40(b"\x01\x02") + b"\x00", 2),  # trailing byte
    (b"\x00\x02" + silk40(b"\x01") + b"\x02" + silk40(b"\x02"), 2),  # equal lengths: not canonical
    (b"\x00\x00", 1),  # a zero-length packet
])
def test_unpack_rejects_bad_layout(data: bytes, n: int) -> None:
    with pytest.raises(FormatError):
        OpusCodec(6000).unpack(data, n)


@pytest.mark.parametrize("packet", [bytes([SILK20]) + bytes(10),  # a 20 ms packet
                                    bytes([CELT20 | 1]) + bytes(3)])  # broken framing
def test_wrong_packets_are_entropy_errors(packet: bytes) -> None:
    codec = OpusCodec(6000)
    with pytest.raises(EntropyError):
        codec.unpack(bytes([len(packet)]) + packet, 1)
    with pytest.raises(EntropyError):
        codec.pack([packet])
    with pytest.raises(EntropyError):
        codec.decode([packet], 640)
    with pytest.raises(EntropyError):
        codec.pack([123])  # type: ignore[list-item]


@pytest.mark.parametrize("bitrate", [6000, 24000])
def test_lookahead_is_compensated(bitrate: int) -> None:
    # uncompensated, libopus output lags 104 samples (6.5 ms); compensated: -2..-1 measured
    codec = OpusCodec(bitrate)
    x = bursty_speech(2.0, seed=0)
    y = codec.decode(codec.encode(x), len(x))
    assert abs(lag_of(x, y, max_lag=800)) <= 16  # within 1 ms


@pytest.mark.parametrize("bitrate", [6000, 12000, 24000])
def test_decoded_speech_resembles_input(bitrate: int) -> None:
    # over 12 seeds: waveform correlation 0.65-0.84 (the VoIP high-pass shifts the phase of
    # the 90-170 Hz fundamental), log-spectrogram correlation 0.93-0.98
    codec = OpusCodec(bitrate)
    x = bursty_speech(2.0, seed=5)
    y = codec.decode(codec.encode(x), len(x))
    assert np.corrcoef(x, y)[0, 1] > 0.5
    assert spectral_corr(x, y) > 0.85


def test_lost_frames_are_concealed() -> None:
    codec = OpusCodec(12000)
    x = bursty_speech(1.0, seed=6)
    tokens = codec.encode(x)
    f = codec.frame_samples
    k = next(i for i in range(5, len(tokens)) if np.std(x[(i - 1) * f:(i + 2) * f]) > 0.05)  # voiced
    clean = codec.decode(tokens, len(x))
    lossy = codec.decode(tokens[:k] + [None] + tokens[k + 1:], len(x))
    reach = 32  # half the 48 -> 16 kHz filter
    assert np.array_equal(lossy[:k * f - reach], clean[:k * f - reach])
    lost = lossy[k * f:(k + 1) * f]
    assert np.std(lost) > 0.2 * np.std(clean[k * f:(k + 1) * f])  # PLC, not silence
    assert not np.array_equal(lost, clean[k * f:(k + 1) * f])
    # a loss before any good packet is silence, then decoding starts cleanly
    late = codec.decode([None, None] + tokens[2:], len(x))
    assert not late[:2 * f - reach].any() and np.abs(late[3 * f:]).max() > 0.05


def test_concealment_packet() -> None:
    plc = concealment_packet(bytes([SILK40 | 1]) + bytes(20), 1920)
    assert plc == bytes([SILK40 | 3, 1]) and packet_samples_48k(plc) == 1920
    plc = concealment_packet(bytes([CELT20]) + bytes(20), 1920)
    assert plc == bytes([CELT20 | 3, 2]) and packet_samples_48k(plc) == 1920


def test_random_packet_contents_decode_or_fail_cleanly() -> None:
    codec = OpusCodec(6000)
    rng = np.random.default_rng(3)
    tokens = [silk40(bytes(rng.integers(0, 256, size=int(rng.integers(0, 60)), dtype=np.uint8)))
              for _ in range(10)]
    y = codec.decode(tokens, 10 * 640)
    assert y.shape == (6400,) and np.all(np.isfinite(y))
