"""avfc.encode's rate control: ``bitrate_kbps`` bounds the whole file even when the key frames'
quality changes what else the encoder sends (held or moved packets, the number of key frames)."""

from __future__ import annotations

import numpy as np
import pytest

import avfc
import avfc.api as api
from avfc.codec.encoder import Encoder, EncoderStats

SIZE = 64
FRAMES = 50  # 2 s at 25 fps


class _Fake(Encoder):
    """An encoder whose motion bytes grow with the key frame's byte budget: a finer key frame makes
    motion_hold move packets it held with the coarsest one. Everything else is the real encoder."""

    runs: list[int | None] = []

    def __init__(self, config, *, key_bytes=None, **kw):
        super().__init__(config, key_bytes=key_bytes, **kw)
        _Fake.runs.append(key_bytes)
        self._planned = key_bytes is not None

    def close(self) -> None:
        super().close()
        if self._planned:  # half a byte of motion per byte of key picture
            self.stats.add("motion", sum(self.stats.key_picture_bytes) // 2)


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    return np.repeat(base, FRAMES, axis=0)


def _encode(frames, kbps, monkeypatch):
    _Fake.runs = []
    monkeypatch.setattr(api, "Encoder", _Fake)
    return avfc.encode(frames, size=SIZE, model="tiny-test", audio="none", bitrate_kbps=kbps)


def test_a_pass_over_budget_is_replanned_and_the_result_fits(frames, monkeypatch):
    res = _encode(frames, 8.0, monkeypatch)
    budget = int(8.0 * 1000 / 8 * FRAMES / 25)
    assert res.stats.total_bytes <= budget
    assert res.warnings == []
    # pass 1 (coarsest key), the planned pass (over budget: its motion grew), then smaller plans
    assert _Fake.runs[0] is None and len(_Fake.runs) >= 3
    assert _Fake.runs[2] < _Fake.runs[1]


def test_without_feedback_one_planned_pass_uses_the_budget(frames):
    res = avfc.encode(frames, size=SIZE, model="tiny-test", audio="none", bitrate_kbps=8.0)
    budget = int(8.0 * 1000 / 8 * FRAMES / 25)
    assert 0.6 * budget < res.stats.total_bytes <= budget


def test_stats_total_counts_every_unit():
    s = EncoderStats()
    s.add("motion", 10)
    s.add("key_frame", 5)
    assert s.total_bytes == 15 and s.units_by_type == {"motion": 1, "key_frame": 1}


# ---------------------------------------------------------------- the motion stride chosen by the rate


@pytest.fixture(scope="module")
def moving():
    from avfc.media.synthetic import talking_face

    return talking_face(FRAMES, SIZE, SIZE, seed=9)


def _motion_bytes(res) -> int:
    return res.stats.bytes_by_type.get("motion", 0)


def test_with_a_bitrate_the_densest_motion_that_fits_its_share_is_sent(moving):
    kw = dict(model="tiny-test", size=SIZE, audio="none", bitrate_kbps=6.0, kp_hysteresis=0.0, motion_hold=False)
    budget = int(6.0 * 1000 / 8 * FRAMES / 25)
    every = avfc.encode(moving, motion_share=1.0, **kw)
    assert every.motion_stride == 1 and not every.header.sparse_motion
    share = 0.9 * _motion_bytes(every) / budget  # every frame's keypoints just do not fit
    chosen = avfc.encode(moving, motion_share=share, **kw)
    assert chosen.motion_stride in (2, 3) and chosen.header.sparse_motion
    assert _motion_bytes(chosen) <= share * budget
    if chosen.motion_stride == 3:  # stride 2 did not fit either
        assert _motion_bytes(avfc.encode(moving, motion_stride=2, **kw)) > share * budget
    # the bytes the keypoints gave up went to the key picture
    assert sum(chosen.stats.key_picture_bytes) >= sum(every.stats.key_picture_bytes)
    assert len(chosen.data) <= budget
    # nothing fits: the sparsest stride tried
    assert avfc.encode(moving, motion_share=0.0, **kw).motion_stride == 3


def test_the_stride_is_left_alone_when_set_without_a_bitrate_or_without_transmitted_motion(moving):
    kw = dict(model="tiny-test", size=SIZE, audio="none", motion_hold=False)
    assert avfc.encode(moving, bitrate_kbps=6.0, motion_share=0.0, motion_stride=2, **kw).motion_stride == 2
    assert avfc.encode(moving, bitrate_kbps=6.0, motion_share=0.0, motion_stride=1, **kw).motion_stride == 1
    assert avfc.encode(moving, motion_share=0.0, key_qp=40, **kw).motion_stride == 1  # no bitrate
    from avfc.media.synthetic import speech_like

    pcm = speech_like(FRAMES / 25, seed=1)
    res = avfc.encode(moving, pcm=pcm, model="tiny-test", size=SIZE, bitrate_kbps=6.0, motion_share=0.0,
                      audio_coder="context", motion_source="predicted", avcc="avcc-mrdac-cpu-v3")
    assert res.motion_stride == 1 and not res.header.sparse_motion
