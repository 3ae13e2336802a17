"""benchmarks/effort.py: the per-preset means it reports (the numbers of the effort table in docs/results.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_effort_script", ROOT / "benchmarks" / "effort.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(clip: str, codec: str, rate: str, fps: float, psnr: float) -> dict[str, str]:
    return {"clip": clip, "codec": codec, "target_kbps": rate, "encode_fps": str(fps), "psnr": str(psnr),
            "kbps_total": rate, "lpips_alex": "", "dists": "nan"}


def test_means_over_common_clips_at_one_rate() -> None:
    eff = _load()
    rows = [
        _row("a", "avfc:effort-fast", "5", 4.0, 20.0),
        _row("b", "avfc:effort-fast", "5", 6.0, 22.0),
        _row("c", "avfc:effort-fast", "5", 100.0, 99.0),  # clip c has no detector row: left out of every mean
        _row("a", "avfc:effort-detector", "5", 8.0, 18.0),
        _row("b", "avfc:effort-detector", "5", 10.0, 19.0),
        _row("a", "avfc:effort-fast", "3", 1.0, 1.0),  # another rate: ignored
        _row("a", "avfc", "5", 1.0, 1.0),  # not an effort mode: ignored
    ]
    summary = eff.summarise(rows, 5.0)
    assert set(summary) == {"fast", "detector"}
    assert summary["fast"]["clips"] == 2
    assert summary["fast"]["encode_fps"] == pytest.approx(5.0)
    assert summary["fast"]["psnr"] == pytest.approx(21.0)
    assert summary["detector"]["psnr"] == pytest.approx(18.5)
    assert "lpips_alex" not in summary["fast"] and "dists" not in summary["fast"]  # empty / nan: not measured
    lines = eff.table(summary).splitlines()
    assert lines[2].startswith("| `detector` | 2 | 9.00") and lines[3].startswith("| `fast` | 2 | 5.00")
    assert eff.summarise(rows, 8.0) == {}


def test_writes_table_and_plot(tmp_path: Path) -> None:
    eff = _load()
    rows = [_row(c, f"avfc:effort-{e}", "5", fps, p) for c in ("a", "b")
            for e, fps, p in (("live", 20.0, 18.0), ("fast", 5.0, 20.0))]
    eff.write(rows, tmp_path, 5.0, "note")
    text = (tmp_path / "effort.md").read_text()
    assert text.startswith("note") and "| `live` | 2 | 20.00" in text
    pytest.importorskip("matplotlib")
    assert (tmp_path / "effort.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        eff.write(rows, tmp_path, 3.0)
