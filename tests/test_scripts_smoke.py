"""Every script of benchmarks/ and examples/ has a ``--smoke`` flag that runs it on tiny synthetic input
(the ``tiny-test`` model or a shipped one, a few synthetic frames or a synthetic signal, nothing from
../shared, no LPIPS/DISTS weights) in seconds, and exits 0, so a script that rots fails here; and what
speed.py and drift.py read from a stream is right for the default format 2.0.

The scripts run as subprocesses, two at a time (the CI machine has 2 cores; most of each run is
importing torch): about 40 s of CPU in all.

TODO: none today. A new script must get ``--smoke`` (or, while it has none, be listed in NO_SMOKE_YET
with a reason; those are not run). The examples also run as written in tests/test_examples.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import avfc
from avfc.codec import Decoder
from avfc.media.synthetic import talking_face

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "examples").glob("*.py")])
#: scripts without --smoke yet, with the reason (the TODO above); a new script must get --smoke or be listed
NO_SMOKE_YET: dict[str, str] = {}
WORKERS = 2


def _has_smoke(script: Path) -> bool:
    return '"--smoke"' in script.read_text(encoding="utf-8")


SMOKE = [s for s in SCRIPTS if _has_smoke(s)]


def _rel(script: Path) -> str:
    return script.relative_to(ROOT).as_posix()


def test_every_script_has_smoke_or_is_listed_as_todo() -> None:
    without = {_rel(s) for s in SCRIPTS if not _has_smoke(s)}
    assert without == set(NO_SMOKE_YET), "give the new script --smoke, or update NO_SMOKE_YET and the TODO"
    assert {"benchmarks/speed.py", "benchmarks/drift.py"} <= {_rel(s) for s in SMOKE}


def _smoke(script: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AVFC_WEIGHTS_DIR", None)
    with tempfile.TemporaryDirectory() as cwd:  # whatever a script writes beside itself goes here
        return subprocess.run([sys.executable, str(script), "--smoke"], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def smoke_runs() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every smoke run, ``WORKERS`` at a time."""
    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(map(_rel, SMOKE), pool.map(_smoke, SMOKE)))


@pytest.mark.parametrize("script", SMOKE, ids=_rel)
def test_script_smoke_run_exits_0(script: Path, smoke_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    proc = smoke_runs[_rel(script)]
    assert proc.returncode == 0, f"{_rel(script)} --smoke exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), "a smoke run prints its report"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_smoke_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_speed_and_drift_read_a_default_2_0_stream() -> None:
    """The scripts' stream readers on what the default Encoder writes (format 2.0): the key frames where
    they were coded, and every frame's keypoints as the decoder has them, sparse packets included."""
    frames = talking_face(20, 64, 64, seed=5)
    res = avfc.encode(frames, model="tiny-test", size=64, audio="none", key_qp=40, packet_frames=10,
                      key_interval=8, max_refs=4, motion_stride=3)
    assert res.data[4:6] == b"\x02\x00"  # the default format
    drift, speed = _load("drift"), _load("speed")
    assert drift.key_indices(res.data) == [0, 8, 16]
    dec = Decoder(keep_motion=True)
    dec.push(res.data)
    dec.close()
    assert dec.issues == []
    np.testing.assert_array_equal(speed.stream_motion(res.data, dec.model.motion_channels), dec.motion_array())
