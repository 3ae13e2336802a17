"""Shared builders for the container tests: small synthetic streams, no media."""

from __future__ import annotations

import io
import random
from typing import Any, Callable

import pytest

from avfc.bitstream import (
    MOTION_FLAG_INTRA,
    SIDE_INFO_FLAG_BASE_PICTURE,
    Audio,
    AudioCodecId,
    AudioCoder,
    AudioCtx,
    EndOfStream,
    KeyCodec,
    KeyFrame,
    Motion,
    MotionPred,
    MotionSource,
    SequenceHeader,
    SideInfo,
    StreamWriter,
)

HEADER_FIELDS: dict[str, Any] = dict(
    model_name="mrdac-256_v1.0",
    weights_sha256="0123456789abcdef" * 4,
    width=256,
    height=256,
    fps_num=25,
    fps_den=1,
    frame_count=100,
    source_width=640,
    source_height=480,
    crop_x=192,
    crop_y=112,
    crop_w=256,
    crop_h=256,
    key_codec=KeyCodec.AV1,
    audio_codec=AudioCodecId.CODEC2,
    audio_sample_rate=8000,
    audio_param=700,
    audio_frame_samples=320,
    kp_count=10,
    kp_dim=2,
    kp_precision=6,
    motion_coder=1,
    reference_mode=0,
    max_refs=4,
)
#: the 1.1 AVCC extension: context-coded audio and speech-predicted motion.
AVCC_FIELDS: dict[str, Any] = dict(
    avcc_name="avcc-ctx_v1",
    avcc_sha256="fedcba9876543210" * 4,
    audio_coder=AudioCoder.CONTEXT,
    motion_source=MotionSource.PREDICTED,
)


@pytest.fixture
def make_header() -> Callable[..., SequenceHeader]:
    """Build a valid SequenceHeader with some fields overridden."""

    def build(**overrides: Any) -> SequenceHeader:
        return SequenceHeader(**{**HEADER_FIELDS, **overrides})

    return build


def sample_payloads(seed: int = 0, count: int = 12) -> list:
    """A mix of every non-header payload type with random opaque data, EOS last."""
    rng = random.Random(seed)
    out: list = []
    frame = 0
    for k in range(count):
        kind = k % 4
        if kind == 0:
            out.append(KeyFrame(frame_index=frame, quality=rng.randrange(64), data=rng.randbytes(rng.randint(1, 400))))
        elif kind == 1:
            flags = MOTION_FLAG_INTRA if k == 1 else 0
            out.append(Motion(first_frame=frame, num_frames=5, flags=flags, data=rng.randbytes(rng.randint(0, 150))))
            frame += 5
        elif kind == 2:
            out.append(Audio(first_frame=frame, num_frames=5, data=rng.randbytes(rng.randint(1, 40))))
        else:
            out.append(
                SideInfo(
                    info_id=1, counter=k, flags=SIDE_INFO_FLAG_BASE_PICTURE, kp_precision=6, kp_count=10, kp_dim=2,
                    applies_from_frame=frame, refs=(0, frame),
                )
            )
    out.append(EndOfStream(frame_count=frame, audio_frame_count=frame, audio_samples=frame * 320))
    return out


@pytest.fixture
def make_avcc_header() -> Callable[..., SequenceHeader]:
    """Build a valid 1.1 SequenceHeader (AVCC extension: CONTEXT audio, PREDICTED motion)."""

    def build(**overrides: Any) -> SequenceHeader:
        return SequenceHeader(**{**HEADER_FIELDS, **AVCC_FIELDS, **overrides})

    return build


def sample_payloads_v1_1(seed: int = 0, count: int = 12) -> list:
    """Like sample_payloads for a CONTEXT / PREDICTED stream: AudioCtx and MotionPred replace Audio and Motion."""
    out: list = []
    for payload in sample_payloads(seed, count):
        if isinstance(payload, Motion):
            payload = MotionPred(**payload.model_dump())
        elif isinstance(payload, Audio):
            payload = AudioCtx(**payload.model_dump())
        out.append(payload)
    return out


@pytest.fixture
def stream_bytes_v1_1(make_avcc_header: Callable[..., SequenceHeader]) -> bytes:
    """A valid 1.1 stream: AVCC header, 12 mixed units (AUDIO_CTX, MOTION_PRED), END_OF_STREAM."""
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    writer.write_header(make_avcc_header())
    for payload in sample_payloads_v1_1():
        writer.write(payload)
    return fp.getvalue()


@pytest.fixture
def stream_bytes(make_header: Callable[..., SequenceHeader]) -> bytes:
    """A valid stream: header, 12 mixed units, END_OF_STREAM."""
    fp = io.BytesIO()
    writer = StreamWriter(fp)
    writer.write_header(make_header())
    for payload in sample_payloads():
        writer.write(payload)
    return fp.getvalue()
