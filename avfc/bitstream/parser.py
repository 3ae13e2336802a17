"""Incremental, damage-tolerant reader of .avfc streams.

:class:`StreamParser` turns bytes, fed in chunks of any size, into events: every
intact unit (:class:`Unit`, CRC checked) and every stretch of bytes that did not
form one (:class:`Damage`). The events do not depend on how the input is chunked.

The unit types are those of the stream's version (:func:`unit_types_of`): in a 1.0
stream, types 0x06 and 0x07 are unknown (plain ints) exactly as for a 1.0 reader.

Resynchronisation after a bad unit at offset ``o`` (CRC mismatch or impossible
length): every later offset ``p`` whose byte is a known unit type and is followed
by a valid length varint is a *candidate* ending at ``e``. Candidates are checked
in order of ``(e, p)``, so a decoder fed as data arrives recovers as soon as the
first intact unit after the damage is complete, and the first candidate whose CRC
matches wins: ``Damage(o, p - o)`` then ``Unit`` at ``p``. The work is bounded:
a candidate's CRC is only computed while the CRC bytes spent in this resync stay
within ``RESYNC_WORK_FACTOR * (e - o) + RESYNC_WORK_BASE``, so any input costs at
most ``RESYNC_WORK_FACTOR + sqrt(RESYNC_WORK_BASE)`` CRC bytes per input byte; and
when ``MAX_PENDING_CANDIDATES`` candidates wait, the half that ends last is dropped.
See docs/bitstream.md (container section) for the normative description.

Join mode (``StreamParser(join=True)``, format 2.1): input that does not start with a preamble is read
from any byte: the parser skips to the first intact REFRESH unit (type 0x09, a valid length of at most
``MAX_REFRESH_PAYLOAD``, the magic ``AVFC`` and major 2 at its payload start, a matching CRC-16), reports
the skipped bytes as one ``Damage(0, n, "join")``, takes the stream's version from the REFRESH and reads
on normally (docs/bitstream.md A.14).
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Optional, Union

from avfc.bitstream.units import (
    CRC_SIZE,
    KNOWN_UNIT_TYPES,
    MAGIC,
    MAX_LENGTH_BYTES,
    MAX_UNIT_PAYLOAD,
    MIN_UNIT_SIZE,
    PREAMBLE_SIZE,
    SUPPORTED_MAJORS,
    UNIT_TYPES_1_0,
    UNIT_TYPES_1_1,
    UNIT_TYPES_1_2,
    UNIT_TYPES_2_1,
    Damage,
    DamageReason,
    Event,
    Unit,
    as_unit_type,
    crc_size_of,
    read_length,
    unit_crc,
    unit_types_of,
)
from avfc.errors import AvfcError, ConfigError, FormatError, TruncatedError, UnsupportedVersionError

#: the newest major version read (majors 1 and 2 are: SUPPORTED_MAJORS)
SUPPORTED_MAJOR = SUPPORTED_MAJORS[-1]
#: CRC bytes a resync may spend per byte between the damage start and a candidate's end.
RESYNC_WORK_FACTOR = 256
#: CRC bytes every resync may spend regardless of its span.
RESYNC_WORK_BASE = 64 * 1024
#: most candidates waiting for their end; when reached, the half that ends last is dropped.
MAX_PENDING_CANDIDATES = 65536
# drop consumed bytes from the buffer once this many can go
_COMPACT_BYTES = 64 * 1024
# per type set: a regex matching any byte of the set (the resync's fast skip)
_TYPE_RE = {
    types: re.compile(b"[" + b"".join(re.escape(bytes((t,))) for t in sorted(types)) + b"]")
    for types in (UNIT_TYPES_1_0, UNIT_TYPES_1_1, UNIT_TYPES_1_2, UNIT_TYPES_2_1, KNOWN_UNIT_TYPES)
}
#: a REFRESH unit's type byte (format 2.1), and the largest payload a joining reader takes as one
_REFRESH_TYPE = 0x09
_MAX_REFRESH_PAYLOAD = 1024  # = bitstream.payloads.MAX_REFRESH_PAYLOAD (payloads imports this layer)
#: the version a REFRESH must state: major 2, minor 1 or more
_REFRESH_MAJOR, _REFRESH_MIN_MINOR = 2, 1


@dataclass
class _Join:
    """State of the search for the first intact REFRESH unit of input without a preamble."""

    scan: int = 0  # next offset where the magic inside a REFRESH payload may start
    cand: Optional[tuple[int, int, int]] = None  # (start, length bytes, end) of the candidate in examination


@dataclass
class _Resync:
    """State of one resynchronisation scan (absolute offsets)."""

    origin: int  # offset of the bad unit: the damage starts here
    reason: Optional[DamageReason]  # None: an incomplete unit at close, decided by the outcome
    scan: int  # next candidate start to examine
    work: int = 0  # CRC bytes spent
    pending: list[tuple[int, int, int]] = field(default_factory=list)  # heap of (end, start, length bytes)


class StreamParser:
    """Incremental reader: ``feed(chunk)`` as bytes arrive, ``close()`` at the end.

    Errors in the 6-byte preamble raise FormatError (bad magic), TruncatedError
    (input ends inside it) or UnsupportedVersionError (unknown major version);
    after that nothing raises: damaged or truncated bytes become :class:`Damage`.

    ``max_unit_payload`` lowers the largest payload accepted (a live receiver that
    knows its units are small sets it so a corrupted length cannot stall it for
    up to 16 MiB).

    ``join=True`` reads input that may start at any byte of a 2.1 stream: input that starts with a
    valid preamble (the magic and a supported major) is read as usual; any other input never raises:
    the bytes before the first intact REFRESH unit are one ``Damage(0, n, "join")`` and the version
    is the REFRESH's (:attr:`version` is None until then).
    """

    def __init__(self, max_unit_payload: int = MAX_UNIT_PAYLOAD, *, join: bool = False) -> None:
        """Create a parser; ConfigError if ``max_unit_payload`` is outside 0..MAX_UNIT_PAYLOAD."""
        if isinstance(max_unit_payload, bool) or not isinstance(max_unit_payload, int):
            raise ConfigError(f"max_unit_payload must be an int, not {type(max_unit_payload).__name__}")
        if not 0 <= max_unit_payload <= MAX_UNIT_PAYLOAD:
            raise ConfigError(f"max_unit_payload {max_unit_payload} is outside 0..{MAX_UNIT_PAYLOAD}")
        self._max_payload = max_unit_payload
        self._max_extent = 1 + MAX_LENGTH_BYTES + max_unit_payload + CRC_SIZE
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        self._pos = 0  # absolute offset where the next unit starts
        self._version: Optional[tuple[int, int]] = None
        self._types = KNOWN_UNIT_TYPES  # the stream's unit types, set from its preamble
        self._major = 1  # the stream's major version: its CRC (set from the preamble)
        self._crc = CRC_SIZE  # CRC bytes per unit: 4 (major 1) or 2 (major 2)
        self._min_unit = MIN_UNIT_SIZE  # type, one length byte, CRC
        self._resync: Optional[_Resync] = None
        self._closed = False
        self._error: Optional[AvfcError] = None
        self._join = bool(join)
        self._joining: Optional[_Join] = None  # searching for a REFRESH (join mode, no preamble)

    @property
    def version(self) -> Optional[tuple[int, int]]:
        """``(major, minor)`` of the stream once the preamble has been read, else None."""
        return self._version

    @property
    def bytes_fed(self) -> int:
        """Total number of bytes fed so far."""
        return self._base + len(self._buf)

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> list[Event]:
        """Add bytes; return the events complete so far (the rest is buffered)."""
        self._check_usable()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FormatError(f"StreamParser.feed expects bytes-like data, not {type(data).__name__}")
        self._buf += data
        return self._run(final=False)

    def close(self) -> list[Event]:
        """Signal the end of input; return the remaining events (a truncated tail is Damage)."""
        self._check_usable()
        events = self._run(final=True)
        self._closed = True
        return events

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise AvfcError("StreamParser is closed")

    # -- driver ---------------------------------------------------------------

    def _run(self, final: bool) -> list[Event]:
        events: list[Event] = []
        if self._version is None and self._joining is None:
            try:
                if self._join and not self._preamble_ahead(final):
                    self._start_join()
                elif not self._read_preamble(final):
                    return events
            except AvfcError as exc:
                self._error = exc
                raise
        if self._joining is not None:
            found = self._step_join(events, final)
            self._compact()
            if not found:
                return events
        if self._version is None:  # join mode: the input ended without a REFRESH
            return events
        while True:
            if self._resync is not None:
                if not self._step_resync(events, final):
                    break
            elif not self._parse_unit(events, final):
                break
        self._compact()
        return events

    def _read_preamble(self, final: bool) -> bool:
        buf = self._buf
        head = bytes(buf[: len(MAGIC)])
        if head != MAGIC[: len(head)]:
            raise FormatError(f"not an .avfc file (magic {head!r}, expected {MAGIC!r})")
        if len(buf) < PREAMBLE_SIZE:
            if final:
                raise TruncatedError(f"input ends after {len(buf)} bytes, inside the {PREAMBLE_SIZE}-byte preamble")
            return False
        major, minor = buf[4], buf[5]
        if major not in SUPPORTED_MAJORS:
            raise UnsupportedVersionError(
                f"stream is .avfc version {major}.{minor}; this decoder reads versions "
                f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}"
            )
        self._version = (major, minor)
        self._types = unit_types_of(self._version)
        self._major = major
        self._crc = crc_size_of(major)
        self._min_unit = MIN_UNIT_SIZE - CRC_SIZE + self._crc
        self._pos = PREAMBLE_SIZE
        return True

    # -- join mode: the search for a REFRESH -------------------------------------

    def _preamble_ahead(self, final: bool) -> bool:
        """Join mode: whether the input starts (or may still start, until 6 bytes have arrived) with a
        valid preamble, which is then read as usual."""
        head = bytes(self._buf[:PREAMBLE_SIZE])
        if head[: len(MAGIC)] != MAGIC[: len(head)]:
            return False
        if len(head) > len(MAGIC) and head[len(MAGIC)] not in SUPPORTED_MAJORS:
            return False
        return len(head) == PREAMBLE_SIZE or not final

    def _start_join(self) -> None:
        self._joining = _Join()
        self._major, self._crc = _REFRESH_MAJOR, crc_size_of(_REFRESH_MAJOR)  # a REFRESH is a 2.x unit
        self._min_unit = MIN_UNIT_SIZE - CRC_SIZE + self._crc

    def _join_candidate(self, m: int) -> Optional[tuple[int, int, int]]:
        """The REFRESH candidate whose payload starts with the magic at ``m`` (whose 6 bytes have arrived):
        a type byte 0x09 and a valid length ending just before ``m``, major 2, minor >= 1; or None."""
        buf, base = self._buf, self._base
        if buf[m + 4 - base] != _REFRESH_MAJOR or buf[m + 5 - base] < _REFRESH_MIN_MINOR:
            return None
        limit = min(self._max_payload, _MAX_REFRESH_PAYLOAD)
        for n in (1, 2):  # a length of at most 1024 has 1 or 2 bytes
            q = m - 1 - n
            if q < base or buf[q - base] != _REFRESH_TYPE:
                continue
            got, length = read_length(buf, q + 1 - base, m - base, limit)
            if got == n and length >= PREAMBLE_SIZE + 2:  # magic, version, frame varint, >= 1 header byte
                return q, n, q + 1 + n + length + self._crc
        return None

    def _step_join(self, events: list[Event], final: bool) -> bool:
        """Search for the first intact REFRESH; True when found (the stream is read on from its end)."""
        j = self._joining
        assert j is not None
        buf, base = self._buf, self._base
        end_of_data = base + len(buf)
        while True:
            if j.cand is not None:
                start, n, end = j.cand
                if end > end_of_data and not final:
                    return False  # the first candidate must be decided before any later one
                j.cand = None
                # no work bound is needed: a candidate costs at most MAX_REFRESH_PAYLOAD + 5 CRC bytes and
                # there is at most one per occurrence of the 4-byte magic (which cannot overlap itself)
                if end <= end_of_data:
                    if self._crc_ok(start, end):
                        i = start - base + 1 + n
                        self._version = (buf[i + 4], buf[i + 5])
                        self._types = unit_types_of(self._version)
                        if start > 0:
                            events.append(Damage(0, start, DamageReason.JOIN))
                        events.append(self._unit(start, n, end))
                        self._pos = end
                        self._joining = None
                        return True
            k = buf.find(MAGIC, max(j.scan - base, 0))
            if k < 0 or k + base + PREAMBLE_SIZE > end_of_data:
                if k >= 0:
                    j.scan = k + base  # the magic's version bytes have not arrived
                else:
                    j.scan = max(j.scan, end_of_data - len(MAGIC) + 1)
                if not final:
                    return False
                if end_of_data:
                    events.append(Damage(0, end_of_data, DamageReason.JOIN))
                self._pos = end_of_data
                self._joining = None
                return False
            m = k + base
            j.scan = m + 1
            j.cand = self._join_candidate(m)

    # -- the normal path --------------------------------------------------------

    def _parse_unit(self, events: list[Event], final: bool) -> bool:
        """Parse the unit at ``_pos``; False when waiting for data or at the end."""
        base, buf, pos = self._base, self._buf, self._pos
        end_of_data = base + len(buf)
        if pos == end_of_data:
            return False
        i = pos - base
        n, length = read_length(buf, i + 1, len(buf), self._max_payload)
        if n < 0:
            self._resync = _Resync(pos, DamageReason.BAD_LENGTH, pos + 1)
            return True
        end = pos + 1 + n + length + self._crc
        if n == 0 or end > end_of_data:
            if final:  # a truncated tail, or a length that is wrong: the resync tells
                self._resync = _Resync(pos, None, pos + 1)
                return True
            return False
        if not self._crc_ok(pos, end):
            self._resync = _Resync(pos, DamageReason.CRC_MISMATCH, pos + 1)
            return True
        events.append(self._unit(pos, n, end))
        self._pos = end
        return True

    def _crc_ok(self, start: int, end: int) -> bool:
        """Whether the unit bytes ``[start, end)`` end with the CRC (of the stream's major) of the rest."""
        buf, i, k = self._buf, start - self._base, end - self._base - self._crc
        return unit_crc(self._major, buf[i:k]) == int.from_bytes(buf[k : k + self._crc], "big")

    def _unit(self, start: int, n: int, end: int) -> Unit:
        """The unit at ``[start, end)`` whose length varint has ``n`` bytes."""
        buf, i, k = self._buf, start - self._base, end - self._base - self._crc
        return Unit(as_unit_type(buf[i], self._types), bytes(buf[i + 1 + n : k]), start, self._crc)

    # -- resynchronisation ----------------------------------------------------------

    def _step_resync(self, events: list[Event], final: bool) -> bool:
        """Advance the scan; True when it finished (parsing goes on), False when waiting."""
        r = self._resync
        assert r is not None
        buf, base, pending, types = self._buf, self._base, r.pending, self._types
        end_of_data = base + len(buf)
        min_unit = self._min_unit
        last = end_of_data - min_unit  # last candidate start processable now
        s = r.scan
        while s <= last:
            # every candidate not yet found ends at or after s + min_unit
            if pending and pending[0][0] <= s + min_unit and self._check_pending(events, s + min_unit):
                return True
            i = s - base
            if buf[i] in types:
                length = buf[i + 1]
                if length < 0x80 and length <= self._max_payload:  # the common one-byte length
                    n = 1
                else:
                    n, length = read_length(buf, i + 1, len(buf), self._max_payload)
                if n > 0:
                    if len(pending) >= MAX_PENDING_CANDIDATES:
                        # keep the half that ends first (a sorted list is a heap)
                        pending.sort()
                        del pending[MAX_PENDING_CANDIDATES // 2 :]
                    heapq.heappush(pending, (s + 1 + n + length + self._crc, s, n))
            s += 1
            if s <= last and buf[i + 1] not in types:
                # skip to the next known type byte, or to the next candidate's due step
                match = _TYPE_RE[types].search(buf, i + 1, last - base + 1)
                nxt = last + 1 if match is None else match.start() + base
                if pending and pending[0][0] - min_unit < nxt:
                    nxt = max(s, pending[0][0] - min_unit)
                s = nxt
        r.scan = s
        if not final:
            return False
        if self._check_pending(events, end_of_data):
            return True
        reason = DamageReason.TRUNCATED if r.reason is None else r.reason
        events.append(Damage(r.origin, end_of_data - r.origin, reason))
        self._pos = end_of_data
        self._resync = None
        return False

    def _check_pending(self, events: list[Event], limit: int) -> bool:
        """Check the waiting candidates ending at or before ``limit``, in (end, start) order."""
        r = self._resync
        assert r is not None
        pending = r.pending
        while pending and pending[0][0] <= limit:
            end, start, n = heapq.heappop(pending)
            extent = end - start
            if r.work + extent > RESYNC_WORK_FACTOR * (end - r.origin) + RESYNC_WORK_BASE:
                continue  # over the work bound: treated as not intact
            r.work += extent
            if self._crc_ok(start, end):
                reason = DamageReason.BAD_LENGTH if r.reason is None else r.reason
                events.append(Damage(r.origin, start - r.origin, reason))
                events.append(self._unit(start, n, end))
                self._pos = end
                self._resync = None
                return True
        return False

    def _compact(self) -> None:
        """Drop buffered bytes no unit or candidate can still need."""
        keep = self._pos
        r, j = self._resync, self._joining
        if j is not None:  # the candidate in examination, or the type and length before the next magic
            keep = j.cand[0] if j.cand is not None else max(j.scan - 1 - 2, 0)
        elif r is not None:
            # waiting candidates start after the scan position minus one maximal unit
            keep = max(r.origin, r.scan - self._max_extent) if r.pending else r.scan
        drop = keep - self._base
        if drop >= _COMPACT_BYTES or (drop > 0 and drop * 2 >= len(self._buf)):
            del self._buf[:drop]
            self._base = keep
