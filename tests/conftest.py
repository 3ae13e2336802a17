import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/synthetic.py

try:  # keep CI's two cores for pytest itself, not for oversubscribed torch threads
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repo (real data and weights); tests that need it skip without it."""
    return Path(os.environ.get("AVFC_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
