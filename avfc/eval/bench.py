"""``avfc bench``: avfc, the held-key-frame baseline and conventional anchors under one test condition.

Test conditions (one definition for every codec). Each clip is read with
:func:`avfc.media.read_media` at 25 fps and 16 kHz mono, cut to ``frames`` frames, and
cropped with avfc's own crop (:func:`avfc.api.prepare`: the face-aware square of
:func:`avfc.media.find_crop`, a square source whole) to ``size`` x ``size``. Those frames
and that audio are the *reference*: every codec is fed exactly them and measured against
them. avfc gets them as a :class:`~avfc.media.Media` with ``crop="none"`` so it codes the
same pixels.

What the rate counts (kbit/s = bytes * 8 / 1000 / (frames / fps)):

* ``avfc``: the whole ``.avfc`` file (header, key frames, motion, audio, end of stream).
  ``bytes_audio`` are the AUDIO units, ``bytes_video`` everything else.
* ``baseline``: the AV1 key-frame payload plus Codec2 700C's packed tokens; no container.
  Its total bytes are set to avfc's actual total bytes on the same clip at the same rate
  point (the requested rate when avfc is not run), minus the audio's. The picture held is
  frame 0; ``baseline:placed`` holds the frame where avfc's search efforts place their key
  frame instead (:func:`avfc.codec.search.place_key` of the default model's keypoints): the
  same do-nothing baseline with avfc's choice of picture.
* ``x265`` / ``svtav1``: the raw elementary stream (sum of packet sizes), video only.
* ``opus`` / ``codec2``: the packed tokens (:mod:`avfc.eval.anchors`), audio only.

Metrics per (clip, codec, point) with :mod:`avfc.eval.metrics`, :mod:`~avfc.eval.perceptual`,
:mod:`~avfc.eval.mouth` and :mod:`~avfc.eval.audio_metrics`: PSNR and mouth motion on every
frame; SSIM, MS-SSIM, LPIPS and DISTS on every ``metric_stride``-th frame (frames
``stride // 2, stride // 2 + stride, ...``; by default every 10th, ``metric_stride=1`` /
``--all-frames`` for every frame), since the VGG-based metrics cost about a second a frame on a
CPU: with every frame, one 2-second clip under the default codecs took about 35 minutes on the
2-core CPU; with every 10th the estimate is about 4.5 (5 scored frames of 50 per video point). The stride is a column of results.csv (``metric_stride``,
beside ``metric_frames``, the frames they saw). Before the work starts the run prints an estimate
of its time (:func:`estimate_seconds`). LPIPS and DISTS need the metric
weights (``--weights``, else ``$AVFC_WEIGHTS_DIR``, else ``../shared/weights`` beside the
repository); without them their cells stay empty and ``notes`` says so. Audio metrics
compare the decoded speech with the reference sample by sample (the codecs compensate their
delay; no lag search). A metric that cannot be computed (MS-SSIM on frames of 160 px or
less, PESQ on a clip without speech) is left empty with the reason in ``notes``.

Speed and memory per stage (encode, decode): wall-clock seconds, frames per second, and
the peak resident memory above the stage's start, sampled every 5 ms from
``/proc/self/statm`` by a helper thread, after ``gc.collect()`` and glibc's
``malloc_trim(0)`` so that heap memory freed by earlier stages is not silently reused. It
is a lower bound (a spike shorter than 5 ms can be missed), and the first stage of a kind
also pays one-time loads (avfc's model). Where ``/proc`` does not exist, the growth of
``ru_maxrss`` is used instead (0 when the stage stays below an earlier peak); ``meta.json``
says which. Video anchors decode with one thread; encoders use their own threading. The
``device`` column says where the codec's decoder ran: ``--device`` for avfc's generator, the
CPU for everything else; the metric networks always run on ``--device``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import resource
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from avfc.errors import AvfcError, ConfigError, MediaError
from avfc.eval import anchors
from avfc.eval.report import METRICS, bd_table, environment, write_csv, write_meta, write_plots, write_summary
from avfc.media import CropBox, Media, read_media

__all__ = [
    "AVFC_MODES",
    "CODEC_KINDS",
    "DEFAULT_CODECS",
    "BenchConfig",
    "BenchResult",
    "CodecSpec",
    "Reference",
    "add_bench_arguments",
    "find_clips",
    "find_metric_weights",
    "load_reference",
    "parse_codecs",
    "run_bench",
    "run_bench_from_args",
]

#: avfc modes by name: ``EncoderConfig`` overrides. ``"avfc"`` is ``"avfc:default"``; a new
#: mode (``"avfc:mrdac-multiref"``, say) is one entry here, e.g. ``{"model": "mrdac-v1"}``.
AVFC_MODES: dict[str, dict[str, Any]] = {
    "default": {},  # the zoo's default model, one key frame, low delay
    "multiref": {"key_interval": 50, "max_refs": 4},  # a key frame every 2 s, up to 4 references
    "bidir": {"key_interval": 50, "max_refs": 2, "reference_mode": "bidirectional"},
    "adaptive": {"key_policy": "adaptive", "max_refs": 4},  # keys where the reconstruction falls
    "tiny": {"model": "tiny-test"},  # the untrained test model, for reference
    # the shipped models by name: the CPU-trained v2, and v3 (v2 fine-tuned on coded references)
    "v2": {"model": "mrdac-cpu-v2"},
    "v3": {"model": "mrdac-cpu-v3"},
    "v4": {"model": "mrdac-cpu-v4"},
    "v6": {"model": "mrdac-cpu-v6"},
    # sparse motion (format 1.2): keypoints of every 2nd / 3rd frame, the rest interpolated; dense: every frame
    "dense": {"motion_stride": 1},
    "stride2": {"motion_stride": 2},
    "stride3": {"motion_stride": 3},
    # motion and audio packets of 2 s instead of 1 s: half the unit framing, twice the latency
    "long-packets": {"packet_frames": 50},
    # closed-loop choice per motion packet between the analysed motion and holding the reference
    "hold": {"motion_hold": True},
    "hold-stride3": {"motion_hold": True, "motion_stride": 3},
    # the encoder's effort presets (avfc.codec.search): what is sent is searched against the decoder's render
    **{f"effort-{e}": {"effort": e} for e in ("live", "detector", "fast", "medium", "slow", "placebo")},
    # rate control (avfc.codec.rate): one pass (as for long inputs and live use) or the whole-file passes
    "rate-stream": {"rate_control": "stream"},
    "rate-file": {"rate_control": "file"},
    # one pass with the key frames where the policy puts them: low delay, a key frame every 10th second (what
    # long inputs got before their key frames were placed in 10-s windows, bi-directionally)
    "rate-stream-fixed": {"rate_control": "stream", "place_keys": False},
    # the search with a perceptual term (avfc encode --search-weights; the bench's metric weights): opt-in;
    # SEARCH_METRICS names each such mode's term
    **{f"search-{m}": {} for m in ("lpips-alex", "lpips-vgg", "dists")},
    "v6-search-lpips-alex": {"model": "mrdac-cpu-v6"},
    # audio-visual cross-modal coding (format 1.1): context-coded audio, speech-predicted motion
    "avcc": {"audio_coder": "context", "motion_source": "predicted"},
    # no motion at all: the decoder draws the lips from the speech (the lowest rates)
    "lips": {"audio_coder": "context", "motion_source": "speech"},
    # the same with the lips drawn by the bundle's diffusion model (format 1.3)
    "lips-diffusion": {"audio_coder": "context", "motion_source": "speech", "lips_model": "diffusion"},
}
CODEC_KINDS: tuple[str, ...] = ("avfc", "baseline", "x265", "svtav1", "opus", "codec2")
DEFAULT_CODECS = "avfc,baseline,x265,svtav1,opus,codec2"
#: ``../shared/weights`` beside the repository (development machines)
SHARED_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".m4v")
MAX_CLIPS = 10_000
MAX_BENCH_FRAMES = 100_000
#: SSIM, MS-SSIM, LPIPS and DISTS on every 10th frame by default (1: every frame, ``--all-frames``)
DEFAULT_METRIC_STRIDE = 10
_SAMPLE_RATE = 16000
_BASELINE_AUDIO = ("codec2", "700C")  # what avfc's default mode carries


# --------------------------------------------------------------------------- codec list
#: the avfc modes whose search has a perceptual term (from the bench's metric weights), and its metric
SEARCH_METRICS: dict[str, str] = {
    **{f"search-{m}": m for m in ("lpips-alex", "lpips-vgg", "dists")},
    "v6-search-lpips-alex": "lpips-alex",
}


@dataclass(frozen=True)
class CodecSpec:
    """One entry of ``--codecs``: a kind, and for avfc a mode of ``AVFC_MODES``."""

    kind: str
    mode: str = ""

    @property
    def name(self) -> str:
        """Name in the outputs: ``avfc`` for the default mode, ``avfc:<mode>`` (``baseline:placed``) otherwise."""
        if self.mode in ("", "default"):
            return self.kind
        return f"{self.kind}:{self.mode}"


def parse_codecs(text: str) -> tuple[CodecSpec, ...]:
    """``"avfc,baseline,x265"`` -> specs, in order, without duplicates.

    Raises:
        ConfigError: empty list, unknown codec or unknown / invalid avfc mode.
    """
    from avfc.config import EncoderConfig

    specs: list[CodecSpec] = []
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        kind, _, mode = item.partition(":")
        kind = kind.lower()
        if kind not in CODEC_KINDS:
            raise ConfigError(f"unknown codec {item!r}; codecs: {', '.join(CODEC_KINDS)} (avfc:MODE for an avfc mode)")
        if kind == "avfc":
            mode = mode or "default"
            if mode not in AVFC_MODES:
                raise ConfigError(f"unknown avfc mode {mode!r}; modes: {', '.join(AVFC_MODES)}")
            EncoderConfig.make(**AVFC_MODES[mode])  # a bad mode entry fails here, not mid-run
        elif kind == "baseline" and mode not in ("", "placed"):
            raise ConfigError(f"unknown baseline mode {mode!r}; modes: placed")
        elif kind != "baseline" and mode:
            raise ConfigError(f"{kind} takes no mode, got {item!r}")
        spec = CodecSpec(kind, mode)
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ConfigError("no codecs given")
    return tuple(specs)


def _parse_numbers(text: str, kind: Callable[[str], Any], what: str) -> tuple[Any, ...]:
    try:
        values = tuple(kind(s.strip()) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what}: empty list")
    return values


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class BenchConfig:
    """Everything a bench run depends on (the CLI flags, one to one)."""

    clips: Path
    out_dir: Path
    codecs: tuple[CodecSpec, ...] = field(default_factory=lambda: parse_codecs(DEFAULT_CODECS))
    rates: tuple[float, ...] = (3.0, 5.0, 8.0)  # total kbit/s for avfc and the baseline
    frames: Optional[int] = 100
    max_clips: Optional[int] = None
    weights: Optional[Path] = None  # None: $AVFC_WEIGHTS_DIR, then ../shared/weights
    device: str = "cpu"
    size: int = 256
    fps: int = 25
    x265_qps: tuple[int, ...] = (51, 46, 41, 36)
    svtav1_qps: tuple[int, ...] = (63, 57, 51, 45)
    x265_preset: str = anchors.DEFAULT_PRESETS["x265"]
    svtav1_preset: str = anchors.DEFAULT_PRESETS["svtav1"]
    opus_rates: tuple[int, ...] = (6000, 8000, 12000, 16000, 24000)
    codec2_modes: tuple[str, ...] = ("700C", "1300", "1600", "3200")
    metric_stride: int = DEFAULT_METRIC_STRIDE
    progress: bool = True
    force: bool = False

    def check(self) -> None:
        """Validate every field (ConfigError), including the device."""
        from avfc.audio import make_audio_codec_by_name

        def integer(name: str, v: Any, lo: int, hi: int) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")

        if not self.codecs:
            raise ConfigError("no codecs given")
        for r in self.rates:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1000:
                raise ConfigError(f"rates must be kbit/s in (0, 1000], got {r!r}")
        if self.frames is not None:
            integer("frames", self.frames, 1, MAX_BENCH_FRAMES)
        if self.max_clips is not None:
            integer("clips", self.max_clips, 1, MAX_CLIPS)
        integer("size", self.size, anchors.MIN_SIDE, 1024)
        if self.size % 16:
            raise ConfigError(f"size must be a multiple of 16 (avfc's coded size), got {self.size}")
        integer("fps", self.fps, 1, 120)
        integer("metric_stride", self.metric_stride, 1, 10_000)
        for codec, qps in (("x265", self.x265_qps), ("svtav1", self.svtav1_qps)):
            lo, hi = anchors.QP_LIMITS[codec]
            if not qps:
                raise ConfigError(f"{codec}: no QPs given")
            for qp in qps:
                integer(f"{codec} qp", qp, lo, hi)
        for bps in self.opus_rates:
            make_audio_codec_by_name("opus", bps)
        for mode in self.codec2_modes:
            make_audio_codec_by_name("codec2", mode)
        if self.device != "cpu":
            import torch

            if not self.device.startswith("cuda"):
                raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r} asked for, but torch sees no CUDA device")

    def points(self, spec: CodecSpec) -> tuple[Any, ...]:
        """The rate points of one codec: kbit/s, QPs, bit/s or Codec2 modes."""
        return {
            "avfc": self.rates, "baseline": self.rates, "x265": self.x265_qps, "svtav1": self.svtav1_qps,
            "opus": self.opus_rates, "codec2": self.codec2_modes,
        }[spec.kind]


def find_metric_weights(explicit: Optional[Path]) -> tuple[Optional[Path], str]:
    """The metric weights directory and how it was found: ``--weights``, ``$AVFC_WEIGHTS_DIR``, ``../shared``.

    Returns ``(None, reason)`` when nothing is found. Raises ConfigError when an
    explicitly given directory does not exist.
    """
    from avfc.eval.backbones import WEIGHTS_ENV

    if explicit is not None:
        if not Path(explicit).is_dir():
            raise ConfigError(f"--weights {str(explicit)!r} is not a directory")
        return Path(explicit), "given with --weights"
    env = os.environ.get(WEIGHTS_ENV)
    if env and Path(env).is_dir():
        return Path(env), f"${WEIGHTS_ENV}"
    if SHARED_WEIGHTS.is_dir():
        return SHARED_WEIGHTS, "../shared/weights beside the repository"
    return None, f"no metric weights found (give --weights DIR or set ${WEIGHTS_ENV})"


# --------------------------------------------------------------------------- test conditions
@dataclass(frozen=True)
class Reference:
    """One clip under the test conditions: what every codec codes and is measured against."""

    name: str
    frames: np.ndarray  # (T, S, S, 3) uint8
    audio: Optional[np.ndarray]  # float32 (round(T * 16000 / fps),) or None
    fps: int
    crop: CropBox

    @property
    def duration(self) -> float:
        """Seconds: frames / fps."""
        return self.frames.shape[0] / self.fps


def find_clips(path: Path, limit: Optional[int] = None) -> list[Path]:
    """The clips of a directory (video suffixes, sorted by name, first ``limit``), or one file."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ConfigError(f"{str(p)!r} is neither a clip nor a directory of clips")
    clips = sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise ConfigError(f"no video clips ({', '.join(VIDEO_SUFFIXES)}) in {str(p)!r}")
    return clips[:limit] if limit else clips


