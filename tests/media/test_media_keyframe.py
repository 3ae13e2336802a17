"""The intra key-frame codec: round trips, sizes, conformance vectors and bad payloads."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from avfc.errors import AvfcError, ConfigError, FormatError, MediaError
from avfc.media.keyframe import QP_RANGE, IntraCache, decode_intra, encode_intra, encode_intra_to_size
from avfc.media.yuv import rgb_to_yuv420, yuv420_to_rgb

CODECS = ("av1", "hevc")


def picture(width: int = 64, height: int = 64) -> np.ndarray:
    """A smooth synthetic picture with an edge-bounded square (no real data)."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [128 + 60 * np.sin(xx / 9.0), 120 + 50 * np.cos(yy / 7.0), 90 + xx + yy // 2], axis=-1
    ).clip(0, 255).astype(np.uint8)
    rgb[height // 4 : height // 2, width // 3 : 2 * width // 3] = (220, 40, 60)
    return rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_quality_and_size_decrease_with_qp(codec: str) -> None:
    rgb = picture()
    lo, hi = QP_RANGE[codec]
    qps = [lo + (hi - lo) * k // 4 for k in (1, 2, 3)]
    payloads = [encode_intra(rgb, codec, qp) for qp in qps]
    sizes = [len(p) for p in payloads]
    assert sizes[0] > sizes[1] > sizes[2], sizes
    quality = [psnr(decode_intra(p, codec, 64, 64), rgb) for p in payloads]
    assert quality[0] > quality[1] > quality[2], quality
    # the sharp red square costs chroma: the colour conversion alone caps PSNR near 35.7 dB
    ceiling = psnr(yuv420_to_rgb(*rgb_to_yuv420(rgb)), rgb)
    assert quality[0] > ceiling - 1.5 and quality[2] > 24, (ceiling, quality)
    default = decode_intra(encode_intra(rgb, codec), codec, 64, 64)
    assert default.shape == (64, 64, 3) and default.dtype == np.uint8 and psnr(default, rgb) > 28


def test_av1_qp0_is_lossless_after_colour_conversion() -> None:
    rgb = picture()
    decoded = decode_intra(encode_intra(rgb, "av1", 0), "av1", 64, 64)
    np.testing.assert_array_equal(decoded, yuv420_to_rgb(*rgb_to_yuv420(rgb)))


@pytest.mark.parametrize("codec", CODECS)
def test_payload_is_stripped(codec: str) -> None:
    data = encode_intra(picture(), codec, 30)
    if codec == "av1":
        assert data[0] == 0x0A  # sequence header OBU first, no temporal delimiter
    else:
        assert (data[0] >> 1) & 0x3F == 32  # VPS first, start code implied
        assert b"x265" not in data and b"\x00\x00\x00\x01" not in data  # no version SEI, 3-byte codes


@pytest.mark.parametrize("codec", CODECS)
def test_decode_is_deterministic(codec: str) -> None:
    data = encode_intra(picture(), codec, 35)
    np.testing.assert_array_equal(decode_intra(data, codec, 64, 64), decode_intra(bytes(data), codec, 64, 64))


# Conformance vectors: payloads made once by encode_intra(32x32 synthetic picture, qp=30) and
# the SHA-256 of their decoded RGB. Decoding must reproduce the picture on any machine.
VECTORS = {
    "av1": (
        "0a0618113ff48020301780082141c113c2f561d61346acbf532e40bf779349d1463e76c9a80df23c59622cba"
        "f26f6ed75970e150cd1cb94ef312b52409884f2433fb6fd7045bee089857c3897e34f6060f283f98619890a9"
        "766757f0",
        "f2e5ce636f7c9b24b7e22949e3d964456ca0623d01b845ac77c4f3b915a8ac49",
    ),
    "hevc": (
        "40010c01ffff0408000003009fa800000300001eba02400000014201010408000003009fa800000300001ea0"
        "4208596eae46dae680080000014401c17181120000012801af58f254655dc938a50e0ea5a3e563c133a7065c"
        "75c74fb74e20f26da18ac84b96277bbcf0e3223316635d7628bb12173fb3cf6ed789b0b69ed57556d13a52f5"
        "799433dc2406e52701cd7dc323695104b10a0e8d93f96f748e6bf8fa4add79dc446cf218073a7380",
        "6d2bef092a85a963432b83d4eb411725660154c686b5b29780824ce91129e97b",
    ),
}


@pytest.mark.parametrize("codec", CODECS)
def test_conformance_vector(codec: str) -> None:
    payload, digest = VECTORS[codec]
    rgb = decode_intra(bytes.fromhex(payload), codec, 32, 32)
    assert hashlib.sha256(rgb.tobytes()).hexdigest() == digest


@pytest.mark.parametrize("codec", CODECS)
def test_odd_sizes_round_trip(codec: str) -> None:
    rgb = picture(33, 17)
    out = decode_intra(encode_intra(rgb, codec, 20), codec, 33, 17)
    assert out.shape == (17, 33, 3) and psnr(out, rgb) > 30


@pytest.mark.parametrize("codec", CODECS)
def test_encode_to_size_finds_the_lowest_fitting_qp(codec: str) -> None:
    rgb = picture()
    budget = len(encode_intra(rgb, codec, 40)) + 5
    data, qp = encode_intra_to_size(rgb, codec, budget)
    assert len(data) <= budget and data == encode_intra(rgb, codec, qp)
    assert qp == QP_RANGE[codec][0] or len(encode_intra(rgb, codec, qp - 1)) > budget
    assert qp <= 40
    big, qp_big = encode_intra_to_size(rgb, codec, 10**6)
    assert qp_big == QP_RANGE[codec][0]
    with pytest.raises(ConfigError, match="cannot fit"):
        encode_intra_to_size(rgb, codec, 3)
    coarsest, qp_coarsest = encode_intra_to_size(rgb, codec, 3, or_coarsest=True)
    assert qp_coarsest == QP_RANGE[codec][1] and len(coarsest) > 3
    assert coarsest == encode_intra(rgb, codec, QP_RANGE[codec][1])
    assert encode_intra_to_size(rgb, codec, budget, or_coarsest=True) == (data, qp)  # fits: as without it


def test_a_faster_av1_speed_preset_gives_another_payload_any_decoder_reads() -> None:
    """``speed`` is SVT-AV1's preset: another encoder search, the same syntax (the decoder needs nothing);
    encode_intra_to_size fits the budget with it too, and the default is the slowest preset."""
    rgb = picture(128, 128)
    slow, fast = encode_intra(rgb, "av1", 40), encode_intra(rgb, "av1", 40, speed=8)
    assert slow == encode_intra(rgb, "av1", 40, speed=0) and fast != slow
    for payload in (slow, fast):
        assert psnr(decode_intra(payload, "av1", 128, 128), rgb) > 28
    budget = len(fast) + 10
    data, qp = encode_intra_to_size(rgb, "av1", budget, speed=8)
    assert len(data) <= budget and data == encode_intra(rgb, "av1", qp, speed=8)
    assert encode_intra(rgb, "hevc", 30, speed=8) == encode_intra(rgb, "hevc", 30)  # HEVC ignores it


@pytest.mark.parametrize("near", [0, 20, 31, 45, 63])
def test_encode_to_size_from_a_nearby_qp_finds_a_lowest_fitting_qp(monkeypatch: pytest.MonkeyPatch, near: int) -> None:
    """near_qp (the live encoder's warm start): the payload fits, one qp finer does not (or it is the finest),
    from any start; started at the answer it codes the picture twice (the answer, one finer)."""
    import avfc.media.keyframe as keyframe

    rgb = picture(128, 128)
    calls = []
    encode = keyframe.encode_intra

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(a[2])
        return encode(*a, **k)

    monkeypatch.setattr(keyframe, "encode_intra", counting)
    for budget in (250, 700, 3000):
        data, qp = encode_intra_to_size(rgb, "av1", budget, near_qp=near)
        assert len(data) <= budget and data == encode(rgb, "av1", qp)
        assert qp == QP_RANGE["av1"][0] or len(encode(rgb, "av1", qp - 1)) > budget
        calls.clear()
        assert encode_intra_to_size(rgb, "av1", budget, near_qp=qp) == (data, qp)
        assert len(calls) <= 2
    calls.clear()
    big, qp_big = encode_intra_to_size(rgb, "av1", 10**6, near_qp=near)
    assert qp_big == 0
    with pytest.raises(ConfigError, match="cannot fit"):
        encode_intra_to_size(rgb, "av1", 3, near_qp=near)
    assert encode_intra_to_size(rgb, "av1", 3, near_qp=near, or_coarsest=True)[1] == QP_RANGE["av1"][1]


@pytest.mark.parametrize("codec", CODECS)
def test_a_cache_answers_a_picture_coded_before_with_the_same_bytes(monkeypatch: pytest.MonkeyPatch, codec: str) -> None:
    """The rate control's passes size the same key picture again: with a cache, a qp coded before is not coded
    again, and every answer (payload and qp) is the one without the cache."""
    import avfc.media.keyframe as keyframe

    rgb, other = picture(96, 96), picture(96, 96)[::-1].copy()
    plain = {(b, n): encode_intra_to_size(p, codec, b, near_qp=n)  # type: ignore[arg-type]
             for b in (400, 900) for n in (None, 40) for p in (rgb,)}
    calls: list[int] = []
    encode = keyframe.encode_intra

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        calls.append(a[2])
        return encode(*a, **k)

    monkeypatch.setattr(keyframe, "encode_intra", counting)
    cache = IntraCache()
    for (budget, near), expected in plain.items():
        assert encode_intra_to_size(rgb, codec, budget, near_qp=near, cache=cache) == expected  # type: ignore[arg-type]
    assert len(calls) == len(set(calls)) == cache.encodes > 0  # no qp of the picture coded twice
    before = len(calls)
    for (budget, near), expected in plain.items():  # a second pass: nothing left to code
        assert encode_intra_to_size(rgb, codec, budget, near_qp=near, cache=cache) == expected  # type: ignore[arg-type]
    assert len(calls) == before and cache.hits >= before
    encode_intra_to_size(other, codec, 400, cache=cache)  # type: ignore[arg-type]
    assert len(calls) > before  # another picture is another key
    if codec == "av1":  # a speed preset is part of the key (HEVC ignores it)
        assert cache.encode(rgb, codec, 30, speed=8) != cache.encode(rgb, codec, 30)


def test_the_cache_holds_at_most_its_entries() -> None:
    cache = IntraCache(max_entries=2)
    rgb = picture(64, 64)
    first = cache.encode(rgb, "av1", 50)
    cache.encode(rgb, "av1", 51)
    cache.encode(rgb, "av1", 50)  # used again: the least recently used is now qp 51
    cache.encode(rgb, "av1", 52)
    assert len(cache) == 2 and cache.encodes == 3 and cache.hits == 1
    assert cache.encode(rgb, "av1", 50) == first and cache.hits == 2  # kept
    cache.encode(rgb, "av1", 51)
    assert cache.encodes == 4  # dropped, coded again
    with pytest.raises(ConfigError):
        IntraCache(max_entries=0)


@pytest.mark.parametrize("codec", CODECS)
def test_garbage_and_truncated_payloads_fail_cleanly(codec: str) -> None:
    rng = np.random.default_rng(7)
    good = encode_intra(picture(), codec, 30)
    candidates = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 5, 50, 500)]
    candidates += [good[:n] for n in (1, 2, 5, len(good) // 2, len(good) - 1)]
    flipped = bytearray(good)
    for i in rng.integers(0, len(good), 8):
        flipped[i] ^= 0xFF
    candidates.append(bytes(flipped))
    for data in candidates:
        try:
            out = decode_intra(data, codec, 64, 64)
        except (FormatError, MediaError):
            continue
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8  # a damaged but sized picture
    with pytest.raises(FormatError):
        decode_intra(b"", codec, 64, 64)


def test_wrong_codec_or_size_is_refused() -> None:
    av1 = encode_intra(picture(), "av1", 30)
    with pytest.raises(FormatError):
        decode_intra(av1, "hevc", 64, 64)
    with pytest.raises(MediaError):
        decode_intra(av1, "av1", 64, 48)
    with pytest.raises(MediaError):
        decode_intra(av1, "av1", 32, 32)


@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_intra(picture(), "vvc", 30),
        lambda: encode_intra(picture(), "av1", 64),
        lambda: encode_intra(picture(), "hevc", -1),
        lambda: encode_intra(picture(), "hevc", 30.0),
        lambda: encode_intra(picture(8, 8), "av1", 30),
        lambda: decode_intra(b"\x0a", "av1", 8, 64),
        lambda: decode_intra(b"\x0a", "av1", 64, 5000),
        lambda: encode_intra_to_size(picture(), "av1", 0),
        lambda: encode_intra(picture(), "av1", 30, speed=14),
        lambda: encode_intra(picture(), "av1", 30, speed=-1),
        lambda: encode_intra(picture(), "av1", 30, speed=True),
        lambda: encode_intra_to_size(picture(), "av1", 500, speed=2.5),
    ],
)
def test_bad_configuration(call) -> None:
    with pytest.raises(ConfigError):
        call()


