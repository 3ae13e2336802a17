"""Rate control, in the codec layer: every byte of the stream over its duration.

Two controllers, one notion of rate (key pictures, motion, audio, headers and framing all count):

* :class:`StreamRate`, one pass: a leaky bucket the streaming :class:`~avfc.codec.Encoder` fills with
  ``kbps`` per second of video pushed and drains with every byte it writes. Each key picture gets
  what the interval until the next key frame earns, less what motion and audio are expected to take
  in it (measured on the stream so far; for the first key frame, the coded size of the first pushed
  frames' keypoints and the audio codec's nominal rate), plus the bucket's balance. Its latency is
  nothing: it decides when a key frame is coded, from what came before. It serves live calls (the
  target may change while encoding: :meth:`~avfc.codec.Encoder.set_bitrate`) and inputs of any length.
* :func:`fit_file_rate`, whole file, several passes: codes the whole clip with the coarsest key
  pictures, plans the key pictures' bytes from what the rest took, and re-plans until the file fits.
  It reaches the budget more exactly on short clips, where one key picture is most of the file, at
  the price of coding the clip up to about six times.

``avfc.encode`` picks one (``EncoderConfig.rate_control``, "auto": the whole-file passes up to
:data:`FILE_RATE_MAX_SECONDS` of input, one pass beyond); docs/results.md has what each gives.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from avfc.config import EncoderConfig
from avfc.errors import ConfigError
from avfc.media import QP_RANGE

if TYPE_CHECKING:
    from avfc.codec.encoder import Encoder

#: ``rate_control="auto"`` codes inputs up to this long with the whole-file passes, longer ones in one pass:
#: beyond two key intervals of the one-pass control (:data:`STREAM_KEY_SECONDS`) its refreshed key pictures
#: spend the budget that one key picture, even at its finest, cannot (a 60-s clip at 5 kbps came out at
#: 3.93 kbps with the whole-file passes), and the passes cost most there
FILE_RATE_MAX_SECONDS = 20.0
#: one-pass rate control with no key interval set: a key frame every this many seconds, so that a long
#: input's budget buys refreshed key pictures (against drift) rather than one key picture for the whole file
STREAM_KEY_SECONDS = 10.0
#: the one-pass controller measures motion and audio over this many seconds of recent frames
RATE_WINDOW_SECONDS = 10.0
#: a key picture may borrow from (or return to) the bucket at most this many intervals' worth at once
MAX_CARRY_INTERVALS = 1.0


class StreamRate:
    """One-pass rate control of a streaming encoder (see the module's docstring).

    The encoder calls :meth:`frames` for every frame pushed, :meth:`spend` for every unit written
    (``key=True`` for the picture bytes of a key frame) and :meth:`key_budget` before coding a key
    picture. ``other_prior`` is the expected bytes per frame of everything but key pictures before
    any has been measured.
    """

    def __init__(self, kbps: float, fps: float) -> None:
        self.fps = float(fps)
        self.kbps = 0.0
        self.set_kbps(kbps)
        self.earned = 0.0  # bytes the target allowed for the frames pushed so far
        self.spent = 0  # bytes written so far
        self.frame = 0  # frames pushed so far
        # non-key bytes written per frame, over the recent window: (frame, bytes) per unit
        self._recent: deque[tuple[int, int]] = deque()
        self._recent_bytes = 0
        self.other_prior: Optional[float] = None

    def set_kbps(self, kbps: float) -> None:
        """A new target from the next frame pushed on (a live call's congestion control calls this)."""
        if not kbps > 0:
            raise ConfigError(f"the target rate must be positive, got {kbps} kbps")
        self.kbps = float(kbps)

    @property
    def bytes_per_frame(self) -> float:
        return self.kbps * 1000.0 / 8.0 / self.fps

    @property
    def balance(self) -> float:
        """Bytes earned and not spent (negative: spent ahead, to be earned back)."""
        return self.earned - self.spent

    def frames(self, n: int = 1) -> None:
        """``n`` frames were pushed: they earn the current target's bytes."""
        self.earned += n * self.bytes_per_frame
        self.frame += n

    def spend(self, nbytes: int, key: bool = False) -> None:
        """``nbytes`` were written; ``key``: they are a key picture (not counted as motion and audio)."""
        self.spent += int(nbytes)
        if not key:
            self._recent.append((self.frame, int(nbytes)))
            self._recent_bytes += int(nbytes)
            horizon = self.frame - RATE_WINDOW_SECONDS * self.fps
            while self._recent and self._recent[0][0] < horizon:
                self._recent_bytes -= self._recent.popleft()[1]

    def other_per_frame(self) -> float:
        """Expected bytes per frame of everything but key pictures: measured over the recent window once a
        second of it has passed (until then ``other_prior``)."""
        if self.measured:
            return self._recent_bytes / (self.frame - self._recent[0][0])
        return self.other_prior if self.other_prior is not None else 0.1 * self.bytes_per_frame

    @property
    def measured(self) -> bool:
        """True once :meth:`other_per_frame` is a measure of the recent window (not ``other_prior``)."""
        return bool(self._recent) and self.frame - self._recent[0][0] >= self.fps

    def key_budget(self, interval_frames: int, owed: float = 0.0, unseen: float = 0.0, counted: int = 0) -> int:
        """Bytes for the key picture coded now, which starts an interval of ``interval_frames`` frames
        until the next key frame: what the interval earns, less the motion and audio expected in it,
        plus the bucket's balance (at most :data:`MAX_CARRY_INTERVALS` intervals' worth either way).

        A bi-directional stream writes the motion of the frames before a key frame after it: ``owed`` is
        what frames already pushed will still write (taken from the balance), ``unseen`` the bytes per frame
        that the recent window's measure has not seen yet (that motion, before any of it was written), and
        ``counted`` the frames of the interval pushed already (a key frame placed in a window of frames
        held until it was complete): their earnings are in the balance, and their audio spent."""
        interval = max(int(interval_frames), 1)
        counted = min(max(int(counted), 0), interval)
        earn = interval * self.bytes_per_frame
        carry = max(-MAX_CARRY_INTERVALS * earn, min(MAX_CARRY_INTERVALS * earn,
                                                     self.balance - owed - counted * self.bytes_per_frame))
        return max(1, int(earn - (interval - counted) * (self.other_per_frame() + unseen) + carry))


# --------------------------------------------------------------------------- whole file, several passes

#: the motion strides the whole-file rate control tries, densest first, when the config leaves
#: motion_stride open: beyond 3 frames (120 ms at 25 fps) the interpolated mouth visibly lags the speech
AUTO_MOTION_STRIDES = (1, 2, 3)
#: a sparser stride is taken only when it saves at least this share of the file: 2 % of the bytes
#: give the key picture about 0.001 of LPIPS at a few kbps (docs/results.md), less than the mouth
#: motion that every 2nd or 3rd frame's keypoints lose
AUTO_STRIDE_MIN_SAVING = 0.02
#: the most planned passes of the whole-file rate control after its first (each codes the whole clip once)
MAX_RATE_PASSES = 4


def uses_file_rate(cfg: EncoderConfig, duration: float) -> bool:
    """Whether ``avfc.encode`` codes an input of ``duration`` seconds with the whole-file passes."""
    if cfg.bitrate_kbps is None or cfg.rate_control == "stream":
        return False
    return cfg.rate_control == "file" or duration <= FILE_RATE_MAX_SECONDS


def fit_file_rate(cfg: EncoderConfig, budget: int, duration: float, run: Callable[..., Encoder],
                  warnings: list[str]):
    """Whole-file rate control: the best encoder pass whose file fits ``budget`` bytes (a warning is
    appended when even the coarsest key pictures do not fit).

    ``run(config, key_bytes=None, bound=False)`` codes the whole clip with ``config`` (each key
    picture within ``key_bytes`` when given; ``bound``: the pass only plans, its motion search may
    send the detector's keypoints) and returns the closed :class:`~avfc.codec.Encoder`.

    Pass 1 codes the clip with the coarsest key pictures and every packet's analysed motion, none
    held: all but the key pictures' bytes are then known, the motion's as an upper bound (a held
    packet costs less). Pass 1 also picks the motion stride when the config leaves it open: the
    densest of :data:`AUTO_MOTION_STRIDES` whose keypoints fit ``motion_share`` of the budget, going
    sparser only while each step saves :data:`AUTO_STRIDE_MIN_SAVING` of the budget or more. The
    key pictures get the rest. A planned pass over the budget (finer key pictures can make
    ``motion_hold`` move packets it held, or the adaptive policy place more key frames) shrinks them
    by the excess; one under it (packets held) grows them by the slack; once one pass fitted and one
    did not, the next bisects between their key budgets (at most :data:`MAX_RATE_PASSES` planned
    passes). Of the passes within the budget the best by the search's own measure is kept (:func:`_best_fit`;
    the fullest when the passes cannot be compared); when none fits, the coarsest key pictures.
    """
    coarsest = QP_RANGE[cfg.key_codec][1]
    strides = (AUTO_MOTION_STRIDES if cfg.motion_stride is None and cfg.motion_source == "transmitted"
               else (cfg.motion_stride,))
    denser = None  # the last stride tried, its pass 1, its motion bytes
    for stride in strides:
        sparser = EncoderConfig.make(cfg, motion_stride=stride)
        probe = run(EncoderConfig.make(sparser, key_qp=coarsest, motion_hold=False), bound=True)
        motion = probe.stats.bytes_by_type.get("motion", 0)
        if denser is not None and denser[2] - motion < AUTO_STRIDE_MIN_SAVING * budget:
            cfg, probe, _ = denser  # too few bytes saved for the motion it would drop: keep the denser
            break
        cfg, denser = sparser, (sparser, probe, motion)
        if motion <= cfg.motion_share * budget:
            break
    smallest = max(probe.stats.key_picture_bytes, default=0)  # the coarsest key picture
    stats = probe.stats
    key_total = stats.bytes_by_type.get("key_frame", 0)
    n_keys = max(stats.units_by_type.get("key_frame", 1), 1)
    per_key = (budget - (stats.total_bytes - key_total) - (key_total - stats.key_picture_total)) // n_keys
    runs = []
    fit = None  # the largest key budget that fitted, and its pass
    over = None  # the smallest that did not
    for _ in range(MAX_RATE_PASSES):
        if per_key < smallest:
            break
        enc = run(cfg, per_key)
        runs.append(enc)
        n_keys = max(enc.stats.units_by_type.get("key_frame", 1), 1)
        excess = enc.stats.total_bytes - budget
        if excess > 0 and (over is None or per_key < over[0]):
            over = (per_key, enc)
        elif excess <= 0 and (fit is None or per_key > fit[0]):
            fit = (per_key, enc)
        if fit is None:
            per_key -= -(-excess // n_keys)  # none fitted yet: shrink by the excess, rounded up ...
            if enc.stats.key_picture_bytes:  # (this pass did not fit: excess > 0)
                # ... and at least below the largest picture coded, so that the next pass codes it coarser
                # (a budget still above it codes the same pictures: a pass wasted, and with an excess smaller
                # than one QP step every pass was, down to the coarsest key pictures)
                per_key = min(per_key, max(enc.stats.key_picture_bytes) - 1)
        elif over is None:
            if -excess < n_keys * 8:
                break  # within a few bytes of the budget
            per_key += -excess // n_keys  # packets were held: grow by the slack
        elif _qp_between(fit[1].stats.key_qps, over[1].stats.key_qps):
            per_key = (fit[0] + over[0]) // 2  # between the two: bisect
        else:
            break  # no key picture lies between the two passes'
    fits = [e for e in runs if e.stats.total_bytes <= budget]
    if not fits:
        held = run(EncoderConfig.make(cfg, key_qp=coarsest))  # the coarsest key pictures, motion held
        if held.stats.total_bytes <= budget:
            return held
        runs.append(held)
        best = min(runs, key=lambda e: e.stats.total_bytes)
        warnings.append(
            f"--bitrate {cfg.bitrate_kbps} kbps cannot be reached: motion, audio and the smallest key "
            f"frame{'s' if n_keys > 1 else ''} already take {best.stats.total_bytes * 8 / 1000 / duration:.2f} kbps")
        return best
    return _best_fit(fits)


def _best_fit(fits: Sequence[Encoder]) -> Encoder:
    """Of the passes within the budget, the one the decoder draws closest to the source by the motion search's
    own measure (:attr:`Encoder.search_distortion`), among those with the fullest pass's number of key frames
    (a pass with more key frames draws fewer frames); ties and passes without that measure (no search, or
    choices reused from an earlier pass, as the ``fast`` effort does) keep the fullest pass.

    Fuller is not always better when every pass chooses again: finer key pictures can make the search hold
    packets it moved before (docs/experiments/2026-12-07-rate-pass-choice.md)."""
    fullest = max(fits, key=lambda e: e.stats.total_bytes)
    same = [e for e in fits if e.stats.keys == fullest.stats.keys and math.isfinite(e.search_distortion)]
    if fullest not in same or len(same) < 2:
        return fullest
    return min(same, key=lambda e: (e.search_distortion, -e.stats.total_bytes))


def _qp_between(fit_qps: Sequence[int], over_qps: Sequence[int]) -> bool:
    """Whether a key budget between two passes' can give some key frame a picture neither had: the
    passes coded the same key frames, and one of them got QPs at least 2 apart."""
    return len(fit_qps) == len(over_qps) and any(o < f - 1 for f, o in zip(fit_qps, over_qps))
