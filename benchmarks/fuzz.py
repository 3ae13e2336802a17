"""Fuzz the public surface of avfc: only ``AvfcError`` may escape, no input may hang or take much memory.

Targets (issue 19, part 3), each fed mutated streams:

* ``parser``: ``avfc.bitstream.parse_stream``, a ``StreamParser`` fed the same bytes in random chunks (its
  events must equal the one-shot parse's), and ``decode_payload`` of every intact unit; then the same in
  join mode (format 2.1) on the input cut at a random byte, where nothing may raise;
* ``info``: ``avfc.codec.info.stream_info`` (what ``avfc info`` prints), and its JSON;
* ``decode``: ``avfc.decode`` on the bytes, with random concealment modes;
* ``stream``: the streaming ``avfc.codec.Decoder`` fed random chunk sizes (1 byte to 4 KiB), frames pulled
  between pushes, then ``close()``, ``audio()`` and ``motion_array()``; now and then it pushes on after an
  error, as a careless caller would (every later call must raise an AvfcError too); for a quarter of the
  inputs (length divisible by 4) it is a ``Decoder(join=True)`` fed the input from a fifth of its length on;
* ``cli``: ``python -m avfc info [--json]`` and ``python -m avfc decode -o out.mp4|.wav`` as subprocesses
  (exit status 0 or 2, never a traceback).

The seed streams are the golden files of ``tests/golden`` and ``tests/codec/data`` (every format version and
feature, the ``tiny-test`` model at 64x64 or 96x96, 20-60 frames) plus ``--fresh N`` streams encoded here
from synthetic frames at 64x64 with ``tiny-test``; ``--default-model`` adds streams of the default model
(``mrdac-cpu-v3``) to the decoding targets (the parser and info always see them). Mutations, one to four
per input: bit flips, random bytes, truncation, inserted or deleted byte runs, deleted, duplicated,
swapped or moved units, units from another stream, payload bytes changed under a valid CRC, huge or edge
values in a payload's fields (``frame_count`` 10,000,000, audio frames near 2^32, ...) re-encoded with a
valid CRC, lying length fields, unknown unit types, other versions in the preamble.

A *failure* is any exception that is not an ``AvfcError`` subclass, any single input over ``--slow``
seconds (10; for the CLI, 10 s beyond the interpreter's start-up; the input's own time: the smaller of its
wall time and the CPU time of this process and its CLI children, so that a machine busy with other work
does not make inputs "slow", nor do a decode's two threads), a hang (``--hang``, 120 s, cut by
SIGALRM), memory over ``--max-rss-mb`` (1024 MB: how far the run raised this process's peak RSS above its RSS
at the start, so that an in-process slice under pytest is not charged for what ran before it; a CLI child's
own peak), or for
the parser a chunked parse that differs from the one-shot parse. Each failing input is written to ``--out``
(``TARGET-sSEED-iINDEX.avfc`` and a ``.txt`` with the traceback) and the run exits 1. Input ``i`` of a target
depends only on ``(--seed, target, i)`` and the seed streams, so ``--replay TARGET:INDEX`` reproduces it.

Run: ``python benchmarks/fuzz.py --seconds 600 --seed 1`` (time shared among the targets), or counts:
``python benchmarks/fuzz.py --inputs parser=1000000,decode=10000 --seed 1``; ``--json FILE`` writes the
report. ``--smoke``: a few seconds, a few inputs of every target (one CLI pair). The CI slice is
tests/test_fuzz_slice.py. Rates on one core of the 2-core CPU machine (idle otherwise, seed 1, 20 s, input
making included): parser about 4,000 inputs/s, info 5,500/s, decode and stream about 50/s (tiny-test),
the CLI one ``info`` + ``decode`` pair per 3 s (mostly interpreter start-up). So 1,000,000 parser inputs
take about 4-5 minutes and 10,000 decodes about 3-4 minutes: ``--inputs parser=1000000,info=100000,
decode=10000,stream=5000,cli=100``. With ``--default-model`` a decode of the 60-frame seed takes seconds
(8.5 s once on the loaded machine): raise ``--slow`` for that seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional


from avfc import bitstream as bs
from avfc.bitstream._fields import pack_varint
from avfc.bitstream.units import crc_size_of, encode_preamble
from avfc.errors import AvfcError

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("parser", "info", "decode", "stream", "cli")
#: share of ``--seconds`` each target gets (of the targets run)
SHARES = {"parser": 0.25, "info": 0.1, "decode": 0.3, "stream": 0.2, "cli": 0.15}
#: the targets that load a model
DECODING = ("decode", "stream", "cli")
SLOW_S, HANG_S, MAX_RSS_MB = 10.0, 120.0, 1024
#: mutated inputs are cut to this size
MAX_INPUT = 1 << 16
SMOKE_INPUTS = {"parser": 150, "info": 40, "decode": 4, "stream": 3, "cli": 1}
FRESH_FRAMES = 16


@dataclass
class Seed:
    """A seed stream: its bytes, its version, its units (type, payload) after the preamble."""

    name: str
    data: bytes
    version: tuple[int, int]
    units: list[tuple[int, bytes]]
    model: str

    @classmethod
    def of(cls, name: str, data: bytes) -> "Seed":
        parsed = bs.parse_stream(data)
        units = [(int(bs.UnitType.SEQUENCE_HEADER), parsed.header.to_bytes(parsed.version[0]))]
        units += [(int(u.type), u.payload) for u in parsed.units]
        return cls(name, data, parsed.version, units, str(parsed.header.model_name))


def _fresh_streams(n: int, frames: int = FRESH_FRAMES) -> list[tuple[str, bytes]]:
    """``n`` streams encoded from synthetic frames with tiny-test at 64x64, in turn: 2.0 with Codec2 700C,
    key frames every 8 and every 2nd frame's keypoints; 1.x with Opus, HEVC keys, bi-directional."""
    import avfc
    from avfc.media.synthetic import speech_like, talking_face

    configs = [
        dict(audio="codec2", key_interval=8, motion_stride=2, packet_frames=5),
        dict(audio="opus", key_codec="hevc", format_major=1, reference_mode="bidirectional", key_interval=8,
             max_refs=2, packet_frames=4),
        dict(audio="none", packet_frames=3, side_info=True),
    ]
    out = []
    for i in range(n):
        cfg = configs[i % len(configs)]
        video = talking_face(frames, 64, 64, seed=100 + i)
        res = avfc.encode(video, pcm=speech_like(frames / 25, seed=100 + i), model="tiny-test", size=64,
                          key_qp=40, **cfg)
        out.append((f"fresh-{i}", res.data))
    return out


