"""A live call over a local TCP socket: a sender encodes a video at real-time pace with the streaming
Encoder and sends its units as they come; receivers decode with the streaming Decoder and play frames
and speech as they arrive. One receiver is there from the start, one joins late (it starts at the next
refresh), and the first drops its connection mid-call and reconnects (it resumes at the next refresh).

    python examples/live_call.py [INPUT] [--kbps 5] [--seconds 10] [--packet 0.48] [--refresh 2]
                                 [--effort live] [--late 3.0] [--drop 5.0] [--receivers 2] [--no-drop] [--threads 1]
                                 [--out received.mp4] [--smoke]

INPUT is any video FFmpeg reads (a camera device through PyAV works too, e.g. ``/dev/video0``); without
one, a synthetic face. It reports the end-to-end latency per frame (from the moment the sender had the
frame to the moment a receiver could show it: capture-to-display, both in this process, same clock) and
the rate on the wire. All of it runs in this one process: with two receivers the machine decodes the call
twice, so on a 2-core CPU measure the latency of a one-to-one call with ``--receivers 1 --no-drop``
(one sender, one receiver, as each side of a call runs). ``--smoke``: 3 s of a synthetic face with the untrained ``tiny-test`` model at 64x64.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

import avfc
from avfc.api import prepare
from avfc.media import read_media, write_media
from avfc.media.synthetic import speech_like, talking_face


@dataclass
class Receiver:
    """One side of the call: connects, decodes what arrives, records when each frame could be shown."""

    name: str
    port: int
    start_after: float = 0.0  # seconds into the call before it connects
    drop_after: Optional[float] = None  # seconds into the call when its connection drops (then it reconnects)
    shown_at: dict[int, float] = field(default_factory=dict)  # frame index -> when it could be shown
    frames: list[np.ndarray] = field(default_factory=list)
    keep_frames: bool = True  # keep what was shown (for --out); the count is kept either way
    n_frames: int = 0
    _shown: int = 0  # frames shown on the current connection
    first_frames: list[int] = field(default_factory=list)  # the frame each connection started at
    audio_samples: int = 0
    issues: int = 0
    threads: Optional[int] = None  # torch threads this receiver's decoder draws with

    def run(self, t0: float, stop: Any) -> None:
        time.sleep(max(0.0, t0 + self.start_after - time.monotonic()))
        dropped = self.drop_after is None
        while True:
            with socket.create_connection(("127.0.0.1", self.port)) as s:
                s.settimeout(0.05)
                # start at the next refresh wherever the bytes begin; a player shows each frame as soon as the
                # decoder has drawn it (on_frame), not when the whole packet is drawn
                self._shown = 0  # frames shown on this connection
                dec = avfc.Decoder(join=True, threads=self.threads, on_frame=lambda _i: self._take_frames(dec))
                while True:
                    if not dropped and time.monotonic() - t0 >= self.drop_after:
                        dropped = True
                        break  # the connection drops: reconnect and resume at the next refresh
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        if stop.is_set():
                            chunk = b""
                        else:
                            continue
                    if not chunk:  # the call ended
                        dec.close()
                        self._take_frames(dec)
                        self._take_audio(dec)
                        return
                    dec.push(chunk)
                    self._take_frames(dec)
                    self._take_audio(dec)
                self.issues += len(dec.issues)

    def _take_frames(self, dec: "avfc.Decoder") -> None:
        now = time.monotonic()
        frames = dec.pull_frames()
        if len(frames) and self._shown == 0:
            self.first_frames.append(dec.first_frame)
        for k in range(len(frames)):
            self.shown_at[dec.first_frame + self._shown + k] = now
        self._shown += len(frames)
        self.n_frames += len(frames)
        if self.keep_frames:
            self.frames.extend(frames)

    def _take_audio(self, dec: "avfc.Decoder") -> None:
        pcm = dec.pull_audio()
        if pcm is not None:
            self.audio_samples += len(pcm)  # a player would queue these samples now


def _receive_in_process(receiver: Receiver, ready: Any, go: Any, t0: Any, stop: Any, results: Any) -> None:
    """--processes: one receiver in its own process (as the far end of a call runs), started when the call
    starts; what it measured goes back to the sender's process (the clock is the system's monotonic one, the
    same in both)."""
    receiver.keep_frames = False
    if receiver.threads:  # a process that only decodes: its whole torch pool that size (idle pool threads spin)
        import torch

        torch.set_num_threads(receiver.threads)
    ready.set()  # avfc and torch are imported
    go.wait()
    receiver.run(t0.value, stop)
    results.put((receiver.name, receiver.shown_at, receiver.first_frames, receiver.audio_samples,
                 receiver.issues, receiver.n_frames))


def serve(server: socket.socket, clients: list[socket.socket], lock: threading.Lock, stop: threading.Event) -> None:
    server.settimeout(0.05)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except socket.timeout:
            continue
        except OSError:  # the server was closed
            return
        with lock:
            clients.append(conn)  # a new receiver gets the stream from now on: it joins at the next refresh


def broadcast(data: bytes, clients: list[socket.socket], lock: threading.Lock) -> None:
    with lock:
        for c in list(clients):
            try:
                c.sendall(data)
            except OSError:  # that receiver went away
                clients.remove(c)
                c.close()


def source(path: Optional[str], seconds: float, size: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames at the coded size and 16 kHz speech: from a file, or a synthetic face."""
    if path is None:
        n = int(seconds * fps)
        return talking_face(n, size, size), speech_like(n / fps)
    media = read_media(path, fps=fps, sample_rate=16000, max_frames=int(seconds * fps))
    frames, _ = prepare(media, avfc.EncoderConfig(size=size, fps=fps))
    pcm = media.audio if media.audio is not None else np.zeros(int(len(frames) / fps * 16000), np.float32)
    return frames, pcm


