"""Models with ``render_keys`` show each key frame as their render of it (docs/bitstream.md E.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import avfc
from avfc import bitstream as bs
from avfc.codec.common import make_reference, tensor_to_frames
from avfc.codec.decoder import Decoder
from avfc.errors import ConfigError
from avfc.media import decode_intra
from avfc.models.mrdac import MRDAC
from avfc.models.zoo import DEFAULT_MODEL, build_model, get_entry, load_model
from synthetic import talking_face

SIZE = 64


def _model(render_keys: bool) -> MRDAC:
    entry = get_entry(DEFAULT_MODEL)
    model = build_model(entry.arch, {**entry.config, "size": SIZE, "render_keys": render_keys})
    model.load_state_dict(load_model(DEFAULT_MODEL, SIZE).state_dict())
    return model.eval()


def _decode(data: bytes, model: MRDAC) -> np.ndarray:
    dec = Decoder(model=model)
    dec.push(data)
    dec.close()
    return dec.pull_frames()


def test_key_frames_are_rendered_only_for_models_that_say_so() -> None:
    frames = talking_face(12, SIZE, SIZE)
    res = avfc.encode(frames, audio="none", size=SIZE, key_qp=50, packet_frames=6, key_interval=6)
    plain, rendered = _decode(res.data, _model(False)), _decode(res.data, _model(True))
    assert plain.shape == rendered.shape == frames.shape
    model = _model(True)
    stream = bs.parse_stream(res.data)
    keys = [bs.KeyFrame.from_bytes(u.payload, stream.version[0]) for u in stream.units if u.type == bs.UnitType.KEY_FRAME]
    assert [k.frame_index for k in keys] == [0, 6]
    for kf in keys:
        pic = decode_intra(kf.data, "av1", SIZE, SIZE)
        np.testing.assert_array_equal(plain[kf.frame_index], pic)  # as before: the decoded picture
        ref = make_reference(model, pic, kf.frame_index, res.header.kp_precision, torch.device("cpu"))
        with torch.no_grad():
            want = tensor_to_frames(model.render([ref], ref.keypoints, kf.frame_index))[0]
        np.testing.assert_array_equal(rendered[kf.frame_index], want)
        assert not np.array_equal(want, pic)
    others = [i for i in range(len(frames)) if i not in (0, 6)]
    np.testing.assert_array_equal(plain[others], rendered[others])  # only the key frames change


def test_render_keys_is_part_of_the_config_only_when_set() -> None:
    assert "render_keys" not in MRDAC(num_kp=4, size=SIZE).config_dict()
    assert MRDAC(num_kp=4, size=SIZE, render_keys=True).config_dict()["render_keys"] is True
    with pytest.raises(ConfigError):
        MRDAC(num_kp=4, size=SIZE, render_keys=1)  # type: ignore[arg-type]