def load_corpus(fresh: int = 0, default_model: bool = False) -> list[Seed]:
    """The seed streams (see the module docstring)."""
    files = sorted((ROOT / "tests" / "golden").glob("*.avfc")) + sorted((ROOT / "tests" / "codec" / "data").glob("*.avfc"))
    seeds = [Seed.of(f.stem, f.read_bytes()) for f in files]
    seeds += [Seed.of(name, data) for name, data in _fresh_streams(fresh)]
    if default_model and not any(s.model != "tiny-test" for s in seeds):
        import avfc
        from avfc.media.synthetic import talking_face

        res = avfc.encode(talking_face(12, 64, 64, seed=7), size=64, audio="none", key_qp=40, packet_frames=4)
        seeds.append(Seed.of("default-model", res.data))
    if not seeds:
        raise SystemExit("no seed streams: tests/golden is missing and --fresh is 0")
    return seeds


# ---------------------------------------------------------------------------------------------- mutations
_EDGES = (0, 1, 2, 3, 255, 256, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 9_999_999, 10_000_000,
          10_000_001, 2**31 - 1, 2**32 - 4096, 2**32 - 1, 2**32)
#: header fields left alone: bigger pictures are legitimately bigger outputs, not a decoder fault
_HEADER_KEEP = {"width", "height", "source_width", "source_height"}


def _frame(units: list[tuple[int, bytes]], major: int) -> bytes:
    return b"".join(bs.encode_unit(t, p, major) for t, p in units)


