"""Streaming use: push frames and audio into an Encoder as they arrive, send the bytes it emits,
and feed them to a Decoder on the other side, which hands out frames as soon as they are decoded.

    python examples/streaming.py [--smoke]

(``--smoke``: 15 frames with the untrained ``tiny-test`` model at 64x64, a check that it runs.)
"""

import sys

import numpy as np

import avfc
from avfc.media.synthetic import speech_like, talking_face


def main(smoke: bool = False) -> None:
    fps, sr, size, count = 25, 16000, 128, 75
    model = {}
    if smoke:
        size, count, model = 64, 15, {"model": "tiny-test"}
    frames = talking_face(count, size, size)  # 3 s of "camera" frames at the coded size
    speech = speech_like(count / fps, sr)  # and 3 s of microphone audio

    enc = avfc.Encoder(avfc.EncoderConfig(size=size, packet_frames=10, audio="codec2", **model))
    dec = avfc.Decoder()
    received = []
    sent = 0
    for i in range(0, len(frames), 5):  # 5 frames (200 ms) at a time, as from a capture loop
        enc.push_frames(frames[i:i + 5])
        enc.push_audio(speech[i * sr // fps:(i + 5) * sr // fps])
        chunk = enc.read()  # whatever units are complete: send them
        sent += len(chunk)
        dec.push(chunk)  # ... and on the receiving side:
        received.append(dec.pull_frames())
        print(f"t={(i + 5) / fps:4.1f} s  sent {sent:5d} bytes  decoded {sum(map(len, received)):3d} frames")
    enc.close()
    dec.push(enc.read())
    dec.close()
    received.append(dec.pull_frames())
    video = np.concatenate(received)
    audio = dec.audio()
    assert video.shape == frames.shape and audio is not None
    print(f"done: {len(video)} frames, {len(audio) / sr:.2f} s audio, issues: {dec.issues or 'none'}")


if __name__ == "__main__":
    main(smoke="--smoke" in sys.argv[1:])
