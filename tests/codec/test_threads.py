"""Thread limits of the streaming Decoder (and avfc.decode, ``avfc decode --threads``): torch's intra-op threads
are set while the decoder draws and restored after, per calling thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import avfc
from avfc.codec import Decoder
from avfc.errors import ConfigError
from avfc.media.synthetic import talking_face

SIZE = 64


@pytest.fixture(scope="module")
def stream() -> bytes:
    frames = talking_face(12, SIZE, SIZE)
    return avfc.encode(frames, model="tiny-test", size=SIZE, effort="detector", audio="none", key_qp=40).data


def _spy_render(monkeypatch: pytest.MonkeyPatch, seen: list[tuple[str, int]]) -> None:
    from avfc.models.tiny import TinyWarp  # tiny-test's class

    render = TinyWarp.render

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return render(self, *args, **kwargs)

    monkeypatch.setattr(TinyWarp, "render", spy)


def test_decoder_threads_bound_the_render_only_while_it_draws(stream: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []
    _spy_render(monkeypatch, seen)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dec = Decoder(threads=1)
        dec.push(stream)
        dec.close()
        assert len(dec.pull_frames()) == 12
        assert seen and {n for _, n in seen} == {1}
        assert torch.get_num_threads() == 2  # the process's setting is back
        seen.clear()
        Decoder().push(stream)  # no limit: the process's setting
        assert seen and {n for _, n in seen} == {2}
    finally:
        torch.set_num_threads(before)


def test_decode_threads_give_the_same_frames(stream: bytes) -> None:
    a = avfc.decode(stream, threads=1).frames
    b = avfc.decode(stream).frames
    assert a is not None and b is not None and a.shape == (12, SIZE, SIZE, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float sums in another order at most


def test_two_decoders_in_two_threads_each_keep_their_limit(stream: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is per calling thread (OpenMP's setting), so an encoder and a decoder working in two threads
    of one process (a call) can each have theirs."""
    seen: list[tuple[str, int]] = []
    _spy_render(monkeypatch, seen)
    barrier = threading.Barrier(2)

    def run(threads: int) -> None:
        dec = Decoder(threads=threads)
        barrier.wait()
        dec.push(stream)
        dec.close()

    workers = [threading.Thread(target=run, args=(n,), name=f"t{n}") for n in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    by_thread: dict[str, set[int]] = {}
    for name, n in seen:
        by_thread.setdefault(name, set()).add(n)
    assert by_thread == {"t1": {1}, "t2": {2}}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError):
        Decoder(threads=bad)  # type: ignore[arg-type]