def _edit_field(rng: random.Random, utype: int, payload: bytes, major: int) -> bytes:
    """A payload with one integer field set to an edge value, re-serialised (a valid CRC follows)."""
    if utype not in set(bs.UnitType):
        return payload
    model = bs.decode_payload(bs.Unit(bs.UnitType(utype), payload, 0, crc_size_of(major)), major)
    if model is None:
        return payload
    names = [n for n, v in model.__dict__.items() if isinstance(v, int) and not isinstance(v, bool)
             and not (utype == bs.UnitType.SEQUENCE_HEADER and n in _HEADER_KEEP)]
    if not names:
        return payload
    name = rng.choice(names)
    old = int(getattr(model, name))
    value = rng.choice([*_EDGES, old + 1, max(old - 1, 0), old * 2, old + rng.randrange(1, 1 << rng.randrange(1, 33))])
    if utype == bs.UnitType.SEQUENCE_HEADER and name in ("fps_num", "fps_den"):
        value = min(value, 65535)
    return model.model_copy(update={name: value}).to_bytes(major)


def mutate(rng: random.Random, seed: Seed, donors: list[Seed]) -> tuple[bytes, list[str]]:
    """One input from ``seed``: 1-4 mutations; returns the bytes and the names of the mutations."""
    major = seed.version[0]
    preamble = seed.data[:6]
    units = list(seed.units)
    raw: Optional[bytearray] = None  # once a byte-level mutation ran, later ones work on the bytes
    ops: list[str] = []
    for _ in range(1 + min(int(rng.expovariate(1.0)), 3)):
        op = rng.choice(_UNIT_OPS + _BYTE_OPS) if raw is None else rng.choice(_BYTE_OPS)
        ops.append(op)
        try:
            if op in _UNIT_OPS:
                _unit_op(rng, op, units, major, donors)
                continue
            if raw is None:
                raw = bytearray(preamble + _frame(units, major))
            _byte_op(rng, op, raw)
        except Exception:  # noqa: BLE001 - a mutation that cannot apply (e.g. a value a field cannot hold)
            ops[-1] += "(skipped)"
    data = bytes(raw) if raw is not None else preamble + _frame(units, major)
    return data[:MAX_INPUT], ops


_UNIT_OPS = ["drop_unit", "dup_unit", "swap_units", "move_unit", "donor_unit", "payload_bits", "payload_cut",
             "payload_grow", "field_edge", "field_edge", "field_edge", "unknown_type"]
_BYTE_OPS = ["flip_bits", "set_bytes", "truncate", "insert_bytes", "delete_bytes", "length_lie"]


def _unit_op(rng: random.Random, op: str, units: list[tuple[int, bytes]], major: int, donors: list[Seed]) -> None:
    n = len(units)
    i = rng.randrange(n)
    body = rng.randrange(1, n) if n > 1 else 0  # a unit after the header, mostly
    if op == "drop_unit":
        del units[body if rng.random() < 0.9 else i]
    elif op == "dup_unit":
        units.insert(rng.randrange(n + 1), units[i])
    elif op == "swap_units":
        j = rng.randrange(n)
        units[i], units[j] = units[j], units[i]
    elif op == "move_unit":
        units.insert(rng.randrange(n), units.pop(i))
    elif op == "donor_unit":
        donor = rng.choice(donors)
        if donor.version[0] == major:
            units.insert(rng.randrange(n + 1), rng.choice(donor.units))
    elif op in ("payload_bits", "payload_cut", "payload_grow"):
        t, p = units[i]
        q = bytearray(p)
        if op == "payload_bits" and q:
            for _ in range(rng.randrange(1, 5)):
                q[rng.randrange(len(q))] ^= 1 << rng.randrange(8)
        elif op == "payload_cut":
            del q[rng.randrange(len(q) + 1):]
        else:
            q += rng.randbytes(rng.randrange(1, 64))
        units[i] = (t, bytes(q))
    elif op == "field_edge":
        j = body if rng.random() < 0.8 else i
        t, p = units[j]
        units[j] = (t, _edit_field(rng, t, p, major))
    elif op == "unknown_type":
        units.insert(rng.randrange(n + 1), (rng.choice([0, 9, 10, 14, 16, 0x7F, 0xFF]), rng.randbytes(rng.randrange(16))))


