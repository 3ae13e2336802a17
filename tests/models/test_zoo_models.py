"""The shipped animation models: hashes, and v3's link to v2's keypoints."""

from __future__ import annotations

import torch

from avfc.avcc.zoo import default_avcc_for
from avfc.codec.common import avcc_for_config
from avfc.config import EncoderConfig
from avfc.models.zoo import ZOO, file_sha256, keypoint_family, load_model, weights_dir


def test_every_shipped_file_has_its_zoo_hash() -> None:
    for entry in ZOO.values():
        assert file_sha256(weights_dir() / entry.filename) == entry.sha256


def test_v3_transmits_the_keypoints_of_v2_and_uses_its_avcc_models() -> None:
    v2, v3 = load_model("mrdac-cpu-v2", 64), load_model("mrdac-cpu-v3", 64)
    frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v2.detect(frames), v3.detect(frames))  # same detector, bit for bit
    assert keypoint_family("mrdac-cpu-v3") == "mrdac-cpu-v2" and keypoint_family("mrdac-cpu-v2") == "mrdac-cpu-v2"
    assert v3.render_keys and not v2.render_keys
    cfg = EncoderConfig.make(model="mrdac-cpu-v3", audio_coder="context", motion_source="predicted")
    assert avcc_for_config(cfg, v3).entry.name == default_avcc_for("mrdac-cpu-v2")

