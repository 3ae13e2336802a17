"""What REFRESH costs in the AVCC modes (format 2.3): bytes per unit type of the same clip coded with
speech-predicted motion and context-coded audio, without and with a REFRESH every ``--interval`` seconds, and the
motion bytes the 2.3 restart adds (each MOTION_PRED packet at a REFRESH coded again with the audio rows before
the refresh, as a coder without the restart would read them; the difference is exact).

    python benchmarks/refresh_avcc.py --clips ../shared/data/av2/mimictalk_German_20s.mp4,... \
        [--frames 250] [--interval 2] [--key-qp 40] [--out refresh_avcc.jsonl]

Per clip: the first ``--frames`` frames, face crop, 256x256, Codec2 700C, the default model and bundle, key
QP fixed (so the key pictures are comparable), effort live. JSON lines on stdout (and ``--out``), then a
markdown table. ``--smoke``: ``tiny-test`` on one synthetic 30-frame clip (a check that the script runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def unit_bytes(data: bytes) -> dict[str, int]:
    """Bytes per unit type, framing included (type, length, CRC), the preamble and header under "header"."""
    from avfc import bitstream as bs

    parsed = bs.parse_stream(data)
    out = {"header": parsed.units[0].offset if parsed.units else len(data)}
    ends = [u.offset for u in parsed.units[1:]] + [len(data)]
    for u, end in zip(parsed.units, ends):
        name = bs.UnitType(u.type).name.lower()
        out[name] = out.get(name, 0) + end - u.offset
    return out


def restart_cost(data: bytes) -> tuple[int, int]:
    """(packets at a REFRESH, bytes they take minus what they would take reading the audio before it)."""
    from avfc import bitstream as bs
    from avfc.avcc.motion_pred import encode_predicted_motion
    from avfc.avcc.tokens import split_700c
    from avfc.codec import Decoder
    from avfc.codec.common import audio_rows

    dec = Decoder(keep_motion=True)
    dec.push(data)
    dec.close()
    assert dec.avcc is not None and not dec.issues, dec.issues
    h = dec.avcc.motion.history
    fields = [np.asarray(split_700c(int(dec.audio_tokens[k])), np.int64) for k in sorted(dec.audio_tokens)]
    parsed = bs.parse_stream(data)
    at = {bs.decode_payload(u, 2).frame_index for u in parsed.units if u.type == bs.UnitType.REFRESH}
    packets = extra = 0
    for u in parsed.units:
        if u.type != bs.UnitType.MOTION_PRED:
            continue
        m = bs.decode_payload(u, 2)
        a, n = int(m.first_frame), int(m.num_frames)
        if a not in at:
            continue
        q = np.stack([dec.motion[a + i] for i in range(n)]).astype(np.int32)
        without = encode_predicted_motion(q, dec.avcc.motion, audio_rows(fields, a - h, a + n), None)
        packets += 1
        extra += len(m.data) - len(without)
    return packets, extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="", help="comma-separated media files with speech")
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--interval", type=float, default=2.0, help="REFRESH interval in seconds")
    ap.add_argument("--key-qp", type=int, default=40)
    ap.add_argument("--out", help="also write the JSON lines here")
    ap.add_argument("--smoke", action="store_true", help="tiny-test on a synthetic clip")
    args = ap.parse_args(argv)

    import avfc
    from avfc.avcc.zoo import DEFAULT_AVCC

    settings = dict(motion_source="predicted", audio_coder="context", audio="codec2", codec2_mode="700C",
                    key_qp=args.key_qp, effort="live", max_frames=args.frames)
    if args.smoke:
        from avfc.media.synthetic import speech_like, talking_face

        settings.update(model="tiny-test", size=64, avcc=DEFAULT_AVCC, packet_frames=5, crop="none")
        settings.pop("max_frames")
        inputs = [("synthetic", talking_face(30, 64, 64, seed=1), speech_like(30 / 25, seed=1))]
        args.interval = 0.4
    else:
        inputs = [(Path(c).stem, c, None) for c in args.clips.split(",") if c]
    if not inputs:
        ap.error("--clips (or --smoke)")
    rows = []
    for name, src, pcm in inputs:
        plain = avfc.encode(src, pcm=pcm, **settings).data
        refreshed = avfc.encode(src, pcm=pcm, refresh_interval=args.interval, **settings).data
        packets, extra = restart_cost(refreshed)
        row = dict(clip=name, interval_s=args.interval, bytes=len(plain), bytes_refresh=len(refreshed),
                   units=unit_bytes(plain), units_refresh=unit_bytes(refreshed), refresh_packets=packets,
                   restart_extra_bytes=extra)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    kinds = sorted({k for r in rows for k in (*r["units"], *r["units_refresh"])})
    print("\n| clip | refresh | total | " + " | ".join(kinds) + " | restart: packets, extra bytes |")
    print("| --- " * (len(kinds) + 4) + "|")
    for r in rows:
        for tag, key, total in (("none", "units", r["bytes"]), (f"{r['interval_s']} s", "units_refresh",
                                                                  r["bytes_refresh"])):
            cost = f"{r['refresh_packets']}, {r['restart_extra_bytes']}" if key == "units_refresh" else ""
            print(f"| {r['clip']} | {tag} | {total} | " + " | ".join(str(r[key].get(k, 0)) for k in kinds)
                  + f" | {cost} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