def _byte_op(rng: random.Random, op: str, raw: bytearray) -> None:
    n = len(raw)
    if op == "flip_bits":
        for _ in range(rng.randrange(1, 9)):
            raw[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == "set_bytes":
        for _ in range(rng.randrange(1, 5)):
            raw[rng.randrange(n)] = rng.randrange(256)
    elif op == "truncate":
        del raw[rng.randrange(n + 1):]
    elif op == "insert_bytes":
        pos = rng.randrange(n + 1)
        raw[pos:pos] = rng.randbytes(rng.choice([1, 2, 4, 16, 200, 3000]))
    elif op == "delete_bytes":
        pos = rng.randrange(n)
        del raw[pos:pos + rng.choice([1, 2, 3, 8, 50, 500])]
    elif op == "length_lie":  # a unit claiming a huge payload, then whatever follows
        pos = rng.randrange(6, n + 1) if n > 6 else n
        claim = rng.choice([1 << 14, 1 << 20, bs.MAX_UNIT_PAYLOAD, bs.MAX_UNIT_PAYLOAD + 1, 2**28 - 1])
        raw[pos:pos] = bytes((rng.choice([2, 3, 4, 8, 15]),)) + pack_varint(claim)  # any LEB128, even invalid


def _other_version(rng: random.Random, data: bytes) -> bytes:
    version = rng.choice([(1, 0), (1, 1), (1, 2), (1, 3), (1, 9), (2, 0), (2, 1), (0, 0), (3, 0), (255, 255)])
    return data[:4] + bytes(version) + data[6:]


def make_input(seed: int, target: str, index: int, corpus: list[Seed], allowed: list[Seed]) -> tuple[bytes, str]:
    """Input ``index`` of ``target``: depends only on these arguments. Returns the bytes and what was done."""
    rng = random.Random(f"{seed}/{target}/{index}")
    if target == "parser" and rng.random() < 0.05:  # garbage, behind a valid preamble or none
        body = rng.randbytes(rng.choice([0, 1, 7, 100, 4000]))
        return (encode_preamble(rng.choice([(1, 0), (1, 3), (2, 0)])) if rng.random() < 0.8 else b"") + body, "garbage"
    pool = corpus if target in ("parser", "info") else allowed
    base = rng.choice(pool)
    if rng.random() < 0.03:
        return base.data, f"{base.name} intact"
    data, ops = mutate(rng, base, pool)
    if rng.random() < 0.04:
        data, ops = _other_version(rng, data), ops + ["other_version"]
    return data, f"{base.name}: {', '.join(ops)}"


# ----------------------------------------------------------------------------------------------- targets
class ChunkMismatch(Exception):
    """The parser's events depend on how its input was chunked."""


def _chunks(rng: random.Random, data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 2, 3, 7, 64, 1000, 4096, rng.randrange(1, 100)])
        out.append(data[pos:pos + size])
        pos += size
    return out


def run_parser(data: bytes, rng: random.Random, _ctx: "Context") -> None:
    try:
        parsed = bs.parse_stream(data)
    except AvfcError:
        parsed = None
    whole = bs.StreamParser()
    try:
        events = whole.feed(data) + whole.close()
    except AvfcError as e:
        events = [type(e).__name__]
    parser = bs.StreamParser()
    chunked: list = []
    try:
        for chunk in _chunks(rng, data):
            chunked += parser.feed(chunk)
        chunked += parser.close()
    except AvfcError as e:
        chunked = [type(e).__name__]
    if chunked != events:
        raise ChunkMismatch(f"{len(events)} events in one piece, {len(chunked)} in chunks")
    if parsed is not None:
        for u in parsed.units:
            try:
                bs.decode_payload(u, parsed.version[0])
            except AvfcError:
                pass
    # join mode (format 2.1): the input cut at a random byte; it never raises, and its events must not
    # depend on the chunking either
    tail = data[rng.randrange(len(data) + 1):]
    whole = bs.StreamParser(join=True)
    events = whole.feed(tail) + whole.close()
    parser = bs.StreamParser(join=True)
    chunked = []
    for chunk in _chunks(rng, tail):
        chunked += parser.feed(chunk)
    chunked += parser.close()
    if chunked != events:
        raise ChunkMismatch(f"join: {len(events)} events in one piece, {len(chunked)} in chunks")
    try:
        bs.parse_stream(tail, join=True)
    except AvfcError:
        pass


def run_info(data: bytes, _rng: random.Random, _ctx: "Context") -> None:
    from avfc.codec.info import stream_info

    json.dumps(stream_info(data))


