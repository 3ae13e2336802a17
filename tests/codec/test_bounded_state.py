"""Bounded state over a long stream (issue 18): every table of the streaming Encoder and Decoder stays within
the reference buffer, the units in flight and a fixed history, however long the stream; and ``avfc.decode``
into a file gives what the array result holds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

import avfc
import avfc.api
import avfc.codec.encoder as encoder_module
from avfc import bitstream as bs
from avfc.avcc.zoo import DEFAULT_AVCC
from avfc.codec import Decoder
from avfc.codec.decoder import KEEP_BEHIND, MAX_SIDE_INFO
from avfc.codec.encoder import Encoder
from avfc.codec.rate import RATE_WINDOW_SECONDS
from avfc.config import EncoderConfig
from avfc.media import load_audio, read_media
from avfc.media.synthetic import speech_like, talking_face

SIZE, FPS = 64, 25
SECONDS = 60  # 1500 frames: many times every bound below (KEEP_BEHIND, the AVCC history, the refresh interval)
PACKET = 10  # frames per motion packet (and audio frames per audio unit: Codec2 700C has 25 a second)
KEY_INTERVAL = 25
CHUNK = 256  # bytes handed to the decoder at a time

PLAIN = dict(model="tiny-test", size=SIZE, effort="detector", key_qp=50, crop="none", packet_frames=PACKET,
             audio="codec2", codec2_mode="700C", key_interval=KEY_INTERVAL, max_refs=2, refresh_interval=2.0,
             side_info=True, motion_stride=2)
#: the AVCC modes read history back (the motion predictor from the audio, the context audio coder)
AVCC = dict(model="tiny-test", size=SIZE, effort="detector", key_qp=50, crop="none", packet_frames=PACKET,
            audio="codec2", codec2_mode="700C", key_interval=KEY_INTERVAL, max_refs=2,
            motion_source="predicted", audio_coder="context", avcc=DEFAULT_AVCC)


def _encode(settings: dict, seconds: int = SECONDS, bitrate: float | None = None) -> tuple[Encoder, list[bytes],
                                                                                          dict[str, int]]:
    """Push ``seconds`` of synthetic face and speech a second at a time; the largest size each encoder table
    reached after any push."""
    frames = talking_face(2 * FPS, SIZE, SIZE, seed=4)  # two seconds, looped (the tables see a long stream)
    pcm = speech_like(2, seed=4)
    if bitrate is not None:  # the one-pass rate control sizes the key pictures
        settings = {**{k: v for k, v in settings.items() if k != "key_qp"}, "bitrate_kbps": bitrate}
    cfg = EncoderConfig(**settings)
    enc = Encoder(cfg)
    peak: dict[str, int] = defaultdict(int)

    def measure() -> None:
        sizes = {
            "decoded_keys": len(enc.decoded_keys), "ref_indices": len(enc._ref_indices), "refs": len(enc._refs),
            "fields": len(enc._fields), "tokens": len(enc._tokens), "pending_q": len(enc._pending_q),
            "motion_queue": sum(len(q) for _, q in enc._motion_queue), "waiting": len(enc._waiting),
            "search_log": len(enc.search_log), "deferred": len(enc._deferred),
            "rate_recent": len(enc.rate._recent) if enc.rate is not None else 0,
        }
        for k, v in sizes.items():
            peak[k] = max(peak[k], v)

    out = []
    for s in range(seconds):
        half = (s % 2) * FPS
        enc.push_frames(frames[half:half + FPS])
        measure()
        enc.push_audio(pcm[(s % 2) * 16000:(s % 2 + 1) * 16000])
        measure()
        out.append(enc.read())
    enc.close()
    measure()
    out.append(enc.read())
    return enc, out, dict(peak)


def _decode(data: bytes) -> tuple[Decoder, int, int, dict[str, int]]:
    """Feed ``data`` in small pieces as a live receiver does, pulling frames and audio after each: frames and
    samples received, and the largest size each decoder table reached."""
    dec = Decoder()
    peak: dict[str, int] = defaultdict(int)
    got = [0, 0]

    def measure() -> None:
        sizes = {
            "keys": len(dec._keys), "key_q": len(dec._key_q), "motion": len(dec.motion), "refs": len(dec._refs),
            "audio_tokens": len(dec.audio_tokens), "fields": len(dec._fields), "ready": len(dec._ready),
            "side_info": len(dec.side_info), "waiting_motion": len(dec._waiting_motion),
            "pending_keys": len(dec._pending_keys), "parser_buffer": len(dec._parser._buf),
            "restarts": len(dec._restarts),
        }
        for k, v in sizes.items():
            peak[k] = max(peak[k], v)

    def pull() -> None:
        measure()  # (what is not pulled yet counts too)
        got[0] += len(dec.pull_frames())
        pcm = dec.pull_audio()
        got[1] += 0 if pcm is None else len(pcm)
        measure()

    for i in range(0, len(data), CHUNK):
        dec.push(data[i:i + CHUNK])
        pull()
    dec.close()
    pull()
    return dec, got[0], got[1], dict(peak)


@pytest.fixture(scope="module")
def plain():
    enc, out, peak = _encode(PLAIN)
    return enc, b"".join(out), peak


def test_the_streaming_encoders_tables_stay_within_the_references_and_the_packet_in_flight(plain) -> None:
    enc, data, peak = plain
    assert enc.stats.frames == SECONDS * FPS and len(enc.stats.key_qps) >= SECONDS * FPS // KEY_INTERVAL
    # the decoder's buffer, plus the key pictures of frames not yet in a written packet (one packet of
    # frames plus the second pushed: keys every KEY_INTERVAL frames)
    assert peak["ref_indices"] == peak["refs"] == 2
    assert peak["decoded_keys"] <= 2 + (FPS + PACKET) // KEY_INTERVAL + 1
    assert peak["pending_q"] < PACKET and peak["motion_queue"] <= PACKET and peak["waiting"] <= 1
    assert peak["tokens"] < PACKET  # audio tokens not yet in a unit: less than one unit's
    assert peak["fields"] == 0  # no AVCC mode: no audio history at all


def test_the_streaming_decoders_tables_stay_within_the_references_the_packet_in_flight_and_keep_behind(plain):
    enc, data, _ = plain
    dec, frames, samples, peak = _decode(data)
    assert not dec.issues and frames == SECONDS * FPS and samples == SECONDS * 16000
    assert peak["refs"] == 2
    # keys ahead of the frames drawn: those of one motion packet (sent before it)
    assert peak["keys"] <= PACKET // KEY_INTERVAL + 1
    # key keypoints and motion rows: KEEP_BEHIND frames behind the next frame to draw, plus the packet
    assert peak["key_q"] <= (KEEP_BEHIND + PACKET) // KEY_INTERVAL + 2
    assert KEEP_BEHIND <= peak["motion"] <= KEEP_BEHIND + PACKET  # (the stream went far past the bound)
    # received and not yet pulled: what one piece of input completes (under two seconds of this stream)
    assert peak["audio_tokens"] <= 2 * FPS and peak["ready"] <= 2 * FPS
    assert peak["side_info"] == MAX_SIDE_INFO  # the stream carries one per key frame: the deque is full
    assert peak["fields"] == peak["waiting_motion"] == peak["pending_keys"] == 0
    # the parser holds at most the unit being read and one piece of input
    assert peak["parser_buffer"] <= CHUNK + max(u.size for u in bs.parse_stream(data).units)


@pytest.mark.parametrize("refresh", [None, 2.0])
def test_the_avcc_modes_history_stays_bounded_in_the_encoder_and_the_decoder(refresh) -> None:
    """Also with REFRESH (format 2.3): each second's frames come before its audio, so the encoder holds the frames
    from each refresh until the audio before it (at most a second here); the decoder keeps a few REFRESH frames."""
    enc, out, epeak = _encode({**AVCC, "refresh_interval": refresh})
    # the predictor's audio rows: trimmed in steps of 256 audio frames behind the next packet's window
    history = enc.avcc.motion.history
    assert FPS * SECONDS > 3 * 256 and epeak["fields"] <= 256 + history + 2 * FPS
    assert epeak["decoded_keys"] <= 2 + (FPS + PACKET) // KEY_INTERVAL + 1
    dec, frames, samples, dpeak = _decode(b"".join(out))
    assert not dec.issues and frames == SECONDS * FPS and samples == SECONDS * 16000
    assert dpeak["fields"] <= KEEP_BEHIND + 3 * PACKET and dpeak["motion"] <= KEEP_BEHIND + 3 * PACKET
    assert dpeak["waiting_motion"] <= 2 and dpeak["audio_tokens"] <= 2 * FPS
    assert (0 < epeak["deferred"] <= FPS) if refresh else epeak["deferred"] == 0
    assert dpeak["restarts"] <= (3 if refresh else 0)


def test_the_one_pass_rate_controls_window_and_the_search_log_are_bounded(monkeypatch) -> None:
    _, _, peak = _encode(PLAIN, seconds=24, bitrate=3.0)
    # the rate control's measurements: one per unit written in the last RATE_WINDOW_SECONDS
    units_per_second = 3 * FPS / PACKET  # motion, audio and side info, rounded up
    assert 0 < peak["rate_recent"] <= (RATE_WINDOW_SECONDS + 1) * units_per_second
    # the search log keeps the last SEARCH_LOG_PACKETS choices and counts them all
    monkeypatch.setattr(encoder_module, "SEARCH_LOG_PACKETS", 4)
    frames = talking_face(12, SIZE, SIZE, seed=9)
    enc = Encoder(EncoderConfig.make(model="tiny-test", size=SIZE, audio="none", key_qp=35, packet_frames=3,
                                     effort="fast", key_interval=12, max_refs=2))
    for _ in range(3):
        enc.push_frames(frames)
    enc.close()
    assert len(enc.search_log) == 4 and sum(enc.packets_by_choice().values()) == 12


def test_decoding_into_a_file_writes_what_the_array_result_holds(tmp_path) -> None:
    """``decode(src, dst)`` writes as it renders; the file is the one the array result, written whole by the
    same writer, gives: the same frames and audio after the writer's H.264 and AAC and, through a .wav, the
    same samples. (Opus: its decoder is deterministic; Codec2 700C's draws random phases.)"""
    enc, out, _ = _encode({**PLAIN, "audio": "opus"}, seconds=10)
    data = b"".join(out)
    held = avfc.decode(data)
    assert held.frames is not None and held.audio is not None and len(held.frames) == 10 * FPS
    streamed = avfc.decode(data, tmp_path / "streamed.mp4")
    assert streamed.frames is None and streamed.audio is None  # nothing held
    assert (streamed.frame_count, streamed.audio_samples) == (len(held.frames), len(held.audio))
    avfc.api.write_decoded(held, tmp_path / "held.mp4")
    a, b = read_media(tmp_path / "streamed.mp4"), read_media(tmp_path / "held.mp4")
    assert len(a.frames) == len(held.frames) and np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.audio, b.audio)
    assert np.abs(a.frames.astype(np.int16) - held.frames.astype(np.int16)).mean() < 3.0  # H.264 at crf 18
    kept = avfc.decode(data, tmp_path / "streamed.wav", keep_audio=True)
    wav = load_audio(tmp_path / "streamed.wav", 16000)
    assert kept.audio is not None and np.array_equal(kept.audio, held.audio)
    assert len(wav) == len(held.audio)
    np.testing.assert_allclose(wav, held.audio, atol=1 / 32768 + 1e-6)  # 16-bit PCM


def test_the_encoders_key_statistics_keep_a_bounded_tail_and_exact_totals(monkeypatch) -> None:
    """``EncoderStats`` counts and sums every key frame, keeps the QPs and sizes of the last
    KEY_STATS_KEPT, and numbers the side-info messages by the key count."""
    monkeypatch.setattr(encoder_module, "KEY_STATS_KEPT", 8)
    enc, out, _ = _encode(PLAIN, seconds=20)
    parsed = bs.parse_stream(b"".join(out))
    units = [bs.decode_payload(u, parsed.version[0]) for u in parsed.units]
    keys = [u for u in units if isinstance(u, bs.KeyFrame)]
    assert len(keys) == enc.stats.keys == 20 * FPS // KEY_INTERVAL > 8
    assert list(enc.stats.key_qps) == [int(k.quality) for k in keys[-8:]]
    assert list(enc.stats.key_picture_bytes) == [len(k.data) for k in keys[-8:]]
    assert enc.stats.key_picture_total == sum(len(k.data) for k in keys)
    assert [int(u.counter) for u in units if isinstance(u, bs.SideInfo)] == list(range(len(keys)))
