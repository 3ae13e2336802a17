"""Independent pure-Python decoders of AUDIO_CTX, MOTION_PRED and lips (docs/bitstream.md part F),
written from the spec text, not from avfc's code paths: tests compare them with the library."""
from avfc.entropy.tables import laplace_table, INITIAL_STATE_Q12, SCALE_THRESHOLDS_Q12

M24 = (1 << 24) - 1

class Rans:
    def __init__(self, data):
        assert len(data) % 4 == 0
        w = [int.from_bytes(data[i:i+4], 'big') for i in range(0, len(data), 4)]
        n = len(w)
        if n == 0:
            self.x = 0; self.rest = []
        else:
            assert w[-1] != 0
            self.x = w[-1]
            if n >= 2:
                self.x = (self.x << 32) | w[-2]
            self.rest = w[:-2]
    def dec(self, f):
        if self.x == 0:
            raise ValueError("exhausted")
        c = 0
        m = self.x & M24
        for s, fs in enumerate(f):
            if c <= m < c + fs:
                break
            c += fs
        self.x = (self.x >> 24) * fs + (m - c)
        if self.x < (1 << 32) and self.rest:
            self.x = (self.x << 32) | self.rest.pop()
        return s
    def finish(self):
        if self.x != 0 or self.rest:
            raise ValueError("left over")

LAP = [list(map(int, laplace_table(j))) for j in range(32)]
U = {n: [(1 << 24) // n] * n for n in (32, 256, 512)}

def scale(s):
    return sum(1 for t in SCALE_THRESHOLDS_Q12 if t <= s)
def upd(s, r):
    return s + (((min(abs(r), 256) << 12) - s) >> 3)
def residual(d, j):
    s = d.dec(LAP[j])
    if s != 0:
        return s - 256
    lo = d.dec(U[512]); hi = d.dec(U[256])
    y = (hi << 9) | lo
    r = (y - 1) >> 1 if y & 1 else -(y >> 1)
    if abs(r) <= 255: raise ValueError("noncanonical")
    return r

# ---------------- AUDIO_CTX
def pitch_order(prev):
    if prev is None or prev < 2:
        return list(range(64))
    return [0, 1] + sorted(range(2, 64), key=lambda u: (abs(u - prev), u > prev))

def audio_decode(data, T, A):
    """A: bundle arrays."""
    tab = {k: [list(map(int, row)) for row in A['audio.' + k]] for k in
           ('energy', 'pitch', 'vq1_repeat', 'vq1', 'vq2_repeat', 'vq2')}
    d = Rans(data)
    def sym(kind, ctx):
        s = d.dec(tab[kind][ctx])
        if s == 0: raise ValueError('reserved')
        return s - 1
    out = []; prev = None
    for t in range(T):
        e = sym('energy', 0 if prev is None else 1 + prev[2])
        loud = int(e >= 8)
        cls = 0 if prev is None else min(prev[3], 2) + 1
        rank = sym('pitch', 2 * cls + loud)
        p = pitch_order(None if prev is None else prev[3])[rank]
        if prev is None:
            v1 = sym('vq1', 2 * int(p > 0) + loud)
            v2 = sym('vq2', 0)
        else:
            if sym('vq1_repeat', 2 * int(e == prev[2]) + int(p == prev[3])):
                v1 = prev[0]
            else:
                v1 = sym('vq1', 2 * int(p > 0) + loud)
                if v1 == prev[0]: raise ValueError('nc')
            if sym('vq2_repeat', 2 * int(v1 == prev[0]) + int(e == prev[2])):
                v2 = prev[1]
            else:
                v2 = sym('vq2', 0)
                if v2 == prev[1]: raise ValueError('nc')
        prev = (v1, v2, e, p)
        out.append((v1 << 19) | (v2 << 10) | (e << 6) | p)
    d.finish()
    return out

# ---------------- MOTION_PRED
QMAX = 32767
def motion_decode(data, T, C, A, audio, prev):
    """audio: list of T+H rows (4 ints or all -1); prev None or (p_last, p_before)."""
    meta = [int(v) for v in A['motion.meta']]
    _, c_, H, S = meta
    bias = [int(v) for v in A['motion.bias']]
    wd = A['motion.w_delta'].astype(object); en = A['motion.energy'].astype(object)
    vo = A['motion.voiced'].astype(object); cr = A['motion.cross'].astype(object)
    off = A['motion.index_offset'].astype(object)
    d = Rans(data)
    q = []
    first = 0
    if prev is None:
        ki = d.dec(U[32])
        q.append([residual(d, ki) for _ in range(C)])
        assert all(abs(v) <= QMAX for v in q[0])
        first = 1
    if first < T:
        k0 = d.dec(U[32])
        s = [INITIAL_STATE_Q12[k0]] * C
        for t in range(first, T):
            def fr(i):
                if i >= 0: return q[i]
                if prev is not None: return prev[min(-i - 1, 1)]
                return q[0]
            p1, p2 = fr(t - 1), fr(t - 2)
            rows = audio[t:t + H + 1]
            cur = rows[H]
            act = 0 if cur[2] < 0 else (1 if cur[2] <= 2 else 2)
            res = []; row = []
            for c in range(C):
                num = bias[c] + sum(wd[c][j] * (p1[j] - p2[j]) for j in range(C))
                for l in range(H + 1):
                    e = 16 if rows[l][2] < 0 else rows[l][2]
                    v = 2 if rows[l][2] < 0 else int(rows[l][3] > 0)
                    num += en[l][e][c] + vo[l][v][c]
                num += sum(cr[c][j] * res[j] for j in range(c))
                pred = min(QMAX, max(-QMAX, p1[c] + ((num + (1 << (S - 1))) >> S)))
                mag = 0 if c == 0 else 1 + min(sum(abs(r) for r in res), 3)
                j = min(31, max(0, scale(s[c]) + off[act][mag]))
                r = residual(d, j)
                res.append(r); row.append(pred + r)
                s[c] = upd(s[c], r)
            assert all(abs(v) <= QMAX for v in row)
            q.append(row)
    d.finish()
    return q

# ---------------- lips, one frame
def lips_frame(A, ref_q, rows):
    """rows: H+L+1 audio rows, frames t-H..t+L."""
    _, C, H, L, D, S = [int(v) for v in A['lips.meta']]
    num = [int(v) for v in A['lips.bias']]
    for l in range(H + L + 1):
        r = rows[l]
        unk = r[2] < 0
        e = 16 if unk else r[2]; v = 2 if unk else int(r[3] > 0); b = 16 if unk else r[0] >> 5
        for c in range(C):
            num[c] += int(A['lips.energy'][l, e, c]) + int(A['lips.voiced'][l, v, c]) + int(A['lips.vq'][l, b, c])
    off = [(n + (1 << (S - 1))) >> S for n in num]
    per = C // D
    for a in range(D):
        m = sum(off[a::D]) // per
        for c in range(a, C, D):
            off[c] -= m
    return [min(QMAX, max(-QMAX, ref_q[c] + off[c])) for c in range(C)]