def run_decode(data: bytes, rng: random.Random, _ctx: "Context") -> None:
    import avfc

    audio = rng.choice(["repeat", "repeat", "none", "joint"])
    motion = "joint" if rng.random() < 0.15 else "hold"
    res = avfc.decode(data, conceal_audio=audio, conceal_motion=motion)
    h = res.header
    assert res.frames.shape[1:] == (h.height, h.width, 3), res.frames.shape


def run_stream(data: bytes, rng: random.Random, _ctx: "Context") -> None:
    from avfc.codec import Decoder

    join = len(data) % 4 == 0  # a quarter of the inputs: a receiver that joined late (format 2.1)
    if join:
        data = data[len(data) // 5:]
    dec = Decoder(join=join, keep_motion=True)
    keep_going = rng.random() < 0.3  # a caller that pushes on after an error: it must get AvfcErrors again
    first: Optional[AvfcError] = None
    for chunk in _chunks(rng, data):
        try:
            dec.push(chunk)
        except AvfcError as e:
            first = first or e
            if not keep_going:
                raise
            continue
        if rng.random() < 0.5:
            dec.pull_frames()
    try:
        dec.close()
    except AvfcError as e:
        first = first or e
    if first is not None:
        raise first
    dec.pull_frames()
    dec.audio()
    dec.motion_array()


class CliFailure(Exception):
    """The command exited with a status other than 0 and 2, or printed a traceback."""


def run_cli(data: bytes, rng: random.Random, ctx: "Context") -> None:
    path = ctx.tmp / "in.avfc"
    path.write_bytes(data)
    out = ctx.tmp / rng.choice(["out.mp4", "out.wav"])
    commands = [["info", str(path)] + (["--json"] if rng.random() < 0.5 else []),
                ["decode", str(path), "-o", str(out), "-y", "-q"]]
    for args in commands:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", _CLI_LAUNCHER, *args], capture_output=True, text=True,
                                  timeout=HANG_S, env=ctx.cli_env, check=False)
        except subprocess.TimeoutExpired:
            raise CliFailure(f"avfc {' '.join(args[:1])} ran over {HANG_S:.0f} s") from None
        ctx.cli_seconds.append(time.perf_counter() - t0)
        for line in proc.stderr.splitlines():
            if line.startswith("FUZZ_VMHWM_KB "):
                ctx.cli_peak_mb = max(ctx.cli_peak_mb, int(line.split()[1]) / 1024)
        if proc.returncode not in (0, 2) or "Traceback" in proc.stderr:
            raise CliFailure(f"avfc {args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


RUNNERS: dict[str, Callable[[bytes, random.Random, "Context"], None]] = {
    "parser": run_parser, "info": run_info, "decode": run_decode, "stream": run_stream, "cli": run_cli}


# -------------------------------------------------------------------------------------------------- driver
class Hang(BaseException):
    """Raised by the SIGALRM watchdog (a BaseException, so that no ``except Exception`` in avfc swallows it)."""


@dataclass
class Context:
    tmp: Path
    cli_env: dict[str, str]
    cli_startup: Optional[float] = None  # seconds `python -m avfc --version` takes: the CLI's slow allowance
    cli_seconds: list[float] = field(default_factory=list)
    cli_peak_mb: float = 0.0  # the largest VmHWM a CLI child reported


@dataclass
class Failure:
    target: str
    index: int
    kind: str  # "exception", "slow", "hang", "memory", "chunking", "cli"
    detail: str
    seconds: float
    what: str
    path: Optional[str] = None


@dataclass
class TargetStats:
    inputs: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)  # "ok" or the AvfcError class name
    slowest: float = 0.0


