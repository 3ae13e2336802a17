"""``avfc info``: what a stream holds and where its bits go. Needs no model."""

from __future__ import annotations

from typing import Any

from avfc import bitstream as bs
from avfc.codec.common import KEY_CODEC_NAMES
from avfc.errors import AvfcError

_AUDIO_NAMES = {int(bs.AudioCodecId.NONE): "none", int(bs.AudioCodecId.CODEC2): "codec2",
                int(bs.AudioCodecId.OPUS): "opus"}


def _unit_name(t: int) -> str:
    try:
        return bs.UnitType(t).name.lower()
    except ValueError:
        return f"unknown_{t:#04x}"


def stream_info(data: bytes, join: bool = False) -> dict[str, Any]:
    """Header fields, unit counts and bytes, rates per unit type, the key frames' frames, damages (JSON-ready).

    ``join``: the bytes may start anywhere in a 2.1 stream (what a receiver that joined late holds): without
    an intact sequence header first, the stream is described from its first intact REFRESH unit, as
    ``Decoder(join=True)`` decodes it: ``first_frame`` is that REFRESH's frame, ``skipped_bytes`` what came
    before it, and the frames, duration, bytes and rates count from there on.
    """
    parsed = bs.parse_stream(data, join=join)
    h = parsed.header
    fps = h.fps_num / h.fps_den
    first = int(parsed.first_frame)
    frames = int(h.frame_count)
    for u in parsed.units:
        if u.type == bs.UnitType.END_OF_STREAM:
            try:
                p = bs.decode_payload(u, parsed.version[0])
            except AvfcError:  # a malformed END_OF_STREAM is damage, as for the decoder: the header's count
                continue
            if isinstance(p, bs.EndOfStream):  # what decode_payload gives an END_OF_STREAM unit
                frames = int(p.frame_count)
    # a joined stream (no intact sequence header first) is described from its first intact REFRESH unit,
    # where the decoder starts: the bytes before it are skipped
    units_read = [e for e in _events(data, join) if isinstance(e, bs.Unit)]
    joined = join and bool(units_read) and units_read[0].type != bs.UnitType.SEQUENCE_HEADER
    start = next(u.offset for u in units_read if u.type == bs.UnitType.REFRESH) if joined else 0
    frames = max(frames - first, 0)
    duration = frames / fps if fps > 0 else 0.0
    units: dict[str, dict[str, Any]] = {}
    # every byte counts: the preamble and each unit's type, length and CRC fields go to its type
    if start == 0:
        units["preamble"] = {"count": 1, "bytes": len(bs.MAGIC) + 2}
    for u in (e for e in units_read if e.offset >= start):
        size = u.size
        name = _unit_name(u.type)
        entry = units.setdefault(name, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += size
    keys = []  # the frames of the intact key frames (a malformed payload is damage, as for the decoder)
    for u in (e for e in units_read if e.offset >= start and e.type == bs.UnitType.KEY_FRAME):
        try:
            kf = bs.decode_payload(u, parsed.version[0])
        except AvfcError:
            continue
        if isinstance(kf, bs.KeyFrame):
            keys.append(int(kf.frame_index))
    for entry in units.values():
        entry["kbps"] = entry["bytes"] * 8 / 1000 / duration if duration else 0.0
        entry["bits_per_frame"] = entry["bytes"] * 8 / frames if frames else 0.0
    header = h.model_dump(mode="json")
    audio = _AUDIO_NAMES.get(int(h.audio_codec), f"id {int(h.audio_codec)}")
    if audio == "codec2":
        audio += f" {h.audio_param if h.audio_param != 700 else '700C'} ({h.audio_sample_rate} Hz)"
    elif audio == "opus":
        audio += f" {h.audio_param} bps ({h.audio_sample_rate} Hz)"
    avcc: dict[str, Any] | None = None
    if getattr(h, "avcc_name", None) is not None:
        avcc = {"bundle": h.avcc_name, "sha256": h.avcc_sha256,
                "audio_coder": bs.AudioCoder(int(h.audio_coder)).name.lower(),
                "motion_source": bs.MotionSource(int(h.motion_source)).name.lower()}
        if getattr(h, "diffusion_lips", False):
            avcc.update(diffusion_steps=int(h.diffusion_steps), diffusion_seed=int(h.diffusion_seed))
    return {
        "version": f"{parsed.version[0]}.{parsed.version[1]}",
        "avcc": avcc,
        "header": header,
        "fps": fps,
        "frames": frames,
        "duration": duration,
        "key_codec": KEY_CODEC_NAMES.get(int(h.key_codec), f"id {int(h.key_codec)}"),
        "key_frames": keys,
        "reference_mode": bs.ReferenceMode(int(h.reference_mode)).name.lower().replace("_", "-"),
        "audio": audio,
        "first_frame": first,
        "skipped_bytes": start,
        "bytes": len(data) - start,
        "kbps": (len(data) - start) * 8 / 1000 / duration if duration else 0.0,
        "units": units,
        "damages": [{"offset": d.offset, "length": d.length, "reason": str(d.reason)} for d in parsed.damages
                    if d.offset >= start and d.reason is not bs.DamageReason.JOIN],
    }


def _events(data: bytes, join: bool) -> list[bs.Event]:
    parser = bs.StreamParser(join=join)
    return parser.feed(data) + parser.close()
