"""A call over WebRTC (aiortc, ``pip install 'avfc[live]'``): the units of a live avfc stream on a data
channel that neither retransmits nor keeps order (``ordered=False, maxRetransmits=0``), as a real-time
app would carry them, so a lost unit stays lost and the decoder conceals it.

    python examples/live_webrtc.py [INPUT] [--kbps 5] [--seconds 6] [--packet 0.48] [--refresh 2]
                                   [--loss 0.05] [--seed 0] [--out received.mp4] [--smoke]

Both peers run in this process and connect over the loopback (no STUN or TURN server; ICE is kept on
127.0.0.1, which aioice leaves out by default: see ``loopback_only``). The sender reads a video at
real-time pace (INPUT: any file FFmpeg reads; without one, a synthetic face), encodes it with the
streaming Encoder (one-pass rate control, a REFRESH every ``--refresh`` s) and sends each unit as one
message; the receiver decodes each message as it arrives with the streaming Decoder (``join=True``: had it
lost the sequence header it would start at the next REFRESH) and plays frames and speech as they come. A
loopback loses nothing, so ``--loss`` drops that share of the units at the sender (fixed ``--seed``; the
first message, the preamble and header, is never dropped) to stand for the network's losses.

It reports the units sent, dropped and received, what the decoder concealed, the end-to-end latency per
frame (capture to display, one clock) and the quality of what was shown against the lossless decode of
everything sent (PSNR). ``benchmarks/loss.py`` measures the same loss on real clips. ``--smoke``: 2 s of a
synthetic face with the untrained ``tiny-test`` model at 64x64 and 10 % loss; without aiortc it says so
and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np

import avfc
from avfc import bitstream as bs
from avfc.api import prepare
from avfc.media import read_media, write_media
from avfc.media.synthetic import speech_like, talking_face


def loopback_only() -> None:
    """Keep ICE on 127.0.0.1: both peers are in this process (a real app leaves ICE as it is)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class UnitSplitter:
    """Cuts the encoder's bytes into messages: the preamble with the sequence header, then one unit each."""

    def __init__(self) -> None:
        self._parser = bs.StreamParser()
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """(message, droppable) for every unit completed by ``data``."""
        self._buf += data
        out = []
        for ev in self._parser.feed(data):
            if not isinstance(ev, bs.Unit):
                continue
            end = ev.offset + ev.size
            header = ev.type == bs.UnitType.SEQUENCE_HEADER
            start = self._base if header else ev.offset  # the preamble travels with the header
            out.append((bytes(self._buf[start - self._base:end - self._base]), not header))
            del self._buf[:end - self._base]
            self._base = end
        return out


class Receiver:
    """The far end: decodes each message as it arrives, records when each frame could be shown."""

    def __init__(self, captured: dict[int, float]) -> None:
        self.dec = avfc.Decoder(join=True)
        self.captured = captured
        self.frames: list[np.ndarray] = []
        self.latencies: list[float] = []
        self.audio: list[np.ndarray] = []
        self.messages = 0
        self._pool = ThreadPoolExecutor(1)  # decoding off the event loop, in arrival order

    def on_message(self, message: Any) -> None:
        self.messages += 1
        self._pool.submit(self._decode, bytes(message))

    def _decode(self, data: Optional[bytes]) -> None:
        if data is None:
            self.dec.close()
        else:
            self.dec.push(data)
        now = time.monotonic()
        frames = self.dec.pull_frames()
        first = self.dec.first_frame + len(self.frames)
        self.latencies += [now - self.captured[first + k] for k in range(len(frames)) if first + k in self.captured]
        self.frames.extend(frames)
        pcm = self.dec.pull_audio()
        if pcm is not None and len(pcm):
            self.audio.append(pcm)  # a player would queue these samples now

    def finish(self) -> None:
        self._pool.submit(self._decode, None).result()
        self._pool.shutdown()


