"""The benchmark's anchors: low-delay x265 / SVT-AV1, Opus / Codec2, the held key frame."""

from __future__ import annotations

import av
from av.video.frame import PictureType
import numpy as np
import pytest

from avfc.errors import AvfcError, ConfigError, MediaError
from avfc.eval import anchors
from avfc.eval.metrics import psnr
from avfc.media import decode_intra
from avfc.media.synthetic import speech_like, talking_face

DECODERS = {"x265": "hevc", "svtav1": "libdav1d"}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return talking_face(12, 64, 64)


@pytest.mark.parametrize("codec", anchors.VIDEO_ANCHORS)
def test_video_anchor_is_low_delay_and_decodes_at_the_size(clip: np.ndarray, codec: str) -> None:
    qp = {"x265": 36, "svtav1": 45}[codec]
    packets = anchors.encode_video_anchor(clip, codec, qp)
    assert len(packets) == len(clip) and all(isinstance(p, bytes) and p for p in packets)

    decoded = anchors.decode_video_packets(packets, codec, 64, 64)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    assert psnr(clip, decoded).mean > 25.0

    # low delay, seen from outside: every packet decodes to one picture at once (no reordering),
    # the first is the only key frame, the rest are P pictures
    ctx = av.CodecContext.create(DECODERS[codec], "r")
    ctx.thread_count = 1
    outs = [list(ctx.decode(av.Packet(p))) for p in packets]
    assert [len(o) for o in outs] == [1] * len(clip)
    assert [o[0].key_frame for o in outs] == [True] + [False] * (len(clip) - 1)
    assert {int(o[0].pict_type) for o in outs[1:]} == {int(PictureType.P)}


@pytest.mark.parametrize("codec", anchors.VIDEO_ANCHORS)
def test_video_anchor_rate_follows_qp_and_max_qp_is_the_floor(clip: np.ndarray, codec: str) -> None:
    lo, hi = anchors.QP_LIMITS[codec]
    sizes = [sum(len(p) for p in anchors.encode_video_anchor(clip, codec, qp)) for qp in (hi - 20, hi - 10, hi)]
    assert sizes[0] > 1.3 * sizes[1] and sizes[1] > 1.3 * sizes[2]


def test_video_anchor_rejects_bad_input(clip: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        anchors.encode_video_anchor(clip, "x265", 52)
    with pytest.raises(ConfigError):
        anchors.encode_video_anchor(clip, "svtav1", 0)
    with pytest.raises(ConfigError):
        anchors.encode_video_anchor(clip, "vvc", 30)  # type: ignore[arg-type]
    with pytest.raises(MediaError):
        anchors.encode_video_anchor(clip.astype(np.float32), "x265", 30)  # type: ignore[arg-type]
    with pytest.raises(MediaError):
        anchors.encode_video_anchor(clip[:, :62, :62], "x265", 30)  # below the minimum side
    with pytest.raises(MediaError):
        anchors.encode_video_anchor(np.pad(clip, ((0, 0), (0, 0), (0, 1), (0, 0))), "x265", 30)  # odd width
    for codec in anchors.VIDEO_ANCHORS:
        with pytest.raises(MediaError):
            anchors.decode_video_packets([b"\x00\x01garbage" * 3] * 3, codec, 64, 64)


def test_video_anchor_decoder_refuses_a_larger_picture_than_announced(clip: np.ndarray) -> None:
    packets = anchors.encode_video_anchor(np.tile(clip, (1, 2, 2, 1)), "x265", 40)  # 128x128
    with pytest.raises(MediaError):
        anchors.decode_video_packets(packets, "x265", 64, 64)


@pytest.mark.parametrize(
    ("codec", "mode", "bits_per_second"),
    [("codec2", "700C", 700), ("codec2", "3200", 3200), ("opus", 6000, 6000), ("opus", 16000, 16000)],
)
def test_audio_anchor_counts_the_bytes_it_decodes(codec: str, mode: object, bits_per_second: int) -> None:
    pcm = speech_like(2.0)  # 2 s at 16 kHz, a whole number of 40 ms frames
    data = anchors.encode_audio_anchor(pcm, codec, mode)
    # the token payload at the nominal rate, plus at most a couple of framing bytes
    payload = bits_per_second * 2.0 / 8
    assert payload <= len(data) <= payload + 2
    out = anchors.decode_audio_anchor(data, codec, mode, pcm.size)
    assert out.shape == pcm.shape and out.dtype == np.float32
    assert np.abs(out).max() > 0.01  # speech came back, not silence
    with pytest.raises(AvfcError):
        anchors.decode_audio_anchor(data[: len(data) // 2], codec, mode, pcm.size)


def test_audio_anchor_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        anchors.encode_audio_anchor(speech_like(0.5), "mp3", 8000)
    with pytest.raises(ConfigError):
        anchors.encode_audio_anchor(speech_like(0.5), "opus", 4000)
    with pytest.raises(MediaError):
        anchors.encode_audio_anchor(np.zeros((2, 100), np.float32), "codec2", "700C")
    with pytest.raises(ConfigError):
        anchors.decode_audio_anchor(b"", "codec2", "700C", 0)


def test_held_key_frame_fits_the_budget_and_repeats_one_picture(clip: np.ndarray) -> None:
    payload, qp, fits = anchors.encode_held_key_frame(clip[0], 400)
    assert fits and len(payload) <= 400
    frames = anchors.decode_held_key_frame(payload, len(clip), 64, 64)
    assert frames.shape == clip.shape
    picture = decode_intra(payload, "av1", 64, 64)
    assert all(np.array_equal(f, picture) for f in frames)
    # a larger budget buys a finer QP and a closer picture
    payload2, qp2, _ = anchors.encode_held_key_frame(clip[0], 1500)
    assert qp2 < qp and len(payload) < len(payload2) <= 1500
    assert psnr(clip[0], decode_intra(payload2, "av1", 64, 64)).mean > psnr(clip[0], picture).mean


def test_held_key_frame_too_small_budget_uses_the_coarsest_picture(clip: np.ndarray) -> None:
    payload, qp, fits = anchors.encode_held_key_frame(clip[0], 5)
    assert not fits and qp == 63 and len(payload) > 5
    with pytest.raises(ConfigError):
        anchors.encode_held_key_frame(clip[0], 0)
    with pytest.raises(ConfigError):
        anchors.encode_held_key_frame(clip[0], 100, codec="vvc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        anchors.decode_held_key_frame(payload, 0, 64, 64)
