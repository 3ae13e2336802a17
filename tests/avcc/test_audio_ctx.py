"""AUDIO_CTX: the 700C token context model, its tables, its training and its robustness."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avfc.avcc.audio_ctx import (
    KINDS,
    MAX_FRAMES,
    VQ2_REPEAT,
    AudioContextModel,
    pitch_order,
    walk_packet,
)
from avfc.avcc.tokens import Fields700C, join_700c, split_700c
from avfc.entropy.rans import SymbolDecoder, TableSet, encode_table_symbols, words_from_bytes
from avfc.entropy.tables import TABLE_TOTAL
from avfc.errors import ConfigError, EntropyError, ModelMismatchError
from avfc.train.audio_ctx import smoothed_tables, train_model

REPO = Path(__file__).resolve().parents[2]


def random_table(rng: np.random.Generator, size: int) -> np.ndarray:
    """A valid table over ``size`` values plus the reserved symbol 0, random skew."""
    w = rng.integers(1, 1000, size) ** 2
    f = 1 + w * (TABLE_TOTAL - size - 1) // w.sum()
    f[0] += TABLE_TOTAL - 1 - f.sum()
    return np.concatenate([[1], f]).astype(np.int64)


def tiny_arrays(seed: int = 0, levels: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"audio.layout": np.array([1]), "audio.motion_levels": np.array([levels])}
    for name, values, contexts in KINDS:
        out["audio." + name] = np.stack([random_table(rng, values) for _ in range(contexts * levels)])
    return out


@pytest.fixture(scope="module")
def tiny() -> AudioContextModel:
    return AudioContextModel.from_arrays(tiny_arrays())


def speechlike(rng: np.random.Generator, n: int) -> list[int]:
    """Synthetic 700C tokens with speech-like structure: slow energy, smooth pitch, repeats."""
    tokens, e, p, v1, v2 = [], 8, 30, 5, 7
    for _ in range(n):
        e = int(np.clip(e + rng.integers(-1, 2), 0, 15))
        p = 0 if e < 3 else int(np.clip(p + rng.integers(-2, 3), 2, 63))
        if rng.random() > 0.3:
            v1 = int(rng.integers(0, 64))
        if rng.random() > 0.2:
            v2 = int(rng.integers(0, 512))
        tokens.append(join_700c((v1, v2, e, p)))
    return tokens


def random_tokens(rng: np.random.Generator, n: int) -> list[int]:
    return [int(t) for t in rng.integers(0, 1 << 28, n)]


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("n", [1, 2, 3, 25, 100])
@pytest.mark.parametrize("kind", ["random", "speechlike", "constant"])
def test_roundtrip(tiny: AudioContextModel, n: int, kind: str) -> None:
    rng = np.random.default_rng(n)
    tokens = {"random": random_tokens(rng, n), "speechlike": speechlike(rng, n),
              "constant": [join_700c((511, 0, 15, 63))] * n}[kind]
    data = tiny.encode(tokens)
    assert len(data) % 4 == 0 and 0 < len(data) <= tiny.max_packet_bytes(n)
    assert tiny.decode(data, n) == tokens


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 511), st.integers(0, 511), st.integers(0, 15),
                          st.integers(0, 63)), min_size=1, max_size=40))
def test_roundtrip_any_fields(tiny: AudioContextModel, rows: list[tuple[int, int, int, int]]) -> None:
    tokens = [join_700c(r) for r in rows]
    assert tiny.decode(tiny.encode(tokens), len(tokens)) == tokens


def test_numpy_tokens_and_bad_token_inputs(tiny: AudioContextModel) -> None:
    tokens = speechlike(np.random.default_rng(14), 10)
    assert tiny.encode(np.array(tokens, dtype=np.int64)) == tiny.encode(tokens)
    for bad in (5, "abc", [1 << 28], [-1], [1.5], [True]):
        with pytest.raises(EntropyError):
            tiny.encode(bad)  # type: ignore[arg-type]


def test_empty_packet(tiny: AudioContextModel) -> None:
    assert tiny.encode([]) == b"" and tiny.max_packet_bytes(0) == 0
    assert tiny.decode(b"", 0) == []
    with pytest.raises(EntropyError):
        tiny.decode(b"\x00\x00\x00\x01", 0)


def test_extreme_values_and_max_frames(tiny: AudioContextModel) -> None:
    tokens = [0, (1 << 28) - 1] * (MAX_FRAMES // 2)
    data = tiny.encode(tokens)
    assert tiny.decode(data, MAX_FRAMES) == tokens
    with pytest.raises(EntropyError):
        tiny.encode(tokens + [0])


def test_encode_is_deterministic_and_survives_array_roundtrip(tiny: AudioContextModel) -> None:
    tokens = speechlike(np.random.default_rng(3), 60)
    again = AudioContextModel.from_arrays(tiny.to_arrays())
    assert tiny.encode(tokens) == tiny.encode(tokens) == again.encode(tokens)
    for key, arr in tiny.to_arrays().items():
        np.testing.assert_array_equal(arr, again.to_arrays()[key])
    prefixed = AudioContextModel.from_arrays(tiny.to_arrays("x."), prefix="x.")
    assert prefixed.encode(tokens) == tiny.encode(tokens)


def test_packets_are_self_contained(tiny: AudioContextModel) -> None:
    tokens = speechlike(np.random.default_rng(4), 50)
    first, second = tiny.encode(tokens[:25]), tiny.encode(tokens[25:])
    assert tiny.decode(second, 25) == tokens[25:]  # without the first packet
    assert tiny.decode(first, 25) == tokens[:25]


# ---------------------------------------------------------------- malformed data
def test_truncated_and_extended_data_raise(tiny: AudioContextModel) -> None:
    tokens = speechlike(np.random.default_rng(5), 40)
    data = tiny.encode(tokens)
    for bad in (data[:-4], data[4:], data[:-1], data + b"\x00" * 4, data + b"\x00\x00\x00\x07"):
        with pytest.raises(EntropyError):
            tiny.decode(bad, 40)


def test_wrong_num_frames_raises(tiny: AudioContextModel) -> None:
    tokens = speechlike(np.random.default_rng(6), 30)
    data = tiny.encode(tokens)
    for n in (29, 31, 60):
        with pytest.raises(EntropyError):
            tiny.decode(data, n)
    for n in (-1, MAX_FRAMES + 1, 2.0, True, "3"):
        with pytest.raises(EntropyError):
            tiny.decode(data, n)  # type: ignore[arg-type]


def test_too_long_and_non_bytes_raise(tiny: AudioContextModel) -> None:
    with pytest.raises(EntropyError):
        tiny.decode(b"\x01" * (tiny.max_packet_bytes(3) + 4), 3)
    with pytest.raises(EntropyError):
        tiny.decode([1, 2, 3, 4], 1)  # type: ignore[arg-type]


def test_garbage_raises_entropy_error_only(tiny: AudioContextModel) -> None:
    rng = np.random.default_rng(7)
    for i in range(300):
        n = int(rng.integers(1, 30))
        data = rng.integers(0, 256, 4 * int(rng.integers(0, 12)), dtype=np.uint8).tobytes()
        try:
            out = tiny.decode(data, n)
        except EntropyError:
            continue
        assert len(out) == n and tiny.encode(out) == data  # accepted data is canonical


def test_reserved_symbol_is_rejected(tiny: AudioContextModel) -> None:
    # frame 0: the reserved symbol in the energy table, then a valid pitch symbol
    data = encode_table_symbols([(0, 0), (5, tiny._offsets[1])], tiny._set)
    with pytest.raises(EntropyError, match="reserved"):
        tiny.decode(data, 1)


def test_non_canonical_repeat_is_rejected(tiny: AudioContextModel) -> None:
    # frame 1 repeats vq2 but codes it as a value after a 0 flag: valid symbols, wrong form
    fields = [Fields700C(1, 9, 4, 20), Fields700C(2, 9, 4, 21)]
    symbols: list[tuple[int, int]] = []

    def step(kind: int, ctx: int, value: int | None) -> int:
        value = 0 if kind == VQ2_REPEAT else value
        symbols.append((value + 1, tiny._offsets[kind] + ctx))
        return value

    with pytest.raises(EntropyError, match="non-canonical"):
        walk_packet(2, step, fields)
    data = encode_table_symbols(symbols, tiny._set)
    with pytest.raises(EntropyError, match="non-canonical"):
        tiny.decode(data, 2)


# ---------------------------------------------------------------- bundles
@pytest.mark.parametrize("damage", ["missing", "shape", "float", "sum", "zero", "reserved",
                                    "layout", "levels", "scalar_shape"])
def test_bad_arrays_raise(damage: str) -> None:
    arrays = tiny_arrays()
    t = arrays["audio.pitch"]
    if damage == "missing":
        del arrays["audio.vq2"]
    elif damage == "shape":
        arrays["audio.pitch"] = t[:-1]
    elif damage == "float":
        arrays["audio.pitch"] = t.astype(np.float64)
    elif damage == "sum":
        t[2, 5] += 1
    elif damage == "zero":
        t[2, 5], t[2, 6] = 0, t[2, 6] + t[2, 5]
    elif damage == "reserved":
        t[0, 0], t[0, 1] = 2, t[0, 1] - 1
    elif damage == "layout":
        arrays["audio.layout"] = np.array([2])
    elif damage == "levels":
        arrays["audio.motion_levels"] = np.array([0])
    else:
        arrays["audio.layout"] = np.array([[1]])
    with pytest.raises(ModelMismatchError):
        AudioContextModel.from_arrays(arrays)


# ---------------------------------------------------------------- motion context
def test_unconditioned_model_ignores_motion_ctx(tiny: AudioContextModel) -> None:
    tokens = speechlike(np.random.default_rng(8), 20)
    assert tiny.motion_levels == 1
    assert tiny.encode(tokens, [3] * 20) == tiny.encode(tokens)
    assert tiny.decode(tiny.encode(tokens), 20, [1] * 20) == tokens


def test_motion_conditioned_model() -> None:
    model = AudioContextModel.from_arrays(tiny_arrays(seed=1, levels=4))
    tokens = speechlike(np.random.default_rng(9), 30)
    motion = [t % 4 for t in range(30)]
    data = model.encode(tokens, motion)
    assert model.decode(data, 30, motion) == tokens
    assert data != model.encode(tokens, [0] * 30)  # the context changes the tables
    for bad in (None, motion[:-1], [4] * 30, [-1] * 30, 7, [0.5] * 30):
        with pytest.raises(ConfigError):
            model.encode(tokens, bad)
        with pytest.raises(ConfigError):
            model.decode(data, 30, bad)


# ---------------------------------------------------------------- training
def test_smoothed_tables_are_valid_and_follow_counts() -> None:
    counts = np.array([[50, 0, 3, 0], [0, 0, 0, 0], [1, 1, 1, 100]])
    t = smoothed_tables(counts, 4, Fraction(1, 4))
    assert t.shape == (3, 5) and (t[:, 0] == 1).all() and (t >= 1).all()
    assert (t.sum(axis=1) == TABLE_TOTAL).all()
    assert t[0, 1] > t[0, 3] > t[0, 2] and t[2, 4] > t[2, 1]
    # an empty context falls back to the smoothed marginal
    assert np.argmax(t[1, 1:]) == 3 and t[1, 1] > t[1, 2]
    np.testing.assert_array_equal(t, smoothed_tables(counts, 4, Fraction(1, 4)))


def test_trained_model_beats_raw_bits_on_structured_tokens() -> None:
    rng = np.random.default_rng(10)
    train = [speechlike(rng, 150) for _ in range(4)]
    model, fits = train_model(train)
    assert [f.name for f in fits] == [k[0] for k in KINDS]
    assert all(f.cv_bits is not None for f in fits)
    held_out = speechlike(rng, 100)
    sizes = 0
    for start in range(0, 100, 25):
        packet = held_out[start:start + 25]
        data = model.encode(packet)
        assert model.decode(data, len(packet)) == packet
        sizes += len(data)
    assert 8 * sizes / 100 < 0.8 * 28  # structure learnt: well below 28 raw bits a frame
    again, _ = train_model(train)
    for key, arr in model.to_arrays().items():
        np.testing.assert_array_equal(arr, again.to_arrays()[key])
    with pytest.raises(ConfigError):
        train_model([[], []])


def test_trained_motion_model_roundtrip() -> None:
    rng = np.random.default_rng(11)
    train = [speechlike(rng, 60) for _ in range(3)]
    motion = [[int(split_700c(t).energy > 7) for t in seq] for seq in train]
    model, _ = train_model(train, motion_seqs=motion, motion_levels=2)
    assert model.motion_levels == 2
    assert model.decode(model.encode(train[0][:25], motion[0][:25]), 25, motion[0][:25]) == train[0][:25]


# ---------------------------------------------------------------- helpers
def test_pitch_order_is_a_permutation() -> None:
    for prev in [None, 0, 1, 2, 30, 63]:
        order = pitch_order(prev)
        assert sorted(order) == list(range(64))
    assert pitch_order(30)[:5] == (0, 1, 30, 29, 31)
    assert pitch_order(None) == tuple(range(64))


def test_table_set_roundtrip_and_errors() -> None:
    rng = np.random.default_rng(12)
    tables = TableSet([random_table(rng, 3), random_table(rng, 300)])
    assert len(tables) == 2 and tables.size(1) == 301
    pairs = [(int(rng.integers(1, 4)), 0) if i % 2 else (int(rng.integers(1, 301)), 1) for i in range(50)]
    data = encode_table_symbols(pairs, tables)
    dec = SymbolDecoder(words_from_bytes(data, 100))
    assert [dec.decode_table(tables, k) for _, k in pairs] == [s for s, _ in pairs]
    dec.finish()
    for bad in ([(4, 0)], [(1, 2)], [(-1, 1)], [(1.0, 1)]):
        with pytest.raises(EntropyError):
            encode_table_symbols(bad, tables)  # type: ignore[arg-type]
    with pytest.raises(EntropyError):
        TableSet([np.array([1, 2, 3])])


# ---------------------------------------------------------------- two processes
_SCRIPT = """
import sys, numpy as np
from safetensors.numpy import load_file
from avfc.avcc.audio_ctx import AudioContextModel
model = AudioContextModel.from_arrays(load_file(sys.argv[2]))
if sys.argv[1] == "encode":
    tokens = [int(t) for t in open(sys.argv[3]).read().split()]
    open(sys.argv[4], "wb").write(model.encode(tokens))
else:
    data = open(sys.argv[3], "rb").read()
    print(" ".join(map(str, model.decode(data, int(sys.argv[4])))))
"""


def test_encode_and_decode_in_separate_processes(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    model = AudioContextModel.from_arrays(tiny_arrays(seed=2))
    save_file(model.to_arrays(), str(tmp_path / "m.safetensors"))
    tokens = speechlike(np.random.default_rng(13), 40)
    (tmp_path / "tokens.txt").write_text(" ".join(map(str, tokens)))

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", _SCRIPT, *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=True)
        return done.stdout

    run("encode", str(tmp_path / "m.safetensors"), str(tmp_path / "tokens.txt"), str(tmp_path / "p.bin"))
    data = (tmp_path / "p.bin").read_bytes()
    assert data == model.encode(tokens)
    out = run("decode", str(tmp_path / "m.safetensors"), str(tmp_path / "p.bin"), "40")
    assert [int(t) for t in out.split()] == tokens
