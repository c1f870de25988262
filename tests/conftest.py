"""Shared pytest fixtures.

The real remote-sensing fixtures live in ``../shared/data`` (relative to the repository root); CI has them,
a user's clone may not, so tests that need them skip with a clear reason when the folder is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MUTDET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Tests run on 2 shared cores: keep torch and BLAS from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real DOTA / DIOR-R fixtures; skips the test when they are not present."""
    if not (SHARED_DATA / "dota_sample").is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_DATA} (set MUTDET_SHARED_DATA or clone ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
