"""Plain-Python motion decoder and encoder written from docs/bitstream.md (part B) alone.

Independent of avfc.entropy's implementation (only the normative integer constants are
shared): tests compare it with the constriction-based coder, bit for bit.
"""

from __future__ import annotations

from avfc.entropy.tables import DECAY_Q16, INITIAL_STATE_Q12, SCALE_THRESHOLDS_Q12

R = 255
N = 2 * R + 2
ESC = 0
OFF = R + 1
TOTAL = 1 << 24
MASK32 = (1 << 32) - 1


def laplace_freqs(a: int) -> list[int]:
    """Residual table with decay a/2**16 (spec section 'Residual tables')."""
    w = [1 << 32]
    for _ in range(R + 1):
        w.append(w[-1] * a >> 16)
    tail = (w[R + 1] << 16) // ((1 << 16) - a)
    weights = [2 * tail] + [w[abs(k)] for k in range(-R, R + 1)]
    big_w = sum(weights)
    f = [1 + x * (TOTAL - N) // big_w for x in weights]
    f[OFF] += TOTAL - sum(f)
    return f


TABLES = {("laplace", j): laplace_freqs(a) for j, a in enumerate(DECAY_Q16)}
TABLES.update({("uniform", n): [TOTAL // n] * n for n in (32, 256, 512)})


def cumulative(f: list[int]) -> list[int]:
    out, acc = [], 0
    for x in f:
        out.append(acc)
        acc += x
    return out


CUM = {k: cumulative(f) for k, f in TABLES.items()}


def scale_of(state: int) -> int:
    return sum(1 for t in SCALE_THRESHOLDS_Q12 if t <= state)


def update(state: int, r: int) -> int:
    return state + (((min(abs(r), R + 1) << 12) - state) >> 3)


class Decoder:
    def __init__(self, data: bytes) -> None:
        assert len(data) % 4 == 0
        self.words = [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]
        self.pos = len(self.words)
        if self.pos == 0:
            self.x = 0
            return
        if self.words[-1] == 0:
            raise ValueError("last word zero")
        self.x = self.words[self.pos - 1]
        self.pos -= 1
        if self.pos:
            self.x = (self.x << 32) | self.words[self.pos - 1]
            self.pos -= 1

    def decode(self, key: tuple[str, int]) -> int:
        if self.x == 0:
            raise ValueError("data exhausted")
        f, c = TABLES[key], CUM[key]
        m = self.x & (TOTAL - 1)
        s = max(i for i in range(len(f)) if c[i] <= m)
        self.x = (self.x >> 24) * f[s] + m - c[s]
        if self.x < (1 << 32) and self.pos:
            self.x = (self.x << 32) | self.words[self.pos - 1]
            self.pos -= 1
        return s

    def done(self) -> bool:
        return self.x == 0 and self.pos == 0


def encode(symbols: list[tuple[int, tuple[str, int]]]) -> bytes:
    x, bulk = 0, []
    for s, key in reversed(symbols):
        f, c = TABLES[key][s], CUM[key][s]
        if (x >> 40) >= f:
            bulk.append(x & MASK32)
            x >>= 32
        x = ((x // f) << 24) | (x % f + c)
    while x:
        bulk.append(x & MASK32)
        x >>= 32
    return b"".join(w.to_bytes(4, "big") for w in bulk)


def residual(dec: Decoder, key: tuple[str, int]) -> int:
    s = dec.decode(key)
    if s != ESC:
        return s - OFF
    low = dec.decode(("uniform", 512))
    y = (dec.decode(("uniform", 256)) << 9) | low
    r = (y - 1) // 2 if y % 2 else -(y // 2)
    if abs(r) <= R:
        raise ValueError("non-canonical escape")
    return r


def decode_packet(data: bytes, t_count: int, c_count: int, prev: list[int] | None) -> list[list[int]]:
    if t_count * c_count == 0:
        assert data == b""
        return [[] for _ in range(t_count)] if c_count == 0 else []
    dec = Decoder(data)
    frames: list[list[int]] = []
    if prev is None:
        key = ("laplace", dec.decode(("uniform", 32)))
        pred = [residual(dec, key) for _ in range(c_count)]
        frames.append(pred)
    else:
        pred = list(prev)
    if len(frames) < t_count:
        states = [INITIAL_STATE_Q12[dec.decode(("uniform", 32))]] * c_count
        while len(frames) < t_count:
            row = []
            for c in range(c_count):
                r = residual(dec, ("laplace", scale_of(states[c])))
                row.append(pred[c] + r)
                states[c] = update(states[c], r)
            frames.append(row)
            pred = row
    if not dec.done():
        raise ValueError("data left over")
    for row in frames:
        if any(abs(v) > 32767 for v in row):
            raise ValueError("value out of range")
    return frames