@dataclass
class Report:
    seed: int
    corpus: list[str]
    stats: dict[str, TargetStats]
    failures: list[Failure]
    seconds: float
    peak_rss_mb: float
    peak_child_rss_mb: float

    def as_dict(self) -> dict:
        return {"seed": self.seed, "corpus": self.corpus, "seconds": round(self.seconds, 2),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "peak_child_rss_mb": round(self.peak_child_rss_mb, 1),
                "targets": {t: {"inputs": s.inputs, "seconds": round(s.seconds, 2),
                                "inputs_per_s": round(s.inputs / s.seconds, 2) if s.seconds else None,
                                "slowest_s": round(s.slowest, 3), "outcomes": s.outcomes} for t, s in self.stats.items()},
                "failures": [f.__dict__ for f in self.failures]}

    def text(self) -> str:
        lines = [f"fuzz: seed {self.seed}, {self.seconds:.1f} s, {len(self.corpus)} seed streams, peak RSS "
                 f"{self.peak_rss_mb:.0f} MB (CLI children {self.peak_child_rss_mb:.0f} MB)",
                 f"{'target':8} {'inputs':>8} {'seconds':>8} {'inputs/s':>9} {'slowest':>8} {'failures':>8}  outcomes"]
        for t, s in self.stats.items():
            rate = s.inputs / s.seconds if s.seconds else 0.0
            fails = sum(f.target == t for f in self.failures)
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items(), key=lambda kv: -kv[1]))
            lines.append(f"{t:8} {s.inputs:8d} {s.seconds:8.1f} {rate:9.1f} {s.slowest:7.2f}s {fails:8d}  {outcomes}")
        lines.append(f"failures: {len(self.failures)}")
        for f in self.failures:
            lines.append(f"  {f.kind} in {f.target} input {f.index} ({f.what}; {f.seconds:.2f} s): "
                         f"{f.detail.strip().splitlines()[-1] if f.detail.strip() else ''}")
            lines.append(f"    reproduce: python benchmarks/fuzz.py --seed {self.seed} --replay {f.target}:{f.index}"
                         + (f"   (input saved: {f.path})" if f.path else ""))
        return "\n".join(lines)


#: runs ``python -m avfc ARGS`` and reports the child's own peak RSS (VmHWM) on stderr at exit: getrusage's
#: maxrss of a child starts from its parent's at fork, so it would count the fuzzer's (or pytest's) memory
_CLI_LAUNCHER = (
    "import atexit, runpy, sys\n"
    "def _hwm():\n"
    "    try:\n"
    "        kb = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "        sys.stderr.write('\\nFUZZ_VMHWM_KB %s\\n' % kb)\n"
    "    except (OSError, IndexError):\n"
    "        pass\n"
    "atexit.register(_hwm)\n"
    "sys.argv = ['avfc'] + sys.argv[1:]\n"
    "runpy.run_module('avfc', run_name='__main__', alter_sys=True)\n")


