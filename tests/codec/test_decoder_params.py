"""Format 2.2 through the codec: the encoder fits and sends decoder parameters (DECODER_PARAMS), the decoder
draws with a copy of the model they adapt, from their key frame on (docs/bitstream.md A.15, E.9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import avfc
from avfc import bitstream as bs
from avfc.bitstream.units import encode_unit
from avfc.codec import Decoder
from avfc.codec.adapt import DecoderParamSet, fit_decoder_params
from avfc.codec.encoder import Encoder
from avfc.config import EncoderConfig
from avfc.errors import ConfigError, UnsupportedVersionError
from avfc.media.synthetic import speech_like, talking_face
from avfc.models.zoo import load_model

N, SIZE, MODEL = 30, 64, "tiny-test"
#: packets of 5 frames, a REFRESH at frame 15
SETTINGS = dict(size=SIZE, model=MODEL, audio="codec2", codec2_mode="700C", key_codec="av1", key_qp=40,
                packet_frames=5, motion_hold=False, effort="live", refresh_interval=0.6)


@pytest.fixture(scope="module")
def media():
    frames = talking_face(N, SIZE, SIZE, seed=11)
    # a source whose colours the zoo model cannot draw: the key picture is coded from the plain clip and the
    # frames after it are darker, so a gain and an offset per colour (tiny-test's set) bring the render closer
    dark = frames.copy()
    dark[1:] = np.clip(dark[1:].astype(np.float64) * 0.85 + 4, 0, 255).astype(np.uint8)
    return dark, speech_like(N / 25, seed=11)


@pytest.fixture(scope="module")
def streams(media):
    frames, audio = media
    plain = avfc.encode(frames, pcm=audio, **SETTINGS)
    adapted = avfc.encode(frames, pcm=audio, adapt_decoder=True, **SETTINGS)
    return plain, adapted


def decode(data: bytes, join: bool = False) -> Decoder:
    dec = Decoder(join=join, keep_motion=True)
    dec.push(data)
    dec.close()
    return dec


def units_of(data: bytes) -> list[bs.Unit]:
    return bs.parse_stream(data).units


def params_of(data: bytes) -> list[bs.DecoderParams]:
    return [bs.decode_payload(u, 2) for u in units_of(data) if u.type == bs.UnitType.DECODER_PARAMS]


def with_params(data: bytes, make) -> bytes:
    """``data`` with every DECODER_PARAMS unit's payload replaced by ``make(payload model)`` (None: dropped)."""
    out = bytearray(data[:6])
    parsed = bs.parse_stream(data)
    out += encode_unit(bs.UnitType.SEQUENCE_HEADER, parsed.header.to_bytes(2), 2)
    for u in parsed.units:
        payload = u.payload
        if u.type == bs.UnitType.DECODER_PARAMS:
            new = make(bs.decode_payload(u, 2))
            if new is None:
                continue
            payload = new if isinstance(new, bytes) else new.to_bytes(2)
        out += encode_unit(int(u.type), payload, 2)
    return bytes(out)


def test_the_encoder_sends_them_before_the_first_key_frame_and_after_each_refresh(streams) -> None:
    plain, adapted = streams
    assert plain.data[4:6] == bytes((2, 1)) and not params_of(plain.data)
    assert adapted.data[4:6] == bytes((2, 2))
    types = [u.type for u in units_of(adapted.data)]
    at = [i for i, t in enumerate(types) if t == bs.UnitType.DECODER_PARAMS]
    assert len(at) == 2 and types[at[0] + 1] == bs.UnitType.KEY_FRAME
    assert types[at[1] - 1] == bs.UnitType.REFRESH and types[at[1] + 1] == bs.UnitType.KEY_FRAME
    p = params_of(adapted.data)
    assert [x.frame_index for x in p] == [0, 15] and p[0].values == p[1].values
    assert len(p[0].values) == 6 and any(p[0].values)
    # its bytes are counted: in the stats, and so in the rate
    assert adapted.stats.bytes_by_type["decoder_params"] == sum(len(encode_unit(0x0A, x.to_bytes(2), 2)) for x in p)


def test_the_unit_changes_the_render_as_specified(streams) -> None:
    """tiny-test's set: each rendered colour is ``clamp(warped * (1 + gain) + offset)``. Decoded with the unit
    and with its values zeroed (the zoo's model), the frames differ exactly so (to rounding)."""
    _, adapted = streams
    p = params_of(adapted.data)[0]
    d = np.asarray(p.values, np.float64) * 2.0 ** -p.shift
    gain, offset = d[:3], d[3:]
    with_unit = decode(adapted.data).pull_frames().astype(np.float64)
    zoo = decode(with_params(adapted.data, lambda x: x.model_copy(update={"values": (0,) * 6}))).pull_frames()
    keys = {0, 15}  # key frames show their decoded picture (tiny-test has no render_keys)
    drawn = [i for i in range(N) if i not in keys]
    expected = np.clip(zoo[drawn].astype(np.float64) * (1 + gain) + offset * 255, 0, 255)
    assert np.abs(with_unit[drawn] - expected).max() <= 1.5
    assert np.abs(with_unit[drawn] - zoo[drawn]).mean() > 0.5  # it does change the picture
    assert np.array_equal(with_unit[sorted(keys)], zoo[sorted(keys)])


