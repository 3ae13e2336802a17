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
