"""``avfc bench``: test conditions, a tiny end-to-end run, its outputs, and the report helpers."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from avfc.errors import ConfigError
from avfc.eval import anchors, bench
from avfc.eval.report import COLUMNS, VIDEO_METRICS, bd_table, group_rows
from avfc.media.synthetic import write_clip

FRAMES = 20
SIZE = 64
HAVE = {name: importlib.util.find_spec(name) is not None for name in ("matplotlib", "pesq", "pystoi")}


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    write_clip(d / "talk.mp4", FRAMES, 96, 80)
    (d / "notes.txt").write_text("not a clip")
    return d


@pytest.fixture()
def no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make sure no metric weights can be found, whatever this machine holds."""
    monkeypatch.delenv("AVFC_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(bench, "SHARED_WEIGHTS", tmp_path / "nowhere")


def _args(clips: Path, out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    return parser.parse_args([str(clips), "-o", str(out), "--size", str(SIZE), "--no-progress", *extra])


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


PACKETS: dict[tuple[str, int], list[int]] = {}  # packet sizes the video anchors returned in `run`


@pytest.fixture(scope="module")
def run(clips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small run of every codec: 2 rate points each (1 for the audio anchors)."""
    out = tmp_path_factory.mktemp("bench")
    mp = pytest.MonkeyPatch()
    mp.delenv("AVFC_WEIGHTS_DIR", raising=False)
    mp.setattr(bench, "SHARED_WEIGHTS", out / "nowhere")
    encode = anchors.encode_video_anchor

    def recording(frames: np.ndarray, codec: str, qp: int, *args: object) -> list[bytes]:
        packets = encode(frames, codec, qp, *args)  # type: ignore[arg-type]
        PACKETS[(codec, qp)] = [len(p) for p in packets]
        return packets

    mp.setattr(anchors, "encode_video_anchor", recording)
    try:
        args = _args(clips_dir, out, "--rates", "6,10", "--x265-qps", "51,40", "--svtav1-qps", "63,50",
                     "--opus-rates", "8000", "--codec2-modes", "1300")
        assert bench.run_bench_from_args(args) == 0
    finally:
        mp.undo()
    return out


def test_reference_is_the_cropped_clip_with_its_audio(clips_dir: Path) -> None:
    ref = bench.load_reference(clips_dir / "talk.mp4", SIZE, 25, 12)
    assert ref.frames.shape == (12, SIZE, SIZE, 3) and ref.frames.dtype == np.uint8
    assert ref.crop.w == ref.crop.h == 80  # the largest square of the 96x80 source (no face in it)
    assert ref.audio is not None and ref.audio.shape == (12 * 16000 // 25,)
    assert ref.duration == pytest.approx(12 / 25)


def test_results_csv_has_every_column_and_one_row_per_point(run: Path) -> None:
    header, rows = _read_csv(run / "results.csv")
    assert header == list(COLUMNS)
    expected = {"avfc": 2, "baseline": 2, "x265": 2, "svtav1": 2, "opus": 1, "codec2": 1}
    assert {c: sum(r["codec"] == c for r in rows) for c in expected} == expected
    assert len(rows) == sum(expected.values())
    assert {r["clip"] for r in rows} == {"talk"}
    for r in rows:
        assert "failed" not in r["notes"], r
        total = int(r["bytes_total"])
        assert total == int(r["bytes_video"]) + int(r["bytes_audio"]) > 0
        assert float(r["kbps_total"]) == pytest.approx(total * 8 / 1000 / (FRAMES / 25), rel=1e-5)


def test_rows_carry_the_metrics_their_codec_allows(run: Path) -> None:
    _, rows = _read_csv(run / "results.csv")
    for r in rows:
        video = r["codec"] in ("avfc", "baseline", "x265", "svtav1")
        audio = r["codec"] in ("avfc", "baseline", "opus", "codec2")
        assert (r["psnr"] != "") == video and (r["ssim"] != "") == video
        assert (r["mouth_motion_l1"] != "") == video
        assert (r["encode_fps"] != "") == video
        assert (r["si_sdr"] != "") == audio
        for key, package in (("pesq_wb", "pesq"), ("stoi", "pystoi")):  # optional packages ([eval])
            if audio and not HAVE[package]:
                assert r[key] == "" and f"needs the '{package}' package" in r["notes"]
            else:
                assert (r[key] != "") == audio
        assert float(r["encode_s"]) > 0 and float(r["decode_s"]) > 0
        assert float(r["encode_peak_mib"]) >= 0
        if video:
            assert 5.0 < float(r["psnr"]) < 60.0
            assert r["ms_ssim"] == "" and "ms_ssim: MS-SSIM needs frames" in r["notes"]  # 64 px < 161 px
        if not audio:
            assert r["bytes_audio"] == "0"


def test_metrics_are_marked_missing_without_weights(run: Path) -> None:
    _, rows = _read_csv(run / "results.csv")
    video_rows = [r for r in rows if r["psnr"]]
    assert video_rows
    for r in video_rows:
        for key in ("lpips_alex", "lpips_vgg", "dists"):
            assert r[key] == ""
            assert f"{key}: no metric weights found" in r["notes"]
    meta = json.loads((run / "meta.json").read_text())
    assert set(meta["metrics_missing"]) == {"lpips_alex", "lpips_vgg", "dists"}
    assert meta["metric_weights"] is None
    summary = (run / "summary.md").read_text()
    assert "lpips_alex: no metric weights found" in summary


def test_rates_are_counted_as_documented(run: Path, clips_dir: Path) -> None:
    _, rows = _read_csv(run / "results.csv")
    by = {(r["codec"], r["param"].split(" ")[0]): r for r in rows}
    ref = bench.load_reference(clips_dir / "talk.mp4", SIZE, 25, 100)
    # video anchors: the raw packets, nothing else (one packet per frame)
    assert set(PACKETS) == {("x265", 51), ("x265", 40), ("svtav1", 63), ("svtav1", 50)}
    for (codec, qp), sizes in PACKETS.items():
        assert len(sizes) == FRAMES
        assert int(by[(codec, str(qp))]["bytes_video"]) == sum(sizes)
    # the baseline is matched to avfc's whole file at each rate point, and does not exceed it
    for rate in ("6", "10"):
        assert 0 < int(by[("baseline", rate)]["bytes_total"]) <= int(by[("avfc", rate)]["bytes_total"])
    assert int(by[("avfc", "6")]["bytes_total"]) < int(by[("avfc", "10")]["bytes_total"])
    # audio anchors: the packed tokens
    assert int(by[("codec2", "1300")]["bytes_audio"]) == len(anchors.encode_audio_anchor(ref.audio, "codec2", "1300"))


def test_summary_plots_and_meta(run: Path) -> None:
    summary = (run / "summary.md").read_text()
    for heading in ("## Video", "## Audio", "## Lowest video rate", "## BD-rate"):
        assert heading in summary
    video_table = summary.split("## Video")[1].split("## Audio")[0]
    assert video_table.count("\n| avfc |") == 2 and video_table.count("\n| x265 |") == 2
    assert "\n| opus |" not in video_table  # audio-only codecs are in the audio table only
    assert "| avfc | x265 |" in summary and "| baseline | svtav1 |" in summary
    meta = json.loads((run / "meta.json").read_text())
    if HAVE["matplotlib"]:
        for name in ("psnr", "ssim", "mouth_motion_l1", "si_sdr"):
            png = (run / f"{name}.png").read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
        assert not (run / "lpips_alex.png").exists()  # nothing measured, nothing drawn
    else:  # an optional package ([eval]): everything but the plots is written, and says so
        assert not list(run.glob("*.png")) and "matplotlib" in meta["plots"] and "Plots: not drawn" in summary
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu"]
    assert meta["versions"]["torch"] and meta["versions"]["pyav"] and meta["versions"]["avfc"]
    assert meta["date"] and meta["command"] and meta["memory_method"]
    assert meta["codecs"] == ["avfc", "baseline", "x265", "svtav1", "opus", "codec2"]


def test_existing_results_need_force(run: Path, clips_dir: Path) -> None:
    with pytest.raises(ConfigError, match="exists"):
        bench.run_bench_from_args(_args(clips_dir, run, "--codecs", "opus"))


def test_perceptual_metrics_with_real_weights(clips_dir: Path, tmp_path: Path, weights_dir: Path) -> None:
    args = _args(clips_dir, tmp_path, "--codecs", "baseline", "--rates", "6", "--weights", str(weights_dir),
                 "--frames", "6")
    bench.run_bench_from_args(args)
    _, rows = _read_csv(tmp_path / "results.csv")
    (row,) = rows
    for key in ("lpips_alex", "lpips_vgg", "dists"):
        assert 0.0 < float(row[key]) < 1.0
    assert "weights" not in row["notes"]


def test_metric_stride_samples_frames() -> None:
    scorer = bench.Scorer(None, "none", "cpu", 10)
    assert scorer.sample(100).tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    assert scorer.sample(3).tolist() == [1]
    assert bench.Scorer(None, "none", "cpu", 1).sample(4).tolist() == [0, 1, 2, 3]


def test_costly_metrics_score_every_10th_frame_by_default_and_the_csv_says_so(run: Path) -> None:
    assert bench.BenchConfig(Path("."), Path(".")).metric_stride == bench.DEFAULT_METRIC_STRIDE == 10
    _, rows = _read_csv(run / "results.csv")  # the run used the defaults: 20 frames, stride 10
    video = [r for r in rows if r["psnr"]]
    assert video and all(r["metric_stride"] == "10" and r["metric_frames"] == "2" for r in video)
    assert all(r["metric_stride"] == "" for r in rows if not r["psnr"])  # audio-only rows score no frames
    assert "on every 10th frame" in (run / "summary.md").read_text()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["config"]["metric_stride"] == 10 and meta["estimated_s"] > 0 and meta["elapsed_s"] > 0


def test_all_frames_asks_for_every_frame(tmp_path: Path) -> None:
    assert bench.config_from_args(_args(tmp_path, tmp_path / "o", "--all-frames")).metric_stride == 1
    assert bench.config_from_args(_args(tmp_path, tmp_path / "o", "--metric-stride", "4")).metric_stride == 4
    assert bench.config_from_args(_args(tmp_path, tmp_path / "o")).metric_stride == 10
    with pytest.raises(SystemExit):  # one or the other
        _args(tmp_path, tmp_path / "o", "--all-frames", "--metric-stride", "3")


def test_time_estimate_before_the_work(clips_dir: Path, tmp_path: Path, no_weights: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = bench.BenchConfig(clips_dir, tmp_path)
    # one 2-second clip under the default codecs and weights: under 5 minutes by default, every frame ~35 min
    est = bench.estimate_seconds(cfg, [50], nets=True)
    assert 60 < est < 300
    assert 25 * 60 < bench.estimate_seconds(cfg, [50], nets=True, stride=1) < 45 * 60
    assert bench.estimate_seconds(cfg, [50], nets=False) < est < bench.estimate_seconds(cfg, [100], nets=True)
    assert bench._clip_frames(clips_dir / "talk.mp4", 25, None) == FRAMES  # from the container, nothing decoded
    assert bench._clip_frames(clips_dir / "talk.mp4", 25, 12) == 12
    assert bench._clip_frames(clips_dir / "notes.txt", 25, 7) == 7  # unreadable: the limit
    # printed before any coding: the run below has one clip of 20 frames and one Opus point
    bench.run_bench_from_args(_args(clips_dir, tmp_path / "est", "--codecs", "opus", "--opus-rates", "8000"))
    err = capsys.readouterr().err
    assert "avfc bench: 1 clip, 20 frames, 1 point;" in err and "(an estimate)" in err
    assert "--all-frames: about" in err


def test_parse_codecs(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = bench.parse_codecs("avfc, x265,avfc:default,opus")
    assert [s.name for s in specs] == ["avfc", "x265", "opus"]
    monkeypatch.setitem(bench.AVFC_MODES, "hevc-keys", {"key_codec": "hevc"})
    assert [s.name for s in bench.parse_codecs("avfc:hevc-keys,avfc")] == ["avfc:hevc-keys", "avfc"]
    for bad in ("", "vvc", "avfc:nope", "x265:fast"):
        with pytest.raises(ConfigError):
            bench.parse_codecs(bad)
    monkeypatch.setitem(bench.AVFC_MODES, "broken", {"size": 7})
    with pytest.raises(ConfigError):
        bench.parse_codecs("avfc:broken")


def test_bad_configuration_is_refused(clips_dir: Path, tmp_path: Path, no_weights: None) -> None:
    for extra in (["--rates", "3,x"], ["--x265-qps", "60"], ["--svtav1-qps", "0"], ["--frames", "0"],
                  ["--opus-rates", "1000"], ["--codec2-modes", "450"], ["--device", "tpu"], ["--size", "72"],
                  ["--metric-stride", "0"]):
        with pytest.raises(ConfigError):
            bench.run_bench_from_args(_args(clips_dir, tmp_path / "x", *extra))
    with pytest.raises(ConfigError):
        bench.run_bench_from_args(_args(tmp_path / "missing", tmp_path / "y"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no video clips"):
        bench.run_bench_from_args(_args(empty, tmp_path / "z"))
    with pytest.raises(ConfigError, match="not a directory"):
        bench.run_bench_from_args(_args(clips_dir, tmp_path / "w", "--weights", str(tmp_path / "nope")))


def test_stage_measures_time_and_memory() -> None:
    if bench._rss_bytes() is None:
        pytest.skip("no /proc/self/statm here")
    with bench.Stage() as stage:
        block = np.ones(48 << 20, dtype=np.uint8)  # 48 MiB, touched
        assert int(block[::4096].sum()) == (48 << 20) // 4096
    assert stage.peak_mib >= 40 and stage.seconds > 0
    del block
    with bench.Stage() as idle:
        pass
    assert idle.peak_mib < 40


def _rows(codec: str, rates: list[float], values: list[float], clip: str = "a") -> list[dict[str, object]]:
    return [{"clip": clip, "codec": codec, "point": f"{r}", "kbps_total": r, "kbps_video": r, "psnr": v}
            for r, v in zip(rates, values)]


def test_bd_table_per_clip_and_reasons() -> None:
    psnr = [m for m in VIDEO_METRICS if m.key == "psnr"]
    anchor = _rows("x265", [10, 20, 40], [30, 33, 36])
    half = _rows("avfc", [5, 10, 20], [30, 33, 36])  # same quality at half the rate
    (cell,) = bd_table(anchor + half, ["avfc"], ["x265"], psnr)
    assert cell.values == [pytest.approx(-50.0)] and cell.text() == "-50.0 % (1/1)"
    apart = _rows("avfc", [5, 10], [20, 21])  # never as good as the anchor's worst
    (cell,) = bd_table(anchor + apart, ["avfc"], ["x265"], psnr)
    assert not cell.values and cell.text() == "n/a: no overlap (1/1)"
    worse = _rows("avfc", [5, 10], [34, 31])  # quality falls as the rate rises
    (cell,) = bd_table(anchor + worse, ["avfc"], ["x265"], psnr)
    assert cell.text() == "n/a: not improving with rate (1/1)"
    two_clips = anchor + half + _rows("x265", [10, 20], [30, 33], "b") + _rows("avfc", [10], [30], "b")
    (cell,) = bd_table(two_clips, ["avfc"], ["x265"], psnr)
    assert cell.clips == 2 and cell.text() == "-50.0 % (1/2)"


def test_group_rows_orders_points_by_rate() -> None:
    rows = _rows("avfc", [8, 3, 5], [1, 2, 3]) + _rows("x265", [9, 7], [1, 2])
    groups = group_rows(rows)
    assert [(g.codec, g.point) for g in groups] == [("avfc", "3"), ("avfc", "5"), ("avfc", "8"),
                                                     ("x265", "7"), ("x265", "9")]
    assert groups[0].mean("psnr") == 2 and groups[0].mean("ssim") is None


def test_the_search_modes_take_the_perceptual_term_from_the_metric_weights(monkeypatch: pytest.MonkeyPatch,
                                                                           no_weights: None) -> None:
    """``avfc:search-lpips-alex`` (and -vgg, -dists) encode with the search's perceptual term built from the
    bench's metric weights, and refuse to run without them."""
    assert [s.name for s in bench.parse_codecs("avfc:search-lpips-alex,avfc:search-dists")] == [
        "avfc:search-lpips-alex", "avfc:search-dists"]
    frames = np.zeros((4, 64, 64, 3), np.uint8)
    ref = bench.Reference(name="x", frames=frames, audio=None, fps=25, crop=None)
    seen: dict = {}

    def fake_encode(media, **kw):
        seen.update(kw)
        raise RuntimeError("stop")  # only the arguments matter here

    monkeypatch.setattr("avfc.encode", fake_encode)
    monkeypatch.setattr(bench, "_search_term", lambda weights, metric, device: ("term", weights, metric))
    cfg = bench.BenchConfig(clips=Path("."), out_dir=Path("."))
    spec = bench.CodecSpec("avfc", "search-dists")
    with pytest.raises(ConfigError, match="needs the metric weights"):
        bench._code_avfc(ref, spec, 5.0, cfg)
    monkeypatch.setenv("AVFC_WEIGHTS_DIR", str(Path(__file__).parent))  # any folder: the term is faked
    with pytest.raises(RuntimeError, match="stop"):
        bench._code_avfc(ref, spec, 5.0, cfg)
    assert seen["search_perceptual"][2] == "dists" and seen["bitrate_kbps"] == 5.0
    seen.clear()
    with pytest.raises(RuntimeError, match="stop"):  # a model's search mode: its model and its term
        bench._code_avfc(ref, bench.CodecSpec("avfc", "v6-search-lpips-alex"), 5.0, cfg)
    assert seen["search_perceptual"][2] == "lpips-alex" and seen["model"] == "mrdac-cpu-v6"
    seen.clear()
    with pytest.raises(RuntimeError, match="stop"):  # a mode without a term gets none
        bench._code_avfc(ref, bench.CodecSpec("avfc", "v6"), 5.0, cfg)
    assert "search_perceptual" not in seen and seen["model"] == "mrdac-cpu-v6"


def test_the_placed_baseline_holds_the_frame_where_avfc_places_its_key_frame() -> None:
    """``baseline:placed`` holds the picture of :func:`avfc.codec.search.place_key`'s frame (the default model's
    keypoints), ``baseline`` frame 0; both at the same bytes."""
    from avfc.media.synthetic import talking_face

    assert [s.name for s in bench.parse_codecs("baseline,baseline:placed")] == ["baseline", "baseline:placed"]
    with pytest.raises(ConfigError, match="baseline mode"):
        bench.parse_codecs("baseline:last")
    frames = talking_face(20, 64, 64, seed=21)
    frames[:6] = np.roll(frames[:6], 10, axis=2)  # the clip starts away from its usual place
    ref = bench.Reference(name="x", frames=frames, audio=None, fps=25, crop=None)
    k = bench.placed_frame(ref)
    assert k >= 6
    held = bench._code_baseline(ref, 5.0, 2000, held=k)
    first = bench._code_baseline(ref, 5.0, 2000)
    assert held.bytes_video <= 2000 and first.bytes_video <= 2000 and f"frame {k}" in held.param

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())

    assert err(held.frames[0], frames[k]) < err(held.frames[0], frames[0])
    assert err(first.frames[0], frames[0]) < err(first.frames[0], frames[k])