def test_it_draws_the_clip_closer_and_never_touches_the_zoo_model(streams, media) -> None:
    frames, _ = media
    plain, adapted = streams
    err = [np.abs(decode(r.data).pull_frames().astype(np.float64) - frames).mean() for r in (plain, adapted)]
    assert err[1] < err[0]
    zoo = load_model(MODEL, SIZE)
    assert not zoo.out_gain.any() and not zoo.out_bias.any()  # decoding used a copy
    fit = fit_decoder_params(zoo, plain.data, frames)
    assert fit.params is not None and fit.error_after < fit.error_before
    assert not zoo.out_gain.any()
    mrdac = load_model("mrdac-cpu-v3", 64)
    before = mrdac.decoder.out.bias.clone()
    assert mrdac.adapt_size() == 168
    copy = mrdac.adapted(np.full(168, 0.25))
    assert torch.equal(mrdac.decoder.out.bias, before)
    assert torch.allclose(copy.decoder.out.bias, before + 0.25)


def test_closed_loop_the_encoder_renders_with_the_parameters_it_sends(media) -> None:
    cfg = EncoderConfig(**SETTINGS)
    params = DecoderParamSet(7, (10, 0, 0, 0, 0, -3))
    enc = Encoder(cfg, decoder_params=params)
    zoo = load_model(MODEL, SIZE)
    assert enc.model is not zoo and float(enc.model.out_gain[0]) == 10 / 128 and not zoo.out_gain.any()
    with pytest.raises(ConfigError):
        Encoder(cfg, decoder_params=DecoderParamSet(7, (1, 2, 3)))
    with pytest.raises(ConfigError):
        EncoderConfig.make(adapt_decoder=True, format_major=1)


def test_a_joiner_draws_what_a_full_decoder_draws(streams) -> None:
    _, adapted = streams
    full = decode(adapted.data).pull_frames()
    refresh = next(u for u in units_of(adapted.data) if u.type == bs.UnitType.REFRESH)
    joined = decode(adapted.data[refresh.offset - 2:], join=True)
    assert joined.first_frame == 15 and not [i for i in joined.issues if i.kind != "join"]
    np.testing.assert_allclose(joined.pull_frames().astype(float), full[15:].astype(float), atol=1)


def test_a_refresh_without_the_unit_returns_to_the_zoo_parameters(streams) -> None:
    _, adapted = streams
    seen = []

    def first_only(p: bs.DecoderParams):
        seen.append(p.frame_index)
        return p if p.frame_index == 0 else None

    frames = decode(with_params(adapted.data, first_only)).pull_frames()
    full = decode(adapted.data).pull_frames()
    zoo = decode(with_params(adapted.data, lambda x: None)).pull_frames()
    assert seen == [0, 15]
    assert np.array_equal(frames[:15], full[:15]) and np.array_equal(frames[15:], zoo[15:])
    assert not np.array_equal(frames[16:], full[16:])


def test_bad_units_are_reported_and_the_frames_still_drawn(streams) -> None:
    _, adapted = streams
    zoo = decode(with_params(adapted.data, lambda x: None)).pull_frames()
    for make, kind in ((lambda x: x.model_copy(update={"values": x.values[:5]}), "undecodable"),  # wrong count
                       (lambda x: x.to_bytes(2)[:-1], "damage"),  # ends inside its values
                       (lambda x: bytes((0, 1, 0x80, 0x80, 0x80, 0x80, 1, 7, 0)), "damage")):  # count 2^28
        dec = decode(with_params(adapted.data, make))
        frames = dec.pull_frames()
        assert len(frames) == N and [i for i in dec.issues if i.kind == kind]
        assert np.array_equal(frames, zoo)


def test_a_decoder_refuses_a_minor_it_does_not_know(streams) -> None:
    _, adapted = streams
    data = bytearray(adapted.data)
    data[5] = 4  # version 2.4 (2.3, the cross-modal restart at a REFRESH, is known)
    dec = Decoder()
    with pytest.raises(UnsupportedVersionError, match="2.4"):
        dec.push(bytes(data))
    with pytest.raises(UnsupportedVersionError):
        avfc.decode(bytes(data))
    assert bs.parse_stream(bytes(data)).version == (2, 4)  # the container still frames it