def _reset_peak() -> None:
    """Start this process's peak RSS (VmHWM) from its current RSS, where Linux allows it, so that an
    in-process run (the CI slice under pytest) measures its own inputs, not what ran before it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of its children that ended (the CLI target's)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _status_mb(field: str) -> Optional[float]:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MB, or None where /proc lacks it."""
    try:
        with open("/proc/self/status") as f:
            return int(f.read().split(field + ":")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return None


def _current_rss_mb() -> float:
    """RSS in MB of this process now (VmRSS; 0 where /proc lacks it, so that only the peak is judged)."""
    rss = _status_mb("VmRSS")
    return 0.0 if rss is None else rss


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak RSS in MB of this process (VmHWM where /proc has it; getrusage's maxrss otherwise)."""
    if who == resource.RUSAGE_SELF and (peak := _status_mb("VmHWM")) is not None:
        return peak
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


class Fuzzer:
    """Runs targets on generated inputs and collects outcomes and failures."""

    def __init__(self, seed: int = 0, *, corpus: Optional[list[Seed]] = None, default_model: bool = False,
                 out: Optional[Path] = None, slow_s: float = SLOW_S, hang_s: float = HANG_S,
                 max_rss_mb: float = MAX_RSS_MB, log: Optional[Callable[[str], None]] = None) -> None:
        self.seed = seed
        self.corpus = corpus if corpus is not None else load_corpus(default_model=default_model)
        self.allowed = [s for s in self.corpus if default_model or s.model == "tiny-test"]
        self.out, self.slow_s, self.hang_s, self.max_rss_mb = out, slow_s, hang_s, max_rss_mb
        self.log = log
        self.stats: dict[str, TargetStats] = {}
        self.failures: list[Failure] = []
        self._rss_flagged = {resource.RUSAGE_SELF: False, resource.RUSAGE_CHILDREN: False}
        _reset_peak()
        # what the run is charged: its peak over the RSS it started from. Where the peak cannot be reset
        # (some sandboxes refuse clear_refs) a peak that never rises above the one found at the start was
        # not set by this run, and counts nothing.
        self._rss_base, self._peak_start = _current_rss_mb(), _rss_mb()
        self._tmp = tempfile.TemporaryDirectory(prefix="avfc-fuzz-")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self.ctx = Context(Path(self._tmp.name), env)

    def one(self, target: str, index: int) -> Optional[Failure]:
        """Run input ``index`` of ``target``; returns its failure, if any."""
        t_make = time.perf_counter()
        data, what = make_input(self.seed, target, index, self.corpus, self.allowed)
        rng = random.Random(f"{self.seed}/{target}/{index}/run")
        stats = self.stats.setdefault(target, TargetStats())
        failure: Optional[tuple[str, str]] = None
        outcome = "ok"
        watchdog = threading.current_thread() is threading.main_thread() and target != "cli"
        if watchdog:
            previous = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, self.hang_s)
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        try:
            RUNNERS[target](data, rng, self.ctx)
        except AvfcError as e:
            outcome = type(e).__name__
        except Hang:
            failure = ("hang", f"over {self.hang_s:.0f} s (cut by the watchdog)")
        except ChunkMismatch:
            failure = ("chunking", traceback.format_exc())
        except CliFailure as e:
            failure = ("cli", str(e))
        except Exception:  # noqa: BLE001 - anything else is what we are looking for (MemoryError included)
            failure = ("exception", traceback.format_exc())
        finally:
            if watchdog:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        # the target's own time, what --slow judges: a loaded machine stretches the wall time, threads the CPU time
        seconds = min(time.perf_counter() - t0, _cpu_seconds() - cpu0)
        stats.inputs += 1
        stats.seconds += time.perf_counter() - t_make  # making the input included: the rates are wall rates
        stats.slowest = max(stats.slowest, seconds)
        stats.outcomes[outcome if failure is None else "FAILED"] = stats.outcomes.get(
            outcome if failure is None else "FAILED", 0) + 1
        limit = self.slow_s
        if target == "cli":
            limit += 2 * self._cli_startup()
        if failure is None and seconds > limit:
            failure = ("slow", f"{seconds:.1f} s, over the {limit:.1f} s allowed")
        for who, name in ((resource.RUSAGE_SELF, "this process"), (resource.RUSAGE_CHILDREN, "a CLI child")):
            rss = self.grown_mb() if who == resource.RUSAGE_SELF else self.ctx.cli_peak_mb
            if failure is None and rss > self.max_rss_mb and not self._rss_flagged[who]:
                self._rss_flagged[who] = True
                failure = ("memory", f"peak RSS of {name} {rss:.0f} MB"
                           f"{' above its start' if who == resource.RUSAGE_SELF else ''}, over {self.max_rss_mb:.0f} MB")
        if failure is None:
            return None
        f = Failure(target, index, failure[0], failure[1], seconds, what)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            stem = self.out / f"{target}-s{self.seed}-i{index}"
            stem.with_suffix(".avfc").write_bytes(data)
            stem.with_suffix(".txt").write_text(
                f"{f.kind} in {target} input {index} (seed {self.seed}; {what}), {seconds:.2f} s\n"
                f"reproduce: python benchmarks/fuzz.py --seed {self.seed} --replay {target}:{index}\n\n{f.detail}\n")
            f.path = str(stem.with_suffix(".avfc"))
        self.failures.append(f)
        if self.log:
            self.log(f"FAILURE {f.kind} in {target} input {index} ({what}): {f.detail.strip()[-500:]}")
        return f

    def grown_mb(self) -> float:
        """How far this run raised the process's peak RSS above the RSS it started from (MB)."""
        peak = _rss_mb()
        return max(0.0, peak - self._rss_base) if peak > self._peak_start + 1.0 else 0.0

    def _cli_startup(self) -> float:
        if self.ctx.cli_startup is None:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "avfc", "--version"], capture_output=True, env=self.ctx.cli_env,
                           timeout=HANG_S, check=False)
            self.ctx.cli_startup = time.perf_counter() - t0
        return self.ctx.cli_startup

    def run(self, inputs: Optional[dict[str, int]] = None, seconds: Optional[float] = None,
            targets: tuple[str, ...] = TARGETS) -> Report:
        """Run until every target in ``inputs`` has its count, or ``seconds`` are spent (shared as SHARES
        says: the target furthest behind its share goes next), whichever comes first."""
        if inputs is None and seconds is None:
            raise ValueError("give inputs or seconds")
        targets = tuple(t for t in targets if inputs is None or inputs.get(t, 0) > 0)
        for t in targets:
            self.stats.setdefault(t, TargetStats())
        next_index = {t: self.stats[t].inputs for t in targets}
        t0 = time.perf_counter()
        last_log = t0
        while True:
            open_ = [t for t in targets if inputs is None or next_index[t] < inputs.get(t, 0)]
            elapsed = time.perf_counter() - t0
            if not open_ or (seconds is not None and elapsed >= seconds):
                break
            target = min(open_, key=lambda t: (self.stats[t].seconds / SHARES[t], next_index[t]))
            self.one(target, next_index[target])
            next_index[target] += 1
            if self.log and time.perf_counter() - last_log > 30:
                last_log = time.perf_counter()
                self.log(" ".join(f"{t} {self.stats[t].inputs}" for t in targets)
                         + f" ({last_log - t0:.0f} s, {len(self.failures)} failures)")
        return Report(self.seed, [s.name for s in self.corpus], {t: self.stats[t] for t in targets},
                      list(self.failures), time.perf_counter() - t0, _rss_mb(), self.ctx.cli_peak_mb)

    def close(self) -> None:
        self._tmp.cleanup()


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang()


