"""Shared test fixtures. Real clips live in ../shared/data beside the project checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYBRID_ASD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need it skip with a clear reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-clip data set not found at {SHARED_DATA} (set HYBRID_ASD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the feature cache out of the user's home during tests."""
    monkeypatch.setenv("HYBRID_ASD_CACHE", str(tmp_path_factory.getbasetemp() / "feature_cache"))