def main(argv: Optional[list[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?")
    p.add_argument("--kbps", type=float, default=5.0, help="target rate, every byte counted (default 5)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the call (default 10)")
    p.add_argument("--packet", type=float, default=0.48, help="seconds per motion/audio packet (default 0.48)")
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between refreshes (default 2)")
    p.add_argument("--effort", default="live", help="encoder effort (default live: real time on a CPU)")
    p.add_argument("--late", type=float, default=3.0, help="when the second receiver joins (s)")
    p.add_argument("--drop", type=float, default=5.0, help="when the first receiver's connection drops (s)")
    p.add_argument("--no-drop", action="store_true", help="the first receiver's connection never drops")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the encoder and of each decoder (default 1: in one process on a small "
                        "CPU, each keeps its own core; 0: torch's setting)")
    p.add_argument("--receivers", type=int, choices=(1, 2), default=2,
                   help="1: only the first receiver (a one-to-one call); 2: and one that joins late (default)")
    p.add_argument("--processes", action="store_true",
                   help="run each receiver in its own process, as the far end of a call runs (else threads of "
                        "this one, sharing its interpreter with the sender)")
    p.add_argument("--out", help="write what the first receiver showed to this .mp4 (receivers in threads)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    fps, size, model = 25, 256, {}
    if args.smoke:
        args.seconds, args.late, args.drop, args.refresh, size = 3.0, 1.0, 1.6, 1.0, 64
        model = {"model": "tiny-test", "effort": "detector"}
    frames, pcm = source(args.input, args.seconds, size, fps)
    packet = max(1, round(args.packet * fps))
    cfg = avfc.EncoderConfig(**{"size": size, "fps": fps, "bitrate_kbps": args.kbps, "packet_frames": packet,
                                "refresh_interval": args.refresh, "effort": args.effort, "crop": "none",
                                "threads": args.threads or None, **model})
    if args.threads:  # the sender's whole torch pool that size too (idle pool threads spin on a small CPU)
        import torch

        torch.set_num_threads(args.threads)
    enc = avfc.Encoder(cfg)

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    clients: list[socket.socket] = []
    lock, stop = threading.Lock(), threading.Event()
    captured: dict[int, float] = {}  # frame index -> when the sender had it
    n_threads = args.threads or None
    receivers = [Receiver("first", port, drop_after=None if args.no_drop else args.drop, threads=n_threads),
                 Receiver("late", port, start_after=args.late, threads=n_threads)][:args.receivers]
    workers: list[Any] = [threading.Thread(target=serve, args=(server, clients, lock, stop), daemon=True)]
    if args.processes:  # each receiver imports avfc and torch in its own process before the call starts
        ctx = multiprocessing.get_context("spawn")
        pstop, go, results, t0_shared = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Value("d", 0.0)
        ready = [ctx.Event() for _ in receivers]
        workers += [ctx.Process(target=_receive_in_process, args=(r, e, go, t0_shared, pstop, results), daemon=True)
                    for r, e in zip(receivers, ready)]
        for w in workers:
            w.start()
        for e in ready:
            e.wait(timeout=120)
        t0 = t0_shared.value = time.monotonic()
        go.set()
    else:
        t0 = time.monotonic()
        workers += [threading.Thread(target=r.run, args=(t0, stop), daemon=True) for r in receivers]
        for w in workers:
            w.start()
    time.sleep(0.1)  # the first receiver connects
    sent = 0
    spf = 16000 // fps
    for i, frame in enumerate(frames):  # a capture loop at real-time pace
        time.sleep(max(0.0, t0 + 0.1 + i / fps - time.monotonic()))
        captured[i] = time.monotonic()
        enc.push_frames(frame[None])
        enc.push_audio(pcm[i * spf:(i + 1) * spf])
        data = enc.read()
        if data:
            sent += len(data)
            broadcast(data, clients, lock)
    enc.close()
    data = enc.read()
    sent += len(data)
    broadcast(data, clients, lock)
    stop.set()
    if args.processes:
        pstop.set()
    with lock:
        for c in clients:
            c.close()
    if args.processes:
        by_name = {r.name: r for r in receivers}
        for _ in receivers:
            name, shown_at, first_frames, audio_samples, issues, n_frames = results.get(timeout=60)
            r = by_name[name]
            r.shown_at, r.first_frames, r.audio_samples, r.issues, r.n_frames = (
                shown_at, first_frames, audio_samples, issues, n_frames)
    for w in workers:
        w.join(timeout=30)
    server.close()

    duration = len(frames) / fps
    report = {"seconds": duration, "kbps": sent * 8 / 1000 / duration, "packet_s": packet / fps}
    for r in receivers:
        lat = sorted(t - captured[i] for i, t in r.shown_at.items() if i in captured)
        report[r.name] = {
            "frames": r.n_frames, "started_at": r.first_frames,
            "median_latency_ms": 1000 * statistics.median(lat) if lat else None,
            "p90_latency_ms": 1000 * lat[int(0.9 * (len(lat) - 1))] if lat else None,
            "audio_s": r.audio_samples / 16000,
        }
        print(f"{r.name:5s}: {r.n_frames} frames from frame(s) {r.first_frames}, latency median "
              f"{report[r.name]['median_latency_ms'] or float('nan'):.0f} ms, p90 "
              f"{report[r.name]['p90_latency_ms'] or float('nan'):.0f} ms, {r.audio_samples / 16000:.2f} s of speech")
    print(f"sent {sent} bytes in {duration:.1f} s: {report['kbps']:.2f} kbps; packets of {packet / fps:.2f} s")
    if args.out and receivers[0].frames:
        write_media(args.out, np.stack(receivers[0].frames), fps)
    return report


if __name__ == "__main__":
    main()