def _parse_inputs(spec: str) -> dict[str, int]:
    """``"2000"`` (every target) or ``"parser=2000,decode=30"``."""
    if "=" not in spec:
        return {t: int(spec) for t in TARGETS}
    out = {}
    for part in spec.split(","):
        name, _, count = part.partition("=")
        if name not in TARGETS:
            raise SystemExit(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
        out[name] = int(count)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, help="run for this long, shared among the targets")
    ap.add_argument("--inputs", help="inputs per target: N for every target, or parser=N,decode=M,...")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", type=int, default=2, help="seed streams encoded here besides the golden files")
    ap.add_argument("--default-model", action="store_true", help="decode streams of the default model too")
    ap.add_argument("--out", default="fuzz-failures", help="folder for failing inputs (default ./fuzz-failures)")
    ap.add_argument("--slow", type=float, default=SLOW_S, help="seconds one input may take")
    ap.add_argument("--hang", type=float, default=HANG_S, help="seconds after which an input is cut")
    ap.add_argument("--max-rss-mb", type=float, default=MAX_RSS_MB)
    ap.add_argument("--replay", metavar="TARGET:INDEX", help="run one input and print its traceback")
    ap.add_argument("--json", metavar="FILE", help="write the report as JSON")
    ap.add_argument("--smoke", action="store_true", help="a few inputs of every target, in seconds")
    args = ap.parse_args(argv)
    torch_threads = os.environ.get("AVFC_FUZZ_THREADS")
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    targets = tuple(t for t in args.targets.split(",") if t)
    if bad := set(targets) - set(TARGETS):
        raise SystemExit(f"unknown targets {sorted(bad)}; targets: {', '.join(TARGETS)}")
    fresh = 1 if args.smoke else args.fresh
    if args.smoke:
        global FRESH_FRAMES
        FRESH_FRAMES = 6
    t0 = time.perf_counter()
    corpus = load_corpus(fresh, args.default_model)
    print(f"{len(corpus)} seed streams in {time.perf_counter() - t0:.1f} s: {', '.join(s.name for s in corpus)}",
          flush=True)
    fuzzer = Fuzzer(args.seed, corpus=corpus, default_model=args.default_model, out=Path(args.out),
                    slow_s=args.slow, hang_s=args.hang, max_rss_mb=args.max_rss_mb,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    try:
        if args.replay:
            target, _, index = args.replay.partition(":")
            data, what = make_input(args.seed, target, int(index), fuzzer.corpus, fuzzer.allowed)
            print(f"{target} input {index}: {len(data)} bytes ({what})")
            f = fuzzer.one(target, int(index))
            print("no failure" if f is None else f"{f.kind}:\n{f.detail}")
            return 0 if f is None else 1
        if args.smoke:
            report = fuzzer.run({t: SMOKE_INPUTS[t] for t in targets})
        elif args.inputs or args.seconds:
            report = fuzzer.run(_parse_inputs(args.inputs) if args.inputs else None, args.seconds, targets)
        else:
            raise SystemExit("give --seconds, --inputs, --smoke or --replay")
    finally:
        fuzzer.close()
    print(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