def load_reference(path: Path, size: int = 256, fps: int = 25, max_frames: Optional[int] = None) -> Reference:
    """Read a clip and apply the test conditions (see the module docs).

    Raises:
        MediaError: unreadable clip. ConfigError: bad size, fps or frame count.
    """
    from avfc.api import prepare
    from avfc.config import EncoderConfig

    cfg = EncoderConfig.make(size=size, fps=fps, max_frames=max_frames)
    media = read_media(path, fps=fps, sample_rate=_SAMPLE_RATE, max_frames=max_frames)
    frames, box = prepare(media, cfg)
    if frames.shape[1] % 2 or frames.shape[0] < 1:
        raise MediaError(f"{path}: unusable reference of shape {frames.shape}")
    return Reference(Path(path).stem, np.ascontiguousarray(frames), media.audio, int(fps), box)


# --------------------------------------------------------------------------- measuring stages
def _malloc_trim() -> Callable[[], Any]:
    """glibc's ``malloc_trim(0)`` (hand freed heap memory back to the OS), or a no-op elsewhere."""
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
        return lambda: trim(0)
    except (OSError, AttributeError):
        return lambda: None


_TRIM = _malloc_trim()


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


MEMORY_METHOD = (
    "peak resident memory above the stage's start (after gc.collect and malloc_trim), "
    "sampled every 5 ms from /proc/self/statm"
    if _rss_bytes() is not None
    else "growth of ru_maxrss over the stage (0 when below an earlier peak)"
)


