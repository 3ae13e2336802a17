"""A short fixed-seed slice of the fuzz driver (benchmarks/fuzz.py, issue 19 part 3), in-process: mutated golden
tiny-test streams through the parser, ``stream_info``, ``avfc.decode`` and the streaming ``Decoder``; no
exception outside the AvfcError family, no input over 10 s, no peak RSS over 1 GB. A few seconds on 2 cores.

The long runs (1,000,000 parser inputs, 10,000 full decodes) are ``python benchmarks/fuzz.py --inputs ...``;
the CLI target runs in ``benchmarks/fuzz.py --smoke`` (tests/test_scripts_smoke.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = 19
SLICE = {"parser": 3000, "info": 400, "decode": 40, "stream": 12}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_fuzz_driver", ROOT / "benchmarks" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    return _load()


@pytest.fixture(scope="module")
def corpus(fuzz: ModuleType) -> list:
    return fuzz.load_corpus(fresh=0)


def test_fixed_seed_slice_has_no_failures(fuzz: ModuleType, corpus: list, tmp_path: Path) -> None:
    fuzzer = fuzz.Fuzzer(SEED, corpus=corpus, out=tmp_path)
    try:
        report = fuzzer.run(SLICE)
    finally:
        fuzzer.close()
    assert not report.failures, report.text()
    assert {t: s.inputs for t, s in report.stats.items()} == SLICE
    # the mutations reach past the CRC: some decodes fail cleanly, most give frames
    decode = report.stats["decode"].outcomes
    assert decode.get("ok", 0) >= SLICE["decode"] // 2 and len(decode) >= 2, decode
    assert not list(tmp_path.iterdir())


def test_inputs_depend_only_on_seed_target_and_index(fuzz: ModuleType, corpus: list) -> None:
    allowed = [s for s in corpus if s.model == "tiny-test"]
    for target, index in (("parser", 7), ("decode", 3), ("stream", 0)):
        a = fuzz.make_input(SEED, target, index, corpus, allowed)
        assert fuzz.make_input(SEED, target, index, list(corpus), allowed) == a
    assert fuzz.make_input(SEED, "parser", 8, corpus, allowed) != fuzz.make_input(SEED, "parser", 7, corpus, allowed)


def test_a_foreign_exception_is_a_failure_with_its_input_saved(fuzz: ModuleType, corpus: list, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def leaky(data: bytes, _rng: object, _ctx: object) -> None:
        if len(data) % 2:
            raise KeyError("not ours")

    monkeypatch.setitem(fuzz.RUNNERS, "info", leaky)
    fuzzer = fuzz.Fuzzer(SEED, corpus=corpus, out=tmp_path)
    try:
        report = fuzzer.run({"info": 20})
    finally:
        fuzzer.close()
    odd = [i for i in range(20) if len(fuzz.make_input(SEED, "info", i, corpus, fuzzer.allowed)[0]) % 2]
    assert [f.index for f in report.failures] == odd and odd
    f = report.failures[0]
    assert f.kind == "exception" and "KeyError" in f.detail
    assert Path(f.path).read_bytes() == fuzz.make_input(SEED, "info", f.index, corpus, fuzzer.allowed)[0]
    assert f"--seed {SEED} --replay info:{f.index}" in report.text()


def test_memory_is_judged_on_what_the_run_adds(fuzz: ModuleType, corpus: list, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Under pytest the process has already peaked (torch, models: 1071 MB in CI, where the peak cannot be
    reset): an input is charged only for raising the peak above the RSS the run started from."""
    mem = {"rss": 900.0, "peak": 1071.0}
    monkeypatch.setattr(fuzz, "_reset_peak", lambda: None)  # a sandbox that refuses clear_refs
    monkeypatch.setattr(fuzz, "_current_rss_mb", lambda: mem["rss"])
    monkeypatch.setattr(fuzz, "_rss_mb", lambda who=None: mem["peak"])

    def grows(data: bytes, _rng: object, _ctx: object) -> None:
        used = 100.0 if len(data) % 2 else 1200.0  # MB above the start, while the input runs
        mem["peak"] = max(mem["peak"], mem["rss"] + used)

    monkeypatch.setitem(fuzz.RUNNERS, "info", grows)
    fuzzer = fuzz.Fuzzer(SEED, corpus=corpus, out=tmp_path)
    try:
        small = [i for i in range(20) if len(fuzz.make_input(SEED, "info", i, corpus, fuzzer.allowed)[0]) % 2]
        assert small, "the test wants a small input among the first 20"
        assert fuzzer.one("info", small[0]) is None  # 1000 MB < the 1071 MB peak found at the start: not this run's
        big = next(i for i in range(20) if i not in small)
        f = fuzzer.one("info", big)
    finally:
        fuzzer.close()
    assert f is not None and f.kind == "memory" and "1200 MB above its start" in f.detail, f


def test_slow_is_judged_on_the_inputs_own_time_not_a_busy_machines(fuzz: ModuleType, corpus: list, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An input that waits (as one does on a machine busy with other work) is not slow; one that computes is."""
    import time

    def waits(data: bytes, _rng: object, _ctx: object) -> None:
        time.sleep(0.4)  # wall time without CPU time

    def computes(data: bytes, _rng: object, _ctx: object) -> None:
        end = time.process_time() + 0.4
        while time.process_time() < end:
            pass

    fuzzer = fuzz.Fuzzer(SEED, corpus=corpus, out=tmp_path, slow_s=0.2)
    try:
        monkeypatch.setitem(fuzz.RUNNERS, "info", waits)
        assert fuzzer.one("info", 0) is None
        monkeypatch.setitem(fuzz.RUNNERS, "info", computes)
        f = fuzzer.one("info", 1)
    finally:
        fuzzer.close()
    assert f is not None and f.kind == "slow", f