def source(path: Optional[str], seconds: float, size: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames at the coded size and 16 kHz speech: from a file, or a synthetic face."""
    if path is None:
        n = int(seconds * fps)
        return talking_face(n, size, size), speech_like(n / fps)
    media = read_media(path, fps=fps, sample_rate=16000, max_frames=int(seconds * fps))
    frames, _ = prepare(media, avfc.EncoderConfig(size=size, fps=fps))
    pcm = media.audio if media.audio is not None else np.zeros(int(len(frames) / fps * 16000), np.float32)
    return frames, pcm


async def call(args: argparse.Namespace, cfg: avfc.EncoderConfig, frames: np.ndarray, pcm: np.ndarray,
               fps: int) -> dict:
    from aiortc import RTCConfiguration, RTCPeerConnection

    loopback_only()
    sender, receiver_pc = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    channel = sender.createDataChannel("avfc", ordered=False, maxRetransmits=0)
    captured: dict[int, float] = {}
    far = Receiver(captured)
    receiver_pc.on("datachannel", lambda ch: ch.on("message", far.on_message))
    opened = asyncio.Event()
    channel.on("open", opened.set)
    # signalling: both descriptions in this process (aiortc gathers its candidates before answering)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver_pc.setRemoteDescription(sender.localDescription)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender.setRemoteDescription(receiver_pc.localDescription)
    await asyncio.wait_for(opened.wait(), 20)

    enc = avfc.Encoder(cfg)
    splitter, rng = UnitSplitter(), np.random.default_rng(args.seed)
    sent = dropped = nbytes = 0
    everything: list[bytes] = []  # what was sent, for the lossless decode at the end
    pool = ThreadPoolExecutor(1)  # encoding off the event loop
    loop = asyncio.get_running_loop()
    spf = 16000 // fps

    def encode(i: int) -> bytes:
        enc.push_frames(frames[i][None])
        enc.push_audio(pcm[i * spf:(i + 1) * spf])
        return enc.read()

    def close() -> bytes:
        enc.close()
        return enc.read()

    def send(data: bytes) -> None:
        nonlocal sent, dropped, nbytes
        for message, droppable in splitter.feed(data):
            everything.append(message)
            nbytes += len(message)
            if droppable and rng.random() < args.loss:
                dropped += 1  # lost on the way
                continue
            channel.send(message)
            sent += 1

    t0 = time.monotonic()
    for i in range(len(frames)):  # a capture loop at real-time pace
        await asyncio.sleep(max(0.0, t0 + i / fps - time.monotonic()))
        captured[i] = time.monotonic()
        send(await loop.run_in_executor(pool, encode, i))
    send(await loop.run_in_executor(pool, close))
    pool.shutdown()
    await asyncio.sleep(0.5)  # the last messages in flight
    await loop.run_in_executor(None, far.finish)
    await sender.close()
    await receiver_pc.close()

    lossless = avfc.decode(b"".join(everything))
    assert lossless.frames is not None
    shown = np.stack(far.frames) if far.frames else np.zeros((0,) + lossless.frames.shape[1:], np.uint8)
    n = min(len(shown), len(lossless.frames))
    mse = float(((shown[:n].astype(np.float64) - lossless.frames[:n].astype(np.float64)) ** 2).mean()) if n else 0.0
    kinds: dict[str, int] = {}
    for issue in far.dec.issues:
        kinds[issue.kind] = kinds.get(issue.kind, 0) + 1
    lat = sorted(far.latencies)
    duration = len(frames) / fps
    return {
        "seconds": duration, "kbps": nbytes * 8 / 1000 / duration, "units": len(everything), "dropped": dropped,
        "sent": sent, "received": far.messages, "frames": len(far.frames), "first_frame": far.dec.first_frame,
        "frames_sent": len(frames), "changed_frames": int(sum(
            not np.array_equal(a, b) for a, b in zip(shown[:n], lossless.frames[:n]))),
        "psnr_vs_lossless": math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse),
        "issues": kinds, "audio_s": sum(map(len, far.audio)) / 16000,
        "median_latency_ms": 1000 * statistics.median(lat) if lat else None,
        "p90_latency_ms": 1000 * lat[int(0.9 * (len(lat) - 1))] if lat else None,
        "received_frames": shown,
    }


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?")
    p.add_argument("--kbps", type=float, default=5.0, help="target rate, every byte counted (default 5)")
    p.add_argument("--seconds", type=float, default=6.0, help="length of the call (default 6)")
    p.add_argument("--packet", type=float, default=0.48, help="seconds per motion/audio packet (default 0.48)")
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--effort", default="live", help="encoder effort (default live: real time on a CPU)")
    p.add_argument("--loss", type=float, default=None, help="share of units lost on the way (default 0.05; "
                   "--smoke: 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the losses")
    p.add_argument("--out", help="write what the receiver showed to this .mp4")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    try:
        import aiortc  # noqa: F401
    except ImportError:
        print("aiortc is not installed: pip install 'avfc[live]' (nothing run)")
        if args.smoke:
            return {}
        raise SystemExit(1)
    fps, size, model = 25, 256, {}
    if args.smoke:
        args.seconds, args.refresh, args.packet, size = 2.0, 0.8, 0.2, 64
        args.loss = 0.1 if args.loss is None else args.loss
        model = {"model": "tiny-test", "effort": "detector"}
    args.loss = 0.05 if args.loss is None else args.loss
    frames, pcm = source(args.input, args.seconds, size, fps)
    packet = max(1, round(args.packet * fps))
    cfg = avfc.EncoderConfig(**{"size": size, "fps": fps, "bitrate_kbps": args.kbps, "packet_frames": packet,
                                "refresh_interval": args.refresh, "effort": args.effort, "crop": "none", **model})
    report = asyncio.run(call(args, cfg, frames, pcm, fps))
    shown = report.pop("received_frames")
    lat = report["median_latency_ms"]
    print(f"sent {report['units']} units ({report['kbps']:.2f} kbps), {report['dropped']} dropped on the way "
          f"({100 * args.loss:g} % asked), {report['received']} received")
    print(f"shown {report['frames']} of {report['frames_sent']} frames from frame {report['first_frame']}, "
          f"{report['changed_frames']} differ from the lossless decode (PSNR against it "
          f"{report['psnr_vs_lossless']:.2f} dB); {report['audio_s']:.2f} s of speech; concealed: {report['issues']}")
    print(f"latency median {lat if lat is not None else float('nan'):.0f} ms, p90 "
          f"{report['p90_latency_ms'] or float('nan'):.0f} ms (packets of {packet / fps:.2f} s)")
    if args.out and len(shown):
        write_media(args.out, shown, fps)
    return report


if __name__ == "__main__":
    main()
