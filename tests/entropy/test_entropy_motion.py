"""Motion packets: round trips, golden bytes, escapes, extremes, bounds, garbage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfc.entropy import (
    MAX_CHANNELS,
    MAX_FRAMES,
    QMAX,
    decode_motion,
    encode_motion,
    estimate_motion_bits,
    max_motion_bytes,
)
from avfc.entropy.motion import _packet_symbols
from avfc.entropy.rans import encode_symbols
from avfc.errors import EntropyError

import entropy_reference as ref

GOLDEN_Q = np.array([[10, -20, 300], [12, -20, -400], [13, -19, -400], [13, -19, -398]])


def roundtrip(q: np.ndarray, prev: np.ndarray | None = None) -> bytes:
    data = encode_motion(q, prev)
    out = decode_motion(data, q.shape[0], q.shape[1], prev)
    assert out.dtype == np.int32 and out.shape == q.shape
    assert np.array_equal(out, q)
    assert len(data) % 4 == 0 and len(data) <= max_motion_bytes(*q.shape)
    assert estimate_motion_bits(q, prev) == 8 * len(data)
    return data


# --- golden vectors: fixed symbols + fixed tables -> exact bytes ------------------------

def test_golden_symbols() -> None:
    symbols = [(256, ("laplace", 16)), (257, ("laplace", 16)), (255, ("laplace", 3)),
               (0, ("laplace", 20)), (300, ("uniform", 512)), (7, ("uniform", 256)),
               (31, ("uniform", 32))]
    data = encode_symbols(symbols)
    assert data.hex() == "0e96000008917b3d000011bf"
    assert ref.encode(symbols) == data


def test_golden_intra_packet() -> None:
    data = roundtrip(GOLDEN_Q)
    assert data.hex() == "05bc722b78012286139de8430af3047d00000002"


def test_golden_predicted_packet() -> None:
    data = roundtrip(GOLDEN_Q, np.zeros(3, dtype=np.int32))
    assert data.hex() == "8602e76fe587102dda48d475b3d72a6000000039"


def test_golden_still_packets() -> None:
    z = np.zeros((25, 20), dtype=np.int32)
    assert roundtrip(z).hex() == "0e00193200000007"
    assert roundtrip(z, np.zeros(20, dtype=np.int16)).hex() == "3805e283"


# --- the plain reference decoder/encoder written from the spec --------------------------

@pytest.mark.parametrize("seed", range(6))
def test_reference_implementation_agrees(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t, c = int(rng.integers(1, 10)), int(rng.integers(1, 6))
    steps = rng.integers(-3, 4, (t, c)) + rng.integers(-900, 901, (t, c)) * (rng.random((t, c)) < 0.2)
    q = np.clip(np.cumsum(steps, axis=0), -QMAX, QMAX)
    prev = None if seed % 2 else rng.integers(-QMAX, QMAX + 1, c)
    data = roundtrip(q, prev)
    assert ref.encode(_packet_symbols(q, prev)) == data
    out = ref.decode_packet(data, t, c, None if prev is None else prev.tolist())
    assert np.array_equal(np.array(out), q)


# --- round trips ---------------------------------------------------------------------------

@given(st.integers(1, 8).flatmap(lambda c: st.tuples(
    st.lists(st.lists(st.integers(-QMAX, QMAX), min_size=c, max_size=c), min_size=1, max_size=8),
    st.none() | st.lists(st.integers(-QMAX, QMAX), min_size=c, max_size=c))))
@settings(max_examples=80, deadline=None)
def test_roundtrip_any_values(case: tuple[list[list[int]], list[int] | None]) -> None:
    rows, prev = case
    roundtrip(np.array(rows, dtype=np.int64), None if prev is None else np.array(prev))


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 12), st.booleans())
@settings(max_examples=25, deadline=None)
def test_roundtrip_random_walks(seed: int, t: int, c: int, intra: bool) -> None:
    rng = np.random.default_rng(seed)
    scale = float(rng.choice([0.3, 2.0, 20.0, 400.0]))
    q = np.clip(np.cumsum(np.rint(rng.laplace(0, scale, (t, c))), axis=0), -QMAX, QMAX).astype(np.int64)
    roundtrip(q, None if intra else q[0] - rng.integers(-5, 6, c))


def test_extremes_and_largest_jumps() -> None:
    q = np.array([[QMAX, -QMAX], [-QMAX, QMAX], [QMAX, -QMAX], [0, 0], [QMAX, QMAX]])
    roundtrip(q)
    roundtrip(q, np.array([-QMAX, QMAX]))  # first residuals are +-65534
    roundtrip(np.full((3, 4), -QMAX), np.full(4, QMAX))


@pytest.mark.parametrize("r", [255, 256, -255, -256, 257, 1000, -65534, 65534])
def test_escape_boundary(r: int) -> None:
    prev = np.array([QMAX if r < 0 else -QMAX, 0])
    q = np.array([[prev[0] + r, 0], [prev[0] + r, 1]])
    roundtrip(q, prev)
    escapes = [s for s, key in _packet_symbols(q, prev) if key[0] == "laplace" and s == 0]
    assert len(escapes) == (abs(r) > 255)


@pytest.mark.parametrize("value", [-256, -255, -1, 0, 1, 255, 256, -QMAX, QMAX])
def test_single_value_packets(value: int) -> None:
    """The last decoded symbol is never the state-0 one, whatever the value."""
    q = np.array([[value]])
    roundtrip(q)
    roundtrip(q, np.array([0]))
    with pytest.raises(EntropyError):
        decode_motion(encode_motion(q), 2, 1)


def test_constant_streams_cost_almost_nothing() -> None:
    q = np.full((50, 20), 77)
    assert len(roundtrip(q, np.full(20, 77))) <= 8
    assert len(roundtrip(q)) <= 32


def test_empty_packets() -> None:
    for shape in [(0, 20), (25, 0), (0, 0)]:
        q = np.zeros(shape, dtype=np.int32)
        assert encode_motion(q) == b""
        assert decode_motion(b"", *shape).shape == shape
        with pytest.raises(EntropyError):
            decode_motion(b"\x00\x00\x00\x01", *shape)


def test_bits_grow_with_motion() -> None:
    rng = np.random.default_rng(3)
    sizes = []
    for scale in (0.5, 2.0, 8.0):
        q = np.cumsum(np.rint(rng.laplace(0, scale, (25, 20))), axis=0).astype(np.int64)
        sizes.append(estimate_motion_bits(q, np.zeros(20, dtype=np.int64)))
    assert sizes[0] < sizes[1] < sizes[2]


# --- bad input to the encoder ---------------------------------------------------------------

@pytest.mark.parametrize("q", [np.zeros((2, 3), dtype=np.float64), np.zeros(5, dtype=np.int32),
                               np.zeros((2, 2, 2), dtype=np.int32), np.array([[QMAX + 1]]),
                               np.zeros((MAX_FRAMES + 1, 1), dtype=np.int8),
                               np.zeros((1, MAX_CHANNELS + 1), dtype=np.int8), "abc"])
def test_encoder_rejects_bad_packets(q: object) -> None:
    with pytest.raises(EntropyError):
        encode_motion(q)  # type: ignore[arg-type]


@pytest.mark.parametrize("prev", [np.zeros(2, dtype=np.int32), np.zeros(3), np.array([0, 0, -QMAX - 1]),
                                  np.zeros((1, 3), dtype=np.int32)])
def test_encoder_rejects_bad_prev(prev: np.ndarray) -> None:
    with pytest.raises(EntropyError):
        encode_motion(np.zeros((2, 3), dtype=np.int32), prev)


# --- bad input to the decoder: EntropyError and nothing else ------------------------------

@pytest.mark.parametrize("t,c", [(-1, 3), (3, -1), (MAX_FRAMES + 1, 1), (1, MAX_CHANNELS + 1),
                                 (2.0, 3), (True, 3), (3, None)])
def test_decoder_rejects_bad_counts(t: object, c: object) -> None:
    with pytest.raises(EntropyError):
        decode_motion(b"", t, c)  # type: ignore[arg-type]


def test_decoder_rejects_bad_lengths_and_types() -> None:
    good = encode_motion(GOLDEN_Q)
    for bad in (good[:-1], good + b"\x01", good + b"\x00" * 4, b"\x00" * 4,
                b"\x01" * (max_motion_bytes(4, 3) + 4)):
        with pytest.raises(EntropyError):
            decode_motion(bad, 4, 3)
    for bad_type in ("abcd", 1234, None, [1, 2, 3, 4]):
        with pytest.raises(EntropyError):
            decode_motion(bad_type, 4, 3)  # type: ignore[arg-type]
    assert np.array_equal(decode_motion(bytearray(good), 4, 3), GOLDEN_Q)
    assert np.array_equal(decode_motion(memoryview(good), 4, 3), GOLDEN_Q)


def test_decoder_detects_wrong_context() -> None:
    data = encode_motion(GOLDEN_Q)
    for t, c in ((3, 3), (5, 3), (4, 2), (4, 4)):
        with pytest.raises(EntropyError):
            decode_motion(data, t, c)
    with pytest.raises(EntropyError):
        decode_motion(data, 4, 3, np.zeros(2, dtype=np.int32))


def _decode_or_error(data: bytes, t: int, c: int, prev: np.ndarray | None) -> bool:
    """True when the decoder raised EntropyError; any other exception fails the test."""
    try:
        out = decode_motion(data, t, c, prev)
    except EntropyError:
        return True
    assert out.shape == (t, c) and out.dtype == np.int32
    assert int(np.abs(out.astype(np.int64)).max(initial=0)) <= QMAX
    return False


def test_garbage_raises_entropy_error_only() -> None:
    rng = np.random.default_rng(11)
    rejected = total = 0
    for _ in range(300):
        t, c = int(rng.integers(1, 30)), int(rng.integers(1, 25))
        n = int(rng.integers(0, 64))
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        prev = None if rng.random() < 0.5 else rng.integers(-QMAX, QMAX + 1, c)
        rejected += _decode_or_error(data, t, c, prev)
        total += 1
    assert rejected / total > 0.95


def test_damaged_packets_are_rejected() -> None:
    rng = np.random.default_rng(5)
    q = np.cumsum(rng.integers(-4, 5, (25, 20)), axis=0)
    data = encode_motion(q, np.zeros(20, dtype=np.int64))
    rejected = total = 0
    for i in range(len(data) * 8):  # every single-bit flip
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        rejected += _decode_or_error(bytes(bad), 25, 20, np.zeros(20, dtype=np.int64))
        total += 1
    for cut in range(4, len(data), 4):  # every truncation and every word dropped at the front
        rejected += _decode_or_error(data[:cut], 25, 20, np.zeros(20, dtype=np.int64))
        rejected += _decode_or_error(data[cut:], 25, 20, np.zeros(20, dtype=np.int64))
        total += 2
    assert rejected / total > 0.95


def test_entropy_layer_imports_without_torch() -> None:
    import subprocess
    import sys

    code = "import sys, avfc.entropy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_rate_on_synthetic_trajectories() -> None:
    """Rate regression guard on smooth tracks (numbers in docs: about 76 bits/frame at P=7)."""
    from motion_rates import synthetic_trajectories

    from avfc.entropy import quantize

    rng = np.random.default_rng(7)
    tracks = [synthetic_trajectories(rng, 100, 0.01) for _ in range(2)]
    per_frame = {}
    for p in (6, 7, 8):
        bits = 0
        for x in tracks:
            q = quantize(x, p)
            prev = None
            for s in range(0, 100, 25):
                data = roundtrip(q[s:s + 25], prev)
                bits += 8 * len(data)
                prev = q[s + 24]
        per_frame[p] = bits / 200
    assert 55 < per_frame[7] < 95
    for p in (6, 7):  # one more bit of precision costs about one bit per channel (20)
        assert 14 < per_frame[p + 1] - per_frame[p] < 26