@pytest.mark.parametrize(
    "rgb", [np.zeros((64, 64, 3), np.float32), np.zeros((64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8)]
)
def test_bad_pictures(rgb: np.ndarray) -> None:
    with pytest.raises(MediaError):
        encode_intra(rgb, "av1", 30)


def test_errors_are_avfc_errors() -> None:
    with pytest.raises(AvfcError):
        decode_intra(b"\xff" * 40, "av1", 64, 64)


def _policies() -> set[int]:
    import os
    return {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{os.getpid()}/task")}


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getscheduler"), reason="no sched_* calls here")
@pytest.mark.parametrize("codec", ["av1", "hevc"])
def test_coding_a_key_picture_leaves_the_threads_scheduling_as_it_was(codec: str) -> None:
    """libsvtav1 run by root left the calling thread on SCHED_FIFO 99 (an app coding a key picture went on
    as a real-time thread); the encoder restores the policy."""
    import os
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    picture = (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    encode_intra(picture, codec, 40)
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
    assert _policies() <= {before[0]}  # no thread of this process is left real-time either


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_getscheduler"), reason="no sched_* calls here")
def test_the_svtav1_anchor_leaves_the_threads_scheduling_as_it_was() -> None:
    import os

    from avfc.eval.anchors import encode_video_anchor
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    frames = (np.arange(3 * 64 * 64 * 3) % 251).astype(np.uint8).reshape(3, 64, 64, 3)
    encode_video_anchor(frames, "svtav1", 63)
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