_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB elsewhere


class Stage:
    """Context manager: wall time and peak memory of one stage (see the module docs)."""

    INTERVAL_S = 0.005

    def __init__(self) -> None:
        self.seconds = 0.0
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0
        self._thread: Optional[threading.Thread] = None

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __enter__(self) -> "Stage":
        gc.collect()  # start from a trimmed heap, so that memory freed earlier and reused
        _TRIM()  # by this stage does not hide its needs
        rss = _rss_bytes()
        if rss is None:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
        else:
            self._base = self._peak = rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        if self._thread is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes() or 0)
        self.peak_mib = max(0, peak - self._base) / 2**20


# --------------------------------------------------------------------------- metrics
def _score_job(net: Any, ref: np.ndarray, dec: np.ndarray) -> Callable[[], float]:
    """A job of :meth:`Scorer.video`: ``net``'s mean score of ``dec`` against ``ref``, when called."""
    return lambda: net.score(ref, dec).mean


class Scorer:
    """Computes every metric of a decoded clip against its reference; missing ones get a reason."""

    def __init__(self, weights: Optional[Path], why_none: str, device: str, stride: int) -> None:
        from avfc.eval.perceptual import DISTS, LPIPS

        self.device = device
        self.stride = int(stride)
        self.nets: dict[str, Any] = {}
        self.missing: dict[str, str] = {}
        builders = {
            "lpips_alex": lambda: LPIPS("alex", weights, device),
            "lpips_vgg": lambda: LPIPS("vgg", weights, device),
            "dists": lambda: DISTS(weights, device),
        }
        for key, build in builders.items():
            if weights is None:
                self.missing[key] = why_none
                continue
            try:
                self.nets[key] = build()
            except ConfigError as exc:
                self.missing[key] = str(exc).split(". ")[0]

    def sample(self, count: int) -> np.ndarray:
        """Frame indices of the costly metrics: ``stride // 2, stride // 2 + stride, ...`` (at least one)."""
        idx = np.arange(self.stride // 2, count, self.stride)
        return idx if idx.size else np.array([count // 2])

    def video(self, ref: np.ndarray, dec: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        """Video and mouth metrics; ``metric_frames`` is how many frames the costly ones saw."""
        from avfc.eval.metrics import ms_ssim, psnr, ssim
        from avfc.eval.mouth import mouth_motion_error

        if ref.shape != dec.shape:
            raise MediaError(f"decoded video {dec.shape} does not match the reference {ref.shape}")
        idx = self.sample(ref.shape[0])
        r_s, d_s = ref[idx], np.ascontiguousarray(dec[idx])
        out: dict[str, Any] = {"metric_frames": int(idx.size), "metric_stride": self.stride}
        notes: list[str] = []
        jobs: dict[str, Callable[[], float]] = {
            "psnr": lambda: psnr(ref, dec, device=self.device).mean,
            "ssim": lambda: ssim(r_s, d_s, device=self.device).mean,
            "ms_ssim": lambda: ms_ssim(r_s, d_s, device=self.device).mean,
        }
        for key, net in self.nets.items():
            jobs[key] = _score_job(net, r_s, d_s)
        for key, job in jobs.items():
            try:
                out[key] = float(job())
            except AvfcError as exc:
                notes.append(f"{key}: {exc}")
        notes += [f"{key}: {why}" for key, why in self.missing.items()]
        try:
            m = mouth_motion_error(ref, dec)
            out.update(mouth_motion_corr=m.motion_corr, mouth_motion_l1=m.motion_l1,
                       mouth_open_corr=m.opening_corr, mouth_open_l1=m.opening_l1)
        except AvfcError as exc:
            notes.append(f"mouth: {exc}")
        return out, notes

    @staticmethod
    def audio(ref: np.ndarray, dec: np.ndarray) -> tuple[dict[str, Any], list[str]]:
        """SI-SDR, PESQ-WB and STOI of decoded speech at 16 kHz."""
        from avfc.eval.audio_metrics import pesq_wb, si_sdr, stoi

        out: dict[str, Any] = {}
        notes: list[str] = []
        jobs: dict[str, Callable[[], float]] = {
            "si_sdr": lambda: si_sdr(ref, dec),
            "pesq_wb": lambda: pesq_wb(ref, dec, _SAMPLE_RATE),
            "stoi": lambda: stoi(ref, dec, _SAMPLE_RATE),
        }
        for key, job in jobs.items():
            try:
                out[key] = float(job())
            except AvfcError as exc:
                notes.append(f"{key}: {exc}")
        return out, notes


# --------------------------------------------------------------------------- coding
@dataclass
class Coded:
    """What one codec made of one clip at one point."""

    point: str
    param: str
    target_kbps: Optional[float] = None
    bytes_video: int = 0
    bytes_audio: int = 0
    frames: Optional[np.ndarray] = None
    audio: Optional[np.ndarray] = None
    encode: Stage = field(default_factory=Stage)
    decode: Stage = field(default_factory=Stage)
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def _search_term(weights: str, metric: str, device: str) -> Any:
    from avfc.eval.perceptual import search_term

    return search_term(weights, metric, device)


def _code_avfc(ref: Reference, spec: CodecSpec, rate: float, cfg: BenchConfig) -> Coded:
    import avfc

    c = Coded(f"{rate:g} kbps", f"{rate:g}", target_kbps=float(rate), device=cfg.device)
    media = Media.from_arrays(ref.frames, ref.fps, ref.audio, _SAMPLE_RATE)
    overrides: dict[str, Any] = {**AVFC_MODES[spec.mode], "bitrate_kbps": float(rate),
                                 "size": int(ref.frames.shape[1]), "fps": ref.fps, "crop": "none"}
    metric = SEARCH_METRICS.get(spec.mode)
    if metric is not None:  # the search's perceptual term, from the bench's metric weights
        weights, why = find_metric_weights(cfg.weights)
        if weights is None:
            raise ConfigError(f"avfc:{spec.mode} needs the metric weights: {why}")
        overrides["search_perceptual"] = _search_term(str(weights), metric, cfg.device)
    with c.encode:
        res = avfc.encode(media, **overrides)
    with c.decode:
        dec = avfc.decode(res.data, device=cfg.device)
    c.bytes_audio = int(res.stats.bytes_by_type.get("audio", 0))
    c.bytes_video = len(res.data) - c.bytes_audio
    c.frames, c.audio = dec.frames, dec.audio
    c.notes += res.warnings + [f"decoder: {issue}" for issue in dec.issues]
    return c


def placed_frame(ref: Reference) -> int:
    """The frame where avfc's search efforts place the key frame of ``ref`` (the default model's keypoints)."""
    from avfc.codec.encoder import analyse_clip
    from avfc.codec.search import place_key
    from avfc.config import MAX_FIRST_KEY, EncoderConfig
    from avfc.models.zoo import load_model

    cfg = EncoderConfig.make(size=int(ref.frames.shape[1]))
    model = load_model(cfg.model, cfg.size)
    return place_key(analyse_clip(model, ref.frames, cfg.kp_precision, cfg.kp_hysteresis), limit=MAX_FIRST_KEY)


def _code_baseline(ref: Reference, rate: float, total_bytes: Optional[int], held: int = 0) -> Coded:
    c = Coded(f"{rate:g} kbps", f"{rate:g}", target_kbps=float(rate))
    target = total_bytes if total_bytes is not None else int(rate * 1000 / 8 * ref.duration)
    c.notes.append("rate matched to avfc's file" if total_bytes is not None else "rate from the requested kbps")
    _, s, _ = ref.frames.shape[:3]
    with c.encode:
        audio_data = anchors.encode_audio_anchor(ref.audio, *_BASELINE_AUDIO) if ref.audio is not None else b""
        payload, qp, fits = anchors.encode_held_key_frame(ref.frames[held], max(1, target - len(audio_data)))
    with c.decode:
        c.frames = anchors.decode_held_key_frame(payload, ref.frames.shape[0], s, s)
        if ref.audio is not None:
            c.audio = anchors.decode_audio_anchor(audio_data, *_BASELINE_AUDIO, int(ref.audio.size))
    c.bytes_video, c.bytes_audio = len(payload), len(audio_data)
    c.param = f"{rate:g} (AV1 qp {qp}{f', frame {held}' if held else ''})"
    if not fits:
        c.notes.append(f"baseline: key frame does not fit {target} bytes even at qp {qp}")
    return c


def _code_video_anchor(ref: Reference, codec: str, qp: int, cfg: BenchConfig) -> Coded:
    c = Coded(f"QP {qp}", str(qp))
    preset = cfg.x265_preset if codec == "x265" else cfg.svtav1_preset
    with c.encode:
        packets = anchors.encode_video_anchor(ref.frames, codec, qp, ref.fps, preset)  # type: ignore[arg-type]
    with c.decode:
        c.frames = anchors.decode_video_packets(packets, codec, ref.frames.shape[2], ref.frames.shape[1])  # type: ignore[arg-type]
    c.bytes_video = sum(len(p) for p in packets)
    return c


def _code_audio_anchor(ref: Reference, codec: str, mode: Any) -> Coded:
    label = f"{int(mode) / 1000:g} kbps" if codec == "opus" else str(mode)
    c = Coded(label, str(mode))
    if ref.audio is None:
        c.notes.append("skipped: the clip has no audio")
        return c
    with c.encode:
        data = anchors.encode_audio_anchor(ref.audio, codec, mode)
    with c.decode:
        c.audio = anchors.decode_audio_anchor(data, codec, mode, int(ref.audio.size))
    c.bytes_audio = len(data)
    return c


def _row(ref: Reference, spec: CodecSpec, c: Coded, scorer: Scorer) -> dict[str, Any]:
    t, dur = ref.frames.shape[0], ref.duration
    row: dict[str, Any] = {
        "clip": ref.name, "codec": spec.name, "point": c.point, "param": c.param, "target_kbps": c.target_kbps,
        "frames": t, "duration_s": dur, "device": c.device,
    }
    coded = c.frames is not None or c.audio is not None
    if coded:
        total = c.bytes_video + c.bytes_audio
        row.update(bytes_total=total, bytes_video=c.bytes_video, bytes_audio=c.bytes_audio,
                   kbps_total=total * 8 / 1000 / dur, kbps_video=c.bytes_video * 8 / 1000 / dur,
                   kbps_audio=c.bytes_audio * 8 / 1000 / dur,
                   encode_s=c.encode.seconds, decode_s=c.decode.seconds,
                   encode_peak_mib=c.encode.peak_mib, decode_peak_mib=c.decode.peak_mib)
    notes = list(c.notes)
    if c.frames is not None:
        row.update(encode_fps=t / c.encode.seconds if c.encode.seconds > 0 else None,
                   decode_fps=t / c.decode.seconds if c.decode.seconds > 0 else None)
        values, more = scorer.video(ref.frames, c.frames)
        row.update(values)
        notes += more
    if c.audio is not None and ref.audio is not None:
        values, more = scorer.audio(ref.audio, c.audio)
        row.update(values)
        notes += more
    row["notes"] = "; ".join(n.replace(";", ",").replace("\n", " ") for n in notes)
    return row


def _failed_row(ref: Reference, spec: CodecSpec, point: Any, exc: AvfcError) -> dict[str, Any]:
    return {"clip": ref.name, "codec": spec.name, "point": str(point), "param": str(point),
            "frames": ref.frames.shape[0], "duration_s": ref.duration,
            "notes": f"failed: {type(exc).__name__}: {exc}".replace(";", ",")}


# --------------------------------------------------------------------------- the run
@dataclass
class BenchResult:
    """Rows of results.csv and the files written."""

    rows: list[dict[str, Any]]
    files: list[Path]


def _execution_order(specs: Sequence[CodecSpec]) -> list[CodecSpec]:
    """avfc modes first: the baseline is matched to the first one's rates."""
    return [s for s in specs if s.kind == "avfc"] + [s for s in specs if s.kind != "avfc"]


def _run_point(ref: Reference, spec: CodecSpec, point: Any, cfg: BenchConfig,
               avfc_bytes: dict[float, int]) -> Coded:
    if spec.kind == "avfc":
        return _code_avfc(ref, spec, float(point), cfg)
    if spec.kind == "baseline":
        return _code_baseline(ref, float(point), avfc_bytes.get(float(point)),
                              held=placed_frame(ref) if spec.mode == "placed" else 0)
    if spec.kind in anchors.VIDEO_ANCHORS:
        return _code_video_anchor(ref, spec.kind, int(point), cfg)
    return _code_audio_anchor(ref, spec.kind, point)


def _stride_text(stride: int) -> str:
    if stride == 1:
        return "Every metric on every frame (`--all-frames`)."
    return (f"SSIM, MS-SSIM, LPIPS and DISTS on every {stride}th frame (frames {stride // 2}, "
            f"{stride // 2 + stride}, ...; `--metric-stride`, `--all-frames` for every frame; the CSV's "
            f"`metric_frames` says how many), PSNR and mouth motion on every frame.")


# --------------------------------------------------------------------------- time estimate
#: seconds per frame to encode and decode one rate point, by codec kind, on the 2-core CPU of
#: docs/results.md (medians of encode_s + decode_s over frames in docs/data/bench-*.csv: avfc's default
#: with the rate control 0.19-0.26, the baseline 0.02-0.03, x265 0.04, SVT-AV1 0.014; audio-only less)
_CODING_S_PER_FRAME = {"avfc": 0.3, "baseline": 0.03, "x265": 0.05, "svtav1": 0.02, "opus": 0.002,
                       "codec2": 0.002}
#: seconds per scored frame at 256x256 on that CPU: SSIM + MS-SSIM (about 0.16 measured) ...
_SSIM_S_PER_FRAME = 0.2
#: ... and LPIPS-Alex, LPIPS-VGG and DISTS together (0.3 + 1.3 + 0.3 measured with 2 threads while another job
#: ran; 2.5 makes the estimate of every frame of one 2-s clip under the default codecs the 35 minutes that
#: such a run took, issue 19)
_NETS_S_PER_FRAME = 2.5
#: PESQ-WB and STOI, per second of speech, and each stage's fixed cost (model loads, process start-up)
_AUDIO_METRICS_S_PER_S = 0.2
_POINT_OVERHEAD_S = 0.5


def _clip_frames(path: Path, fps: int, limit: Optional[int]) -> int:
    """Frames of a clip at ``fps`` from its container's duration (cheap: nothing is decoded), at most
    ``limit``; ``limit`` (or 250) when the duration is unknown."""
    fallback = limit if limit is not None else 250
    try:
        import av

        with av.open(str(path)) as c:
            seconds = c.duration / 1_000_000 if c.duration else None
            if seconds is None and c.streams.video:
                v = c.streams.video[0]
                seconds = float(v.duration * v.time_base) if v.duration and v.time_base else None
    except Exception:  # noqa: BLE001 - any unreadable clip: load_reference reports it properly later
        return fallback
    if not seconds or seconds <= 0:
        return fallback
    n = max(1, int(round(seconds * fps)))
    return min(n, limit) if limit is not None else n


def estimate_seconds(cfg: BenchConfig, clip_frames: Sequence[int], nets: bool, stride: Optional[int] = None) -> float:
    """Rough wall time of a run over clips of ``clip_frames`` frames on the 2-core CPU of
    docs/results.md: coding per codec and point, the costly metrics on ``len(range(stride // 2, T,
    stride))`` frames (``nets``: with LPIPS and DISTS), the audio metrics. An estimate: a faster or idle
    machine takes less, a GPU (``--device cuda``) much less for the metrics."""
    stride = cfg.metric_stride if stride is None else int(stride)
    total = 0.0
    for t in clip_frames:
        scored = max(1, len(range(stride // 2, t, stride)))
        seconds = t / cfg.fps
        for spec in cfg.codecs:
            video = spec.kind in ("avfc", "baseline", "x265", "svtav1")
            audio = spec.kind in ("avfc", "baseline", "opus", "codec2")
            per_point = _POINT_OVERHEAD_S + _CODING_S_PER_FRAME[spec.kind] * t
            if video:
                per_point += scored * (_SSIM_S_PER_FRAME + (_NETS_S_PER_FRAME if nets else 0.0))
            if audio:
                per_point += _AUDIO_METRICS_S_PER_S * seconds
            total += per_point * len(cfg.points(spec))
    return total


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _estimate_line(cfg: BenchConfig, clips: Sequence[Path], nets: bool) -> tuple[str, float]:
    """The line printed before the work starts, and the estimate in seconds."""
    frames = [_clip_frames(c, cfg.fps, cfg.frames) for c in clips]
    points = len(clips) * sum(len(cfg.points(s)) for s in cfg.codecs)
    est = estimate_seconds(cfg, frames, nets)
    what = ("every frame" if cfg.metric_stride == 1
            else f"every {cfg.metric_stride}th frame")
    line = (f"avfc bench: {len(clips)} clip{'s' if len(clips) != 1 else ''}, {sum(frames)} frames, {points} point{'s' if points != 1 else ''}; "
            f"SSIM/MS-SSIM{'/LPIPS/DISTS' if nets else ''} on {what}: about {_minutes(est)} on a 2-core CPU "
            "(an estimate)")
    if cfg.metric_stride != 1:
        line += f"; --all-frames: about {_minutes(estimate_seconds(cfg, frames, nets, stride=1))}"
    return line, est


def _header_lines(cfg: BenchConfig, clips: Sequence[Path], rows: Sequence[dict[str, Any]], command: str,
                  env: dict[str, Any], weights_how: str) -> list[str]:
    frames = sorted({int(r["frames"]) for r in rows}) if rows else []
    m = env["machine"]
    return [
        f"{len(clips)} clips from `{cfg.clips}`, at most {cfg.frames or 'all'} frames each "
        f"({frames[0] if frames else 0}-{frames[-1] if frames else 0}), {cfg.size}x{cfg.size}, {cfg.fps} fps, "
        f"16 kHz mono. {_stride_text(cfg.metric_stride)} Metric weights: {weights_how}.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, torch {env['versions']['torch']} "
        f"({m['torch_threads']} threads), device {m['device']}; avfc {env['versions']['avfc']}, "
        f"PyAV {env['versions']['pyav']}; {env['date']}.",
        "",
        "Rates: avfc counts its whole file, the baseline its AV1 key-frame payload plus Codec2 700C "
        "tokens, x265/SVT-AV1 their raw bitstream (video only), Opus/Codec2 their packed tokens. "
        "Video metrics are compared at equal *video* kbps (every byte but the audio's).",
    ]


def run_bench(cfg: BenchConfig, command: Optional[str] = None) -> BenchResult:
    """Run the benchmark and write results.csv, summary.md, PNG plots and meta.json to ``cfg.out_dir``.

    results.csv is rewritten after every clip, so an interrupted run keeps what it measured.
    A codec that fails on a clip with an :class:`AvfcError` gets a row saying so; the run goes on.

    Raises:
        ConfigError: bad configuration, no clips, an existing results.csv without ``force``.
        MediaError: the output directory cannot be written.
    """
    cfg.check()
    clips = find_clips(cfg.clips, cfg.max_clips)
    out = Path(cfg.out_dir)
    if (out / "results.csv").exists() and not cfg.force:
        raise ConfigError(f"{out / 'results.csv'} exists; use -f to overwrite it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MediaError(f"cannot create {out}: {exc.strerror}") from exc
    weights, weights_how = find_metric_weights(cfg.weights)
    scorer = Scorer(weights, weights_how, cfg.device, cfg.metric_stride)
    line, estimate = _estimate_line(cfg, clips, bool(scorer.nets))
    print(line, file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    command = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    env = environment(cfg.device)
    specs = _execution_order(cfg.codecs)
    first_avfc = next((s for s in specs if s.kind == "avfc"), None)
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    total = len(clips) * sum(len(cfg.points(s)) for s in specs)
    with tqdm(total=total, desc="bench", unit="point", disable=not cfg.progress, file=sys.stderr) as bar:
        for clip in clips:
            bar.set_postfix_str(f"{clip.stem}: reading")
            try:
                ref = load_reference(clip, cfg.size, cfg.fps, cfg.frames)
            except AvfcError as exc:
                rows.append({"clip": clip.stem, "codec": "-", "point": "-", "notes": f"failed to read: {exc}"})
                bar.update(sum(len(cfg.points(s)) for s in specs))
                continue
            avfc_bytes: dict[float, int] = {}
            for spec in specs:
                for point in cfg.points(spec):
                    bar.set_postfix_str(f"{ref.name} {spec.name} {point}")
                    try:
                        coded = _run_point(ref, spec, point, cfg, avfc_bytes)
                        if spec == first_avfc:
                            avfc_bytes[float(point)] = coded.bytes_video + coded.bytes_audio
                        rows.append(_row(ref, spec, coded, scorer))
                    except AvfcError as exc:
                        rows.append(_failed_row(ref, spec, point, exc))
                    bar.update(1)
            write_csv(rows, out / "results.csv")
    timing = {"estimated_s": round(estimate, 1), "elapsed_s": round(time.perf_counter() - t0, 1)}
    return _finish(cfg, clips, rows, out, command, env, weights, weights_how, scorer, timing)


def _finish(cfg: BenchConfig, clips: Sequence[Path], rows: list[dict[str, Any]], out: Path, command: str,
            env: dict[str, Any], weights: Optional[Path], weights_how: str, scorer: Scorer,
            timing: Optional[dict[str, float]] = None) -> BenchResult:
    files = [write_csv(rows, out / "results.csv")]
    names = [s.name for s in cfg.codecs]
    tested = [s.name for s in cfg.codecs if s.kind in ("avfc", "baseline")]
    anchor_names = [n for n in names if n in ("baseline", "x265", "svtav1")]
    bd = bd_table(rows, tested, anchor_names)
    floors = []
    for s in cfg.codecs:
        if s.kind in anchors.VIDEO_ANCHORS:
            qp = max(cfg.points(s))
            kbps = [float(r["kbps_video"]) for r in rows
                    if r["codec"] == s.name and r.get("param") == str(qp) and r.get("kbps_video") is not None]
            floors.append((s.name, int(qp), kbps))
    try:
        plots = write_plots(out, rows)
        plots_note = f"{len(plots)} PNG files"
    except ConfigError as exc:  # matplotlib missing: every other output is still complete
        plots, plots_note = [], f"not drawn: {exc}"
        print(f"warning: plots {plots_note}", file=sys.stderr)
    header = _header_lines(cfg, clips, rows, command, env, weights_how)
    if not plots:
        header += ["", f"Plots: {plots_note}."]
    files.append(write_summary(out / "summary.md", rows, bd, floors, header))
    files += plots
    meta = {
        **env,
        "command": command,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items() if k != "codecs"},
        "codecs": [s.name for s in cfg.codecs],
        "avfc_modes": {s.mode: AVFC_MODES[s.mode] for s in cfg.codecs if s.kind == "avfc"},
        "anchor_presets": {"x265": cfg.x265_preset, "svtav1": cfg.svtav1_preset},
        "clips": [c.name for c in clips],
        "metric_weights": str(weights) if weights else None,
        "metric_weights_found": weights_how,
        "metrics_missing": scorer.missing,
        "metrics": [m.key for m in METRICS],
        "audio_metrics_alignment": "none (codecs compensate their delay); PESQ aligns internally",
        "memory_method": MEMORY_METHOD,
        "plots": plots_note,
        "rows": len(rows),
        **(timing or {}),  # the estimate printed at the start and the time the clips took
    }
    files.append(write_meta(out / "meta.json", meta))
    return BenchResult(rows, files)


# --------------------------------------------------------------------------- CLI
def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``avfc bench``'s arguments to ``parser`` (the CLI's ``bench`` subcommand)."""
    d = BenchConfig(Path("."), Path("."))
    parser.add_argument("clips_dir", metavar="CLIPS_DIR", help="a directory of clips (or one clip)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                        help="where results.csv, summary.md, the plots and meta.json go")
    parser.add_argument("--codecs", default=DEFAULT_CODECS,
                        help=f"comma-separated: {', '.join(CODEC_KINDS)}, avfc:MODE, baseline:placed (the frame where "
                             "avfc places its key frame, held still) (default %(default)s)")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in d.rates),
                        help="total kbit/s points of avfc and the baseline (default %(default)s)")
    parser.add_argument("--frames", type=int, default=d.frames, help="at most N frames per clip (default %(default)s)")
    parser.add_argument("--clips", type=int, default=None, dest="max_clips", help="only the first N clips (by name)")
    parser.add_argument("--weights", default=None, metavar="DIR",
                        help="LPIPS/DISTS weights (default: $AVFC_WEIGHTS_DIR, then ../shared/weights)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for avfc's decoder and the metrics")
    parser.add_argument("--size", type=int, default=d.size, help="coded width = height (default %(default)s)")
    parser.add_argument("--x265-qps", default=",".join(map(str, d.x265_qps)), help="x265 QP sweep (default %(default)s)")
    parser.add_argument("--svtav1-qps", default=",".join(map(str, d.svtav1_qps)),
                        help="SVT-AV1 QP sweep (default %(default)s)")
    parser.add_argument("--x265-preset", default=d.x265_preset, help="x265 preset (default %(default)s)")
    parser.add_argument("--svtav1-preset", default=d.svtav1_preset, help="SVT-AV1 preset (default %(default)s)")
    parser.add_argument("--opus-rates", default=",".join(map(str, d.opus_rates)),
                        help="Opus bit/s points (default %(default)s)")
    parser.add_argument("--codec2-modes", default=",".join(d.codec2_modes), help="Codec2 modes (default %(default)s)")
    scored = parser.add_mutually_exclusive_group()
    scored.add_argument("--metric-stride", type=int, default=d.metric_stride, metavar="N",
                        help="SSIM/MS-SSIM/LPIPS/DISTS on every Nth frame (default %(default)s; PSNR and mouth "
                             "motion on every frame; the CSV's metric_stride column says which)")
    scored.add_argument("--all-frames", action="store_true",
                        help="SSIM/MS-SSIM/LPIPS/DISTS on every frame (--metric-stride 1; about 10x slower)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-f", "--force", action="store_true", help="overwrite an earlier run in OUT_DIR")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A :class:`BenchConfig` from parsed arguments (ConfigError on bad lists)."""
    return BenchConfig(
        clips=Path(args.clips_dir),
        out_dir=Path(args.output),
        codecs=parse_codecs(args.codecs),
        rates=_parse_numbers(args.rates, float, "--rates"),
        frames=args.frames,
        max_clips=args.max_clips,
        weights=Path(args.weights) if args.weights else None,
        device=args.device,
        size=args.size,
        x265_qps=_parse_numbers(args.x265_qps, int, "--x265-qps"),
        svtav1_qps=_parse_numbers(args.svtav1_qps, int, "--svtav1-qps"),
        x265_preset=args.x265_preset,
        svtav1_preset=args.svtav1_preset,
        opus_rates=_parse_numbers(args.opus_rates, int, "--opus-rates"),
        codec2_modes=_parse_numbers(args.codec2_modes, str, "--codec2-modes"),
        metric_stride=1 if getattr(args, "all_frames", False) else args.metric_stride,
        progress=not args.no_progress,
        force=args.force,
    )


def run_bench_from_args(args: argparse.Namespace) -> int:
    """Run ``avfc bench`` from parsed arguments; prints where the results are. Returns 0."""
    result = run_bench(config_from_args(args))
    print(f"{len(result.rows)} rows; wrote {', '.join(p.name for p in result.files)} to {Path(args.output)}")
    return 0
