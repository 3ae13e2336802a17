"""Opus packet framing (RFC 6716, section 3): validation and concealment packets.

Only the framing is checked here (TOC byte, frame count, frame lengths, padding), exactly
as libopus's ``opus_packet_parse`` does; the frames' contents are the decoder's business.
"""

from __future__ import annotations

from avfc.errors import EntropyError

#: the largest frame the framing allows (RFC 6716, 3.2.1)
MAX_FRAME_BYTES = 1275
#: the longest packet: 120 ms at 48 kHz
MAX_PACKET_SAMPLES_48K = 5760


def frame_samples_48k(config: int) -> int:
    """Samples per frame at 48 kHz of a TOC configuration number (0..31, RFC 6716 table 2)."""
    if config < 12:  # SILK-only NB/MB/WB: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config % 4]
    if config < 16:  # Hybrid SWB/FB: 10, 20 ms
        return (480, 960)[config % 2]
    return (120, 240, 480, 960)[config % 4]  # CELT-only: 2.5, 5, 10, 20 ms


def _frame_length(packet: bytes, pos: int) -> tuple[int, int]:
    """Read a 1-2 byte frame length at ``pos``: ``(length, bytes used)``."""
    if pos >= len(packet):
        raise EntropyError("Opus packet ends inside a frame length")
    first = packet[pos]
    if first < 252:
        return first, 1
    if pos + 1 >= len(packet):
        raise EntropyError("Opus packet ends inside a frame length")
    return first + 4 * packet[pos + 1], 2


def packet_samples_48k(packet: bytes) -> int:
    """Validate one Opus packet's framing; return its duration in 48 kHz samples."""
    n = len(packet)
    if n < 1:
        raise EntropyError("empty Opus packet")
    toc = packet[0]
    per_frame = frame_samples_48k(toc >> 3)
    code = toc & 3
    if code == 0:
        count, sizes = 1, [n - 1]
    elif code == 1:
        if (n - 1) % 2:
            raise EntropyError("Opus code-1 packet with an odd payload length")
        count, sizes = 2, [(n - 1) // 2] * 2
    elif code == 2:
        first, used = _frame_length(packet, 1)
        second = n - 1 - used - first
        if second < 0:
            raise EntropyError("Opus code-2 packet shorter than its first frame")
        count, sizes = 2, [first, second]
    else:
        if n < 2:
            raise EntropyError("Opus code-3 packet without a frame count byte")
        vbr, has_padding, count = packet[1] & 0x80, packet[1] & 0x40, packet[1] & 0x3F
        if count == 0 or count * per_frame > MAX_PACKET_SAMPLES_48K:
            raise EntropyError(f"Opus code-3 packet with {count} frames of {per_frame} samples")
        pos, padding = 2, 0
        while has_padding:
            if pos >= n:
                raise EntropyError("Opus packet ends inside its padding length")
            p = packet[pos]
            pos += 1
            padding += 254 if p == 255 else p
            has_padding = p == 255
        remaining = n - pos - padding
        if remaining < 0:
            raise EntropyError("Opus packet shorter than its padding")
        if vbr:
            sizes = []
            for _ in range(count - 1):
                size, used = _frame_length(packet, pos)
                pos += used
                remaining -= used + size
                if remaining < 0:
                    raise EntropyError("Opus packet shorter than its frame lengths say")
                sizes.append(size)
            sizes.append(remaining)
        else:
            if remaining % count:
                raise EntropyError("Opus CBR code-3 packet whose payload does not split evenly")
            sizes = [remaining // count] * count
    if max(sizes) > MAX_FRAME_BYTES:
        raise EntropyError(f"Opus frame of {max(sizes)} bytes (at most {MAX_FRAME_BYTES})")
    return count * per_frame


def concealment_packet(previous: bytes, samples_48k: int) -> bytes:
    """A packet of empty frames lasting ``samples_48k``: libopus conceals (PLC) each one.

    It keeps the configuration of ``previous`` (the last good packet), written as a code-3
    CBR packet whose frames have length 0 (RFC 6716, 3.2.1: a 0-length frame is lost).
    """
    toc = previous[0] & 0xFC
    count = samples_48k // frame_samples_48k(toc >> 3)
    return bytes([toc | 3, count])
