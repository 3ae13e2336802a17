"""Write the golden .avfc files and their expected decode (run once per format version).

    python tests/golden/make_golden.py            # writes only files that do not exist yet

Golden files are never regenerated: a later avfc must decode the files committed here to the
same hashes (tests/golden/test_golden.py). A new format version adds new files beside them.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent

#: name -> encoder settings; frames and audio are synthetic (avfc.media.synthetic; ``source``: their size
#: when not ``size`` square). Every setting whose default changed later (kp_precision 7 -> 6 -> 5,
#: kp_hysteresis 0 -> 0.3, motion_hold off -> on, format_major 1 -> 2) is pinned to what the file used
#: (files written before motion_hold existed had it off).
STREAMS = {
    "v1_0-codec2-av1": dict(n=30, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1", key_qp=35,
                            packet_frames=10, kp_precision=7, kp_hysteresis=0.0, format_major=1),
    "v1_0-opus-hevc-keys": dict(n=40, size=64, model="tiny-test", audio="opus", opus_bitrate=6000, key_codec="hevc", key_qp=35,
                                key_interval=20, intra_period=2, side_info=True, max_refs=2, packet_frames=8,
                                kp_precision=7, kp_hysteresis=0.0, format_major=1),
    "v1_0-video-only": dict(n=20, size=96, model="tiny-test", audio="none", key_codec="av1", key_qp=45, kp_precision=6,
                            packet_frames=7, kp_hysteresis=0.0, format_major=1),
    # format 1.1 (AVCC bundle avcc-mrdac-cpu-v1)
    "v1_1-context-predicted": dict(n=60, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                                   key_qp=35, packet_frames=25, intra_period=2, audio_coder="context",
                                   motion_source="predicted", avcc="avcc-mrdac-cpu-v1", kp_precision=6,
                                   kp_hysteresis=0.0, format_major=1),
    "v1_1-lips-from-speech": dict(n=40, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                                  key_qp=35, key_interval=20, max_refs=2, audio_coder="context",
                                  motion_source="speech", avcc="avcc-mrdac-cpu-v1", kp_precision=6,
                                  kp_hysteresis=0.0, format_major=1),
    # format 1.2: sparse motion (every 3rd frame coded, the rest interpolated; a 4-frame last packet)
    "v1_2-sparse-motion": dict(n=34, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                               key_qp=35, packet_frames=10, intra_period=2, motion_stride=3, kp_precision=5,
                               kp_hysteresis=0.3, motion_hold=False, format_major=1),
    # format 1.3: lips from speech drawn by the diffusion model of avcc-mrdac-cpu-v3 (3 blocks, the last
    # partial; a second key frame inside block 1)
    "v1_3-diffusion-lips": dict(n=60, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                                key_qp=35, key_interval=30, max_refs=2, audio_coder="context", motion_source="speech",
                                lips_model="diffusion", diffusion_steps=4, diffusion_seed=2026,
                                avcc="avcc-mrdac-cpu-v3", kp_precision=5, kp_hysteresis=0.3, motion_hold=False,
                                format_major=1),
    # format 2.0: the compact layout (CRC-16 units, varint fields, 8-byte hash prefixes). A plain stream; a
    # cropped 96x64 source with sparse motion and three key frames (the CROP flag); context-coded audio with
    # speech-predicted motion (the AVCC extension)
    "v2_0-codec2-av1": dict(n=40, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                            key_qp=35, packet_frames=10, kp_precision=5, kp_hysteresis=0.3, motion_hold=False),
    "v2_0-cropped-sparse-keys": dict(n=45, size=64, source=(96, 64), crop="center", model="tiny-test", audio="none",
                                     key_codec="av1", key_qp=40, key_interval=20, max_refs=2, packet_frames=15,
                                     motion_stride=2, intra_period=2, kp_precision=5, kp_hysteresis=0.3,
                                     motion_hold=False),
    "v2_0-context-predicted": dict(n=50, size=64, model="tiny-test", audio="codec2", codec2_mode="700C",
                                   key_codec="av1", key_qp=35, packet_frames=25, audio_coder="context",
                                   motion_source="predicted", avcc="avcc-mrdac-cpu-v3", kp_precision=5,
                                   kp_hysteresis=0.3, motion_hold=False),
    # format 2.0, bi-directional with the only key frame after frame 0 (EncoderConfig.first_key): the frames before
    # it are drawn from it (docs/bitstream.md E.2; written 2026-12-07, decoded the same by avfc 0.2.0)
    "v2_0-first-key": dict(n=30, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                           key_qp=35, packet_frames=10, kp_precision=5, kp_hysteresis=0.3, motion_hold=False,
                           effort="live", first_key=12),
    # format 2.1: random access, a REFRESH (and a key frame, the reference buffer emptied) every 0.4 s = 10
    # frames: at frames 10, 20 and 30
    "v2_1-refresh": dict(n=40, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                         key_qp=40, packet_frames=5, kp_precision=5, kp_hysteresis=0.3, motion_hold=False,
                         effort="live", refresh_interval=0.4),
    # format 2.2: decoder parameters (tiny-test's 6: a gain and an offset per colour) fitted by the encoder,
    # sent before frame 0 and again after the REFRESH at frame 15
    "v2_2-decoder-params": dict(n=30, size=64, model="tiny-test", audio="codec2", codec2_mode="700C",
                                key_codec="av1", key_qp=40, packet_frames=5, kp_precision=5, kp_hysteresis=0.3,
                                motion_hold=False, effort="live", refresh_interval=0.6, adapt_decoder=True),
    # format 2.3: REFRESH with the AVCC modes (context-coded audio, speech-predicted motion): at frames 10, 20
    # and 30 the predictor's audio history restarts (the packet there reads no audio before it); every third
    # packet INTRA, and every packet at a REFRESH
    "v2_3-refresh-avcc": dict(n=40, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                              key_qp=40, packet_frames=5, intra_period=3, audio_coder="context",
                              motion_source="predicted", avcc="avcc-mrdac-cpu-v3", kp_precision=5,
                              kp_hysteresis=0.3, motion_hold=False, effort="live", refresh_interval=0.4),
    # ... and lips from speech with the regressor: the frames after each REFRESH (10, 20, 30) read no audio
    # before it (here the restart changes the keypoints of some of them); key frames only at the REFRESH units
    "v2_3-refresh-lips": dict(n=40, size=64, model="tiny-test", audio="codec2", codec2_mode="700C", key_codec="av1",
                              key_qp=40, packet_frames=5, max_refs=2, audio_coder="context", motion_source="speech",
                              avcc="avcc-mrdac-cpu-v2", kp_precision=5, kp_hysteresis=0.3, motion_hold=False,
                              effort="live", refresh_interval=0.4),
}


#: the shipped animation models (the default first), each at its own size (256) with format 2.0: a few frames of
#: the synthetic face, coded with the detector's keypoints (effort live) so that only the model's render is
#: floating point. The rendered frames are kept beside each file (MODEL_FRAMES) and must come back within
#: FRAME_TOLERANCE levels at every pixel, whatever the thread count (tests/golden/test_golden.py)
MODEL_STREAMS = {
    f"v2_0-model-{model}": dict(n=8, size=256, model=model, audio="codec2" if model == "mrdac-cpu-v3" else "none",
                                codec2_mode="700C", key_codec="av1", key_qp=45, packet_frames=4, effort="live",
                                kp_precision=5, kp_hysteresis=0.3, motion_hold=False)
    for model in ("mrdac-cpu-v3", "mrdac-cpu-v2", "mrdac-cpu-v1", "mrdac-cpu-v4", "mrdac-cpu-v6")
}
#: the largest difference allowed at any pixel of a shipped model's rendered frames (8-bit levels)
FRAME_TOLERANCE = 2
#: the rendered frames kept of a model stream (its first, middle and last), stored in MODEL_FRAMES as their
#: difference from the stream's first key picture (an exact integer decode) modulo 256, an .npy compressed
#: with LZMA (about 23 kB a frame: a render's noise does not compress further; a frame a model without
#: render_keys shows as its key picture costs nothing)
CHECKED_FRAMES = (0, 4, 7)
MODEL_FRAMES = "{name}.frames.npy.xz"


def key_pictures(data: bytes) -> dict[int, np.ndarray]:
    """Each key frame's decoded picture (the intra codec's integer output), by frame index."""
    from avfc import bitstream as bs
    from avfc.codec.common import KEY_CODEC_NAMES
    from avfc.media import decode_intra

    parsed = bs.parse_stream(data)
    h = parsed.header
    codec = KEY_CODEC_NAMES[int(h.key_codec)]
    out = {}
    for u in parsed.units:
        if u.type == bs.UnitType.KEY_FRAME:
            kf = bs.decode_payload(u, parsed.version[0])
            out[int(kf.frame_index)] = decode_intra(kf.data, codec, int(h.width), int(h.height))
    return out


def pack_frames(frames: np.ndarray, data: bytes) -> bytes:
    """The contents of MODEL_FRAMES for the rendered ``frames`` of stream ``data`` (CHECKED_FRAMES of them)."""
    delta = (frames[list(CHECKED_FRAMES)].astype(np.int16) - key_pictures(data)[0]).astype(np.uint8)
    buf = io.BytesIO()
    np.save(buf, delta, allow_pickle=False)
    return lzma.compress(buf.getvalue(), preset=9)


def unpack_frames(packed: bytes, data: bytes) -> np.ndarray:
    """The CHECKED_FRAMES rendered frames that :func:`pack_frames` stored."""
    delta = np.load(io.BytesIO(lzma.decompress(packed)), allow_pickle=False)
    return (delta.astype(np.int16) + key_pictures(data)[0]).astype(np.uint8)


def describe_model(data: bytes) -> dict:
    """:func:`describe` for a shipped model's stream: the key pictures hashed as the intra codec decodes them
    (a model with ``render_keys`` shows its render of a key frame, which is floating point)."""
    out = describe(data)
    del out["key_frames_sha256"]
    out["key_pictures_sha256"] = {str(i): hashlib.sha256(np.ascontiguousarray(p).tobytes()).hexdigest()
                                  for i, p in key_pictures(data).items()}
    return out


def decoded_frames(data: bytes) -> np.ndarray:
    from avfc.codec import Decoder

    dec = Decoder()
    dec.push(data)
    dec.close()
    return dec.pull_frames()


def token_digest(tokens: dict) -> str:
    """sha256 over the audio tokens in frame order: ints as 8 big-endian bytes, bytes length-prefixed."""
    h = hashlib.sha256()
    for i in sorted(tokens):
        t = tokens[i]
        if isinstance(t, int):
            h.update(b"I" + t.to_bytes(8, "big"))
        else:
            h.update(b"B" + len(t).to_bytes(2, "big") + bytes(t))
    return h.hexdigest()


def describe(data: bytes) -> dict:
    """Everything a decode of ``data`` must reproduce (integers exactly, pixels by summary)."""
    from avfc import bitstream as bs
    from avfc.codec import Decoder

    dec = Decoder(keep_motion=True)
    dec.push(data)
    dec.close()
    frames = dec.pull_frames()
    # what each key frame shows: the decoder outputs its key picture itself at its index
    parsed = bs.parse_stream(data)
    key_indices = sorted({int(bs.decode_payload(u, parsed.version[0]).frame_index) for u in parsed.units
                          if u.type == bs.UnitType.KEY_FRAME})
    keys = {str(i): hashlib.sha256(np.ascontiguousarray(frames[i]).tobytes()).hexdigest() for i in key_indices
            if i < len(frames)}
    audio = dec.audio()
    params = [bs.decode_payload(u, parsed.version[0]) for u in parsed.units if u.type == bs.UnitType.DECODER_PARAMS]
    return {
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "frames": int(len(frames)),
        "motion_sha256": hashlib.sha256(dec.motion_array().astype("<i4").tobytes()).hexdigest(),
        "motion_shape": list(dec.motion_array().shape),
        "key_frames_sha256": keys,
        "audio_tokens_sha256": token_digest(dec.audio_tokens) if dec.audio_tokens else None,
        "audio_samples": None if audio is None else int(len(audio)),
        "issues": [i.message for i in dec.issues],
        # rendered pixels come from a float network: compared with a tolerance, per frame and channel
        "frame_means": np.round(frames.reshape(len(frames), -1, 3).mean(axis=1), 3).tolist(),
        **({"decoder_params": [[p.frame_index, p.param_set, p.shift, list(p.values)] for p in params]} if params else {}),
    }


def main() -> int:
    import avfc
    from avfc.media.synthetic import speech_like, talking_face

    for name, spec in STREAMS.items():
        path = HERE / f"{name}.avfc"
        if path.exists():
            print(f"{path.name} exists: golden files are never regenerated")
            continue
        spec = dict(spec)
        n = spec.pop("n")
        width, height = spec.pop("source", (spec["size"], spec["size"]))
        frames = talking_face(n, width, height, seed=len(name))
        audio = speech_like(n / 25, seed=len(name)) if spec["audio"] != "none" else None
        res = avfc.encode(frames, pcm=audio, **spec)
        path.write_bytes(res.data)
        (HERE / f"{name}.json").write_text(json.dumps(describe(res.data), indent=1) + "\n")
        print(f"wrote {path.name}: {len(res.data)} bytes")
    for name, spec in MODEL_STREAMS.items():
        path = HERE / f"{name}.avfc"
        if path.exists():
            print(f"{path.name} exists: golden files are never regenerated")
            continue
        spec = dict(spec)
        n = spec.pop("n")
        frames = talking_face(n, spec["size"], spec["size"], seed=len(name))
        audio = speech_like(n / 25, seed=len(name)) if spec["audio"] != "none" else None
        res = avfc.encode(frames, pcm=audio, **spec)
        path.write_bytes(res.data)
        (HERE / f"{name}.json").write_text(json.dumps(describe_model(res.data), indent=1) + "\n")
        (HERE / MODEL_FRAMES.format(name=name)).write_bytes(pack_frames(decoded_frames(res.data), res.data))
        print(f"wrote {path.name}: {len(res.data)} bytes")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
