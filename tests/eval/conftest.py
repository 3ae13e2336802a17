"""Fixtures for the eval tests: the optional metric weights directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_NEEDED = ("vgg16_features.pth", "alexnet_features.pth", "lpips_v0.1_alex.pth", "lpips_v0.1_vgg.pth", "dists_alpha_beta.pt")


def _find_weights_dir() -> Path | None:
    candidates = []
    if os.environ.get("AVFC_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["AVFC_WEIGHTS_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "weights")
    for c in candidates:
        if c.is_dir() and all((c / n).is_file() for n in _NEEDED):
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """Directory of the real pretrained metric weights; skips the test when absent."""
    d = _find_weights_dir()
    if d is None:
        pytest.skip("metric weights not found (set AVFC_WEIGHTS_DIR or provide ../shared/weights)")
    return d
